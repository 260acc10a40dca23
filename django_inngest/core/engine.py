"""Replays one invocation of a run: memo lookup, step checkpoints, interrupts, outcome.

A step with a memo returns it (or raises `StepError`); a new step runs now and its result is
stored through the `StepStore` before the handler goes on. Sleeps and retries end the invocation
with an interrupt (a `BaseException`, so `except Exception` in user code cannot swallow it) that
`Execution` turns into an `Outcome` for the worker to record.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NoReturn, Protocol, TypeVar

from django_inngest.core import clock, ids
from django_inngest.core.config import Duration, duration_problems, to_timedelta
from django_inngest.core.errors import (
    ConfigError,
    DeterminismError,
    InvalidEventError,
    NestedStepError,
    NonRetriableError,
    OutputUnserializableError,
    RetryAfterError,
    StepError,
    UnstorableValueError,
    error_data,
)
from django_inngest.core.events import (
    FUNCTION_FINISHED,
    FUNCTION_INVOKED,
    MAX_OUTPUT_BYTES,
    Event,
    PreparedEvent,
    prepare,
    storable_json,
    text_problem,
)
from django_inngest.core.expressions import ExpressionError, compile_expression
from django_inngest.core.function import Function

T = TypeVar("T")

MAX_SLEEP = timedelta(days=366)


class Op:
    """The kinds of step a run records (a step's `op`); a replayed step must be of the kind it was
    recorded as."""

    RUN = "run"
    SLEEP = "sleep"
    WAIT_FOR_EVENT = "wait_for_event"
    INVOKE = "invoke"
    SEND_EVENT = "send_event"


class StepStatus:
    """The states a step's record goes through; COMPLETED and FAILED are final."""

    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    ERRORED = "ERRORED"
    """An attempt failed and another will follow."""
    SLEEPING = "SLEEPING"
    WAITING = "WAITING"
    """Waiting for an event or for an invoked function."""


FINAL_STEP_STATUSES = frozenset({StepStatus.COMPLETED, StepStatus.FAILED})


@dataclass(frozen=True, kw_only=True)
class Memo:
    """What storage knows of a step when an invocation starts."""

    hashed_id: str
    op: str
    status: str
    output: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    wake_at: datetime | None = None
    started_at: datetime | None = None

    @property
    def final(self) -> bool:
        """Whether the step has its final result (completed or failed for good), so replay returns
        it instead of running the step."""
        return self.status in FINAL_STEP_STATUSES


@dataclass(frozen=True, kw_only=True)
class StepRecord:
    """A step state to write: a final result, a failed attempt, or a sleep."""

    hashed_id: str
    step_id: str
    index: int
    op: str
    status: str
    output: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 1
    started_at: datetime | None = None
    ended_at: datetime | None = None
    wake_at: datetime | None = None

    def as_memo(self) -> Memo:
        """What a later invocation knows of this step once it is stored."""
        return Memo(
            hashed_id=self.hashed_id,
            op=self.op,
            status=self.status,
            output=self.output,
            error=self.error,
            attempts=self.attempts,
            wake_at=self.wake_at,
            started_at=self.started_at,
        )


@dataclass(frozen=True, kw_only=True)
class PauseSpec:
    """Something a run waits for: an event (`wait`), an invoked run's end (`invoke`), or an
    event that cancels it (`cancel`). The first matching event consumes a wait or invoke.
    Only events received after it can match: the store records from when (the run's own event
    for a cancel listener, the moment it is stored for a wait or invoke), by order of receipt,
    never by event id."""

    kind: str
    event_name: str
    expression: str | None
    """Evaluated with `event` = the run's triggering event and `async` = the candidate."""
    match_key: str | None
    """The index key a matching event carries (see `expressions.event_index_keys`)."""
    expires_at: datetime
    trigger_event: dict[str, Any]
    hashed_id: str = ""


INVOKE_TIMEOUT = timedelta(days=365)
INVOKE_TIMEOUT_ERROR = {
    "name": "InngestInvokeTimeoutError",
    "message": "Timed out waiting for invoked function to complete",
    "stack": None,
}


class StepStore(Protocol):
    """Where an execution writes its steps: the database for a worker, memory for `run_locally`."""

    def save_step(self, record: StepRecord, events: Sequence[PreparedEvent] = ()) -> Memo:
        """Write a step's final result (and the events it sends) at once, only while the run is
        still held. Return the stored memo, another writer's if it won. Raise `LeaseLost` when
        the run is no longer held by this invocation."""
        ...

    def time_out(self, record: StepRecord) -> Memo:
        """End a wait whose time is up with `record`, unless an event (or the invoked run)
        ended it first: then return that result instead."""
        ...


# --- interrupts -------------------------------------------------------------------------------


class Interrupt(BaseException):
    """Ends an invocation; never an error of the user's code."""


class LeaseLost(Interrupt):
    """Another worker or a cancellation took the run over; drop this invocation's work."""


class StoreFailed(Interrupt):
    """The engine could not write the run's state (its database failed, a connection dropped):
    never the user's error, never an attempt. The invocation is dropped and the run goes on
    from its last checkpoint, in another invocation."""

    def __init__(self, step_id: str, error: Exception) -> None:
        super().__init__(f"could not store step {step_id!r}: {type(error).__name__}: {error}")
        self.step_id = step_id
        self.error = error


class _Suspend(Interrupt):
    def __init__(
        self,
        records: list[StepRecord],
        wake_at: datetime,
        pauses: Sequence[PauseSpec] = (),
        events: Sequence[PreparedEvent] = (),
    ) -> None:
        super().__init__("suspend")
        self.records = records
        self.wake_at = wake_at
        self.pauses = list(pauses)
        self.events = list(events)


class _RetryStep(Interrupt):
    def __init__(self, records: list[StepRecord]) -> None:
        super().__init__("retry step")
        self.records = records


class _FailRun(Interrupt):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message"))
        self.error = error


# --- outcomes ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Completed:
    """The run's handler returned: `output` is its result, already checked to be storable."""

    output: Any


@dataclass(frozen=True, kw_only=True)
class Failed:
    """The run failed for good (no retry left, or an error that is not retried); `error` is the
    error as stored."""

    error: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Retry:
    """The invocation failed and the run is retried: the next attempt starts at `retry_at` (None:
    after the backoff)."""

    error: dict[str, Any]
    attempt: int
    """The attempt number (0-based) of the next invocation."""
    retry_at: datetime | None = None
    """Set by `RetryAfterError`; otherwise the worker's backoff decides."""
    records: list[StepRecord] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Suspended:
    """The invocation stopped at a step that records its result, sleeps or waits; the run resumes at
    `wake_at` or when a pause is matched."""

    wake_at: datetime
    records: list[StepRecord] = field(default_factory=list)
    pauses: list[PauseSpec] = field(default_factory=list)
    events: list[PreparedEvent] = field(default_factory=list)
    """Events to store with the suspension (an invocation's `inngest/function.invoked`)."""

    @property
    def waiting(self) -> bool:
        """Whether the run waits for an event or an invoked function (and not only for time)."""
        return bool(self.pauses) or any(r.status == StepStatus.WAITING for r in self.records)


@dataclass(frozen=True, kw_only=True)
class Dropped:
    """The invocation's result is not recorded: the worker lost the run's lease, or its own write
    failed; `reason` says which."""

    reason: str
    store_failed: bool = False
    """The engine's own write failed (not a lost lease): the worker still holds the run and
    gives it back to the queue."""


Outcome = Completed | Failed | Retry | Suspended | Dropped


# --- runtime ------------------------------------------------------------------------------------


async def _call_inline(fn: Callable[[], T]) -> T:
    return fn()


def _branches_in_turn(branches: Sequence[Callable[[], Any]]) -> list[Any]:
    return [branch() for branch in branches]


@dataclass(frozen=True, kw_only=True)
class Runtime:
    """How an execution reaches the outside world; the worker and `drain()` differ here."""

    offload: Callable[[Callable[[], Any]], Awaitable[Any]] = _call_inline
    """Runs storage calls from async handlers without blocking their event loop."""
    offload_user: Callable[[Callable[[], Any]], Awaitable[Any]] = _call_inline
    """Runs a plain (sync) step body called from an async handler."""
    save_step: Callable[[StepRecord, Sequence[PreparedEvent]], Awaitable[Memo]] | None = None
    """Writes a step's result from an async handler; None: `offload` the store's `save_step`.
    The worker sets it to group the checkpoints of concurrent runs into one write."""
    run_branches: Callable[[Sequence[Callable[[], Any]]], list[Any]] = _branches_in_turn
    """Runs the branches of a sync parallel group; `concurrent` says whether they overlap."""
    concurrent: bool = False
    max_event_bytes: int = 512 * 1024
    """The size limit of events sent by `step.send_event`."""
    function_exists: Callable[[str], bool] = lambda function_id: True
    """Whether `step.invoke` can start this function id."""


_current_step: contextvars.ContextVar[StepCall | None] = contextvars.ContextVar(
    "django_inngest_current_step", default=None
)


@dataclass(frozen=True, kw_only=True)
class StepCall:
    """One call of a step in one invocation: which repeat of the id it is, its hash, and what
    storage already has of it."""

    step_id: str
    index: int
    hashed_id: str
    op: str
    memo: Memo | None

    def record(self, **values: Any) -> StepRecord:
        """A record of this step with `values` (status, output, error, times...) for the store."""
        return StepRecord(
            hashed_id=self.hashed_id, step_id=self.step_id, index=self.index, op=self.op, **values
        )


class Execution:
    """One invocation of one run."""

    def __init__(
        self,
        *,
        function: Function,
        run_id: str,
        events: Sequence[Event],
        attempt: int,
        memos: Mapping[str, Memo],
        store: StepStore,
        runtime: Runtime | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.function = function
        self.run_id = run_id
        self.events = list(events)
        self.attempt = attempt
        self.store = store
        self.runtime = runtime or Runtime()
        self.base_logger = logger or logging.getLogger("django_inngest.functions")
        self._memos = dict(memos)
        self._final_memos = sum(1 for memo in self._memos.values() if memo.final)
        self._consumed = 0
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    @property
    def replaying(self) -> bool:
        """True until every memo recorded before this invocation has been returned."""
        return self._consumed < self._final_memos

    # -- step bookkeeping, shared by Step and StepSync ---------------------------------------

    def begin(self, step_id: str, op: str) -> StepCall:
        """Start a call of step `step_id`: check the id, count its repeats, and look up its memo.
        Fails the run if steps are nested or the code no longer calls the step it recorded under
        that id (a different `op`)."""
        if not isinstance(step_id, str) or not step_id:
            raise ValueError(f"a step id must be a non-empty string, not {step_id!r}")
        problem = text_problem(step_id)
        if problem:
            raise ValueError(f"step id {step_id[:80]!r} {problem}: it cannot be stored")
        if _current_step.get() is not None:
            raise _FailRun(error_data(NestedStepError("Nested steps are not supported.")))
        with self._lock:
            index = self._counts.get(step_id, 0)
            self._counts[step_id] = index + 1
            hashed_id = ids.hash_step_id(ids.step_key(step_id, index))
            memo = self._memos.get(hashed_id)
            if memo is not None and memo.final:
                self._consumed += 1
        if memo is not None and memo.op and memo.op != op:
            raise _FailRun(error_data(DeterminismError(step_id, memo.op, op)))
        return StepCall(step_id=step_id, index=index, hashed_id=hashed_id, op=op, memo=memo)

    def replay(self, memo: Memo) -> Any:
        """The recorded result of a final step, as the handler sees it: its output, or a `StepError`
        raised for a step that failed."""
        if memo.status == StepStatus.FAILED:
            error = memo.error or {}
            if error.get("code") == OutputUnserializableError.code:
                raise _FailRun(error)  # the run's failure, which its code cannot catch
            raise StepError(
                str(error.get("message", "")), str(error.get("name", "Error")), error.get("stack")
            )
        return memo.output

    def enter_body(self, call: StepCall) -> contextvars.Token[StepCall | None]:
        """Mark `call`'s body as running (a step called inside it is a nested step); give the token
        back to `exit_body`."""
        return _current_step.set(call)

    def exit_body(self, token: contextvars.Token[StepCall | None]) -> None:
        """Mark the body `enter_body` began as done."""
        _current_step.reset(token)

    def succeeded(self, call: StepCall, value: Any, started_at: datetime) -> StepRecord:
        """The step's result to store; a value the store cannot hold makes it a failed step,
        which fails the run (not retried) once it is stored (see `replay`)."""
        started = (call.memo.started_at if call.memo else None) or started_at
        try:
            output = json.loads(storable_json(value, "output", max_bytes=MAX_OUTPUT_BYTES))
        except UnstorableValueError as problem:
            error = OutputUnserializableError(
                f'step "{call.step_id}" returned data that cannot be stored: {problem}'
            )
            return call.record(
                status=StepStatus.FAILED,
                error=error_data(error),
                attempts=self.attempt + 1,
                started_at=started,
                ended_at=clock.now(),
            )
        return call.record(
            status=StepStatus.COMPLETED,
            output=output,
            attempts=self.attempt + 1,
            started_at=started,
            ended_at=clock.now(),
        )

    def failed(self, call: StepCall, error: BaseException, started_at: datetime) -> StepRecord:
        """The final failure to store; raises `_RetryStep` while attempts remain."""
        record = call.record(
            status=StepStatus.ERRORED,
            error=error_data(error),
            attempts=self.attempt + 1,
            started_at=started_at,
            ended_at=clock.now(),
        )
        if self.attempt + 1 < self.function.max_attempts:
            raise _RetryStep([record])
        return replace(record, status=StepStatus.FAILED)

    def write(self, step_id: str, write: Callable[[], Memo]) -> Memo:
        """Call the store; its failure is the engine's (`StoreFailed`), not the user's."""
        try:
            return write()
        except Exception as error:
            raise StoreFailed(step_id, error) from error

    async def write_async(self, step_id: str, write: Callable[[], Awaitable[Memo]]) -> Memo:
        """`write` for async handlers."""
        try:
            return await write()
        except Exception as error:
            raise StoreFailed(step_id, error) from error

    def saved(self, memo: Memo) -> Any:
        """After a new step's result is stored: the next edge starts at attempt 0."""
        self.attempt = 0
        return self.replay(memo)

    def sleep_record(self, call: StepCall, until: datetime | None) -> StepRecord:
        """The completed sleep to store, or `_Suspend` when it is not over yet."""
        now = clock.now()
        if call.memo is not None and call.memo.wake_at is not None:
            wake_at = call.memo.wake_at
        else:
            if until is None or not isinstance(until, datetime):
                raise TypeError(f"sleep_until needs a datetime, not {until!r}")
            wake_at = until if until.tzinfo else until.astimezone()
            if wake_at - now > MAX_SLEEP:
                raise ValueError(
                    f"step {call.step_id!r}: cannot sleep until {wake_at.isoformat()}, more than "
                    f"{MAX_SLEEP.days} days away"
                )
        if wake_at > now:
            sleeping = call.record(
                status=StepStatus.SLEEPING, attempts=0, started_at=now, wake_at=wake_at
            )
            raise _Suspend([sleeping], wake_at)
        started = (call.memo.started_at if call.memo else None) or now
        return call.record(
            status=StepStatus.COMPLETED,
            attempts=1,
            started_at=started,
            ended_at=now,
            wake_at=wake_at,
        )

    def events_record(
        self, call: StepCall, prepared: Sequence[PreparedEvent], started_at: datetime
    ) -> StepRecord:
        """The completed record of a `send_event` step: its output is the ids of the events it sent."""
        return call.record(
            status=StepStatus.COMPLETED,
            output=[event.id for event in prepared],
            attempts=self.attempt + 1,
            started_at=started_at,
            ended_at=clock.now(),
        )

    def trigger_event_map(self) -> dict[str, Any]:
        """The run's first event as expressions see it (`event`)."""
        first = self.events[0]
        return {
            "name": first.name,
            "data": dict(first.data),
            "id": first.id,
            "ts": first.ts,
            "user": {},
        }

    def pending_wait(self, call: StepCall, expired: StepRecord) -> StepRecord:
        """For a wait already recorded: `expired` once its time is up, else `_Suspend` again."""
        memo = call.memo
        assert memo is not None and memo.wake_at is not None
        if memo.wake_at <= clock.now():
            return expired
        waiting = call.record(
            status=StepStatus.WAITING, attempts=0, started_at=memo.started_at, wake_at=memo.wake_at
        )
        raise _Suspend([waiting], memo.wake_at)

    def wait_timed_out(self, call: StepCall) -> StepRecord:
        """The completed record of a `wait_for_event` step whose timeout passed: its output is None."""
        return call.record(
            status=StepStatus.COMPLETED,
            output=None,
            attempts=1,
            started_at=call.memo.started_at if call.memo else None,
            ended_at=clock.now(),
        )

    def invoke_timed_out(self, call: StepCall) -> StepRecord:
        """The failed record of an `invoke` step whose timeout passed before the invoked run ended."""
        return call.record(
            status=StepStatus.FAILED,
            error=dict(INVOKE_TIMEOUT_ERROR),
            attempts=1,
            started_at=call.memo.started_at if call.memo else None,
            ended_at=clock.now(),
        )

    def start_wait(
        self, call: StepCall, *, event: str, if_exp: str | None, timeout: Duration
    ) -> NoReturn:
        """Suspend the run until an event named `event` matching `if_exp` arrives or `timeout`
        passes. Invalid arguments raise at the call; an `if_exp` that does not compile fails the
        step."""
        if not isinstance(event, str) or not event:
            raise ValueError(f"wait_for_event needs an event name, not {event!r}")
        for what, text in (("event name", event), ("if_exp", if_exp or "")):
            problem = text_problem(text) if isinstance(text, str) else ""
            if problem:
                raise ValueError(f"step {call.step_id!r}: wait_for_event {what} {problem}")
        problems = duration_problems("timeout", timeout, maximum=MAX_SLEEP)
        if problems:
            raise ConfigError(f"step {call.step_id!r}: {problems[0]}", field="timeout")
        match_key = None
        trigger = self.trigger_event_map()
        if if_exp is not None:
            try:
                match_key = compile_expression(if_exp).index_key(trigger)
            except ExpressionError as error:
                raise StepError(
                    f"Wait for event If expression failed to compile: {error.reason}",
                    "ExpressionError",
                    None,
                ) from None
        now = clock.now()
        wake_at = now + to_timedelta(timeout)
        pause = PauseSpec(
            kind="wait",
            event_name=event,
            expression=if_exp,
            match_key=match_key,
            expires_at=wake_at,
            trigger_event=trigger,
            hashed_id=call.hashed_id,
        )
        waiting = call.record(
            status=StepStatus.WAITING, attempts=0, started_at=now, wake_at=wake_at
        )
        raise _Suspend([waiting], wake_at, [pause])

    def start_invoke(
        self,
        call: StepCall,
        *,
        function_id: str,
        data: Mapping[str, Any] | None,
        timeout: Duration | None,
    ) -> StepRecord:
        """The failure to store when the target does not exist; otherwise `_Suspend`."""
        if data is not None and not isinstance(data, Mapping):
            raise TypeError(f"invoke data must be a mapping, not {data!r}")
        try:
            storable_json(data or {}, "data")
        except UnstorableValueError as problem:
            raise InvalidEventError(
                f"step {call.step_id!r}: invoke data cannot be stored: {problem}"
            ) from None
        limit = INVOKE_TIMEOUT if timeout is None else to_timedelta(timeout)
        now = clock.now()
        if not self.runtime.function_exists(function_id):
            return call.record(
                status=StepStatus.FAILED,
                error={
                    "name": "Error",
                    "message": f"could not find function with ID: {function_id}",
                    "stack": None,
                },
                started_at=now,
                ended_at=now,
            )
        correlation = f"{self.run_id}.{call.hashed_id}"
        payload = {
            **(data or {}),
            "_inngest": {
                "fn_id": function_id,
                "correlation_id": correlation,
                "source_app_id": self.function.app_id,
                "source_fn_id": self.function.id,
                "source_run_id": self.run_id,
            },
        }
        invoked = prepare(
            Event(name=FUNCTION_INVOKED, data=payload),
            now_ms=clock.now_ms(),
            max_bytes=self.runtime.max_event_bytes,
            allow_system=True,
        )
        expression = f"async.data.correlation_id == {json.dumps(correlation)}"
        pause = PauseSpec(
            kind="invoke",
            event_name=FUNCTION_FINISHED,
            expression=expression,
            match_key=compile_expression(expression).index_key({}),
            expires_at=now + limit,
            trigger_event=self.trigger_event_map(),
            hashed_id=call.hashed_id,
        )
        waiting = call.record(
            status=StepStatus.WAITING, attempts=0, started_at=now, wake_at=now + limit
        )
        raise _Suspend([waiting], now + limit, [pause], invoked)

    # -- outcome -----------------------------------------------------------------------------

    def handler_call(self, ctx: Any, step: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments to call the function's handler with (`ctx`, `step`, or both), as its
        signature asks."""
        return self.function.call_arguments(ctx, step)

    def outcome_of_return(self, value: Any) -> Outcome:
        """The outcome of a handler that returned `value`: completed, or failed when the value
        cannot be stored as JSON."""
        try:
            output = json.loads(storable_json(value, "output", max_bytes=MAX_OUTPUT_BYTES))
        except UnstorableValueError as problem:
            error = OutputUnserializableError(
                f'function "{self.function.id}" returned data that cannot be stored: {problem}'
            )
            return Failed(error=error_data(error))
        return Completed(output=output)

    def outcome_of_error(self, error: BaseException) -> Outcome:
        """The outcome of a handler that raised `error`: suspended for a step's interrupt, dropped
        for a lost lease or a failed write, failed for a non-retriable error or the last attempt,
        retried otherwise."""
        if isinstance(error, LeaseLost):
            return Dropped(reason="the run is no longer held by this worker")
        if isinstance(error, StoreFailed):
            return Dropped(reason=str(error), store_failed=True)
        if isinstance(error, _FailRun):
            return Failed(error=error.error)
        if isinstance(error, _RetryStep):
            return self._retry(error.records[0].error or {}, None, error.records)
        if isinstance(error, _Suspend):
            return Suspended(
                wake_at=error.wake_at,
                records=error.records,
                pauses=error.pauses,
                events=error.events,
            )
        if isinstance(error, StepError | NonRetriableError):
            return Failed(error=error_data(error))
        if isinstance(error, RetryAfterError):
            return self._retry(error_data(error), error.retry_after, [])
        if isinstance(error, Exception):
            return self._retry(error_data(error), None, [])
        raise error  # KeyboardInterrupt, SystemExit and the like are not ours to handle

    def _retry(
        self, error: dict[str, Any], at: datetime | None, records: list[StepRecord]
    ) -> Outcome:
        if self.attempt + 1 >= self.function.max_attempts:
            return Failed(error=error)
        return Retry(error=error, attempt=self.attempt + 1, retry_at=at, records=records)


def merge_interrupts(interrupts: Sequence[Interrupt]) -> Interrupt:
    """The interrupt a parallel group ends with when several branches were interrupted."""
    for kind in (LeaseLost, StoreFailed, _FailRun):
        for interrupt in interrupts:
            if isinstance(interrupt, kind):
                return interrupt
    records = [r for i in interrupts if isinstance(i, _RetryStep | _Suspend) for r in i.records]
    if any(isinstance(i, _RetryStep) for i in interrupts):
        # A wait started beside a failing step starts again on the retry: drop its record.
        kept = [r for r in records if r.status != StepStatus.WAITING]
        return _RetryStep(sorted(kept, key=lambda r: r.status != StepStatus.ERRORED))
    suspends = [i for i in interrupts if isinstance(i, _Suspend)]
    return _Suspend(
        records,
        min(i.wake_at for i in suspends),
        [p for i in suspends for p in i.pauses],
        [e for i in suspends for e in i.events],
    )
