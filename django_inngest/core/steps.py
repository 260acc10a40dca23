"""The tools a handler receives: `Context`, `Step` / `StepSync`, parallel groups, the logger.

`invoke_async` / `invoke_sync` run one invocation of an `Execution` and return its outcome.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django_inngest.core import clock
from django_inngest.core.config import Duration, ParallelMode, to_timedelta
from django_inngest.core.engine import (
    Execution,
    Interrupt,
    Op,
    Outcome,
    StepRecord,
    merge_interrupts,
)
from django_inngest.core.errors import NonRetriableError, RetryAfterError
from django_inngest.core.events import Event, prepare
from django_inngest.core.function import Function

T = TypeVar("T")


class ReplayAwareLogger:
    """Forwards to a logger except while the invocation replays memoized steps.

    Each call goes to the wrapped logger's method of the same name (`info` to `info`), as
    Inngest's SDK does, so a logger that overrides them (a custom `logging.Logger`
    subclass, a structlog logger) sees every call.
    """

    def __init__(self, logger: Any, execution: Execution) -> None:
        self._logger = logger
        self._execution = execution

    def _emit(self, method: str, msg: object, *args: object, **kwargs: Any) -> None:
        if self._execution.replaying:
            return
        if isinstance(self._logger, logging.Logger):
            # Point records at the user's line, not at this wrapper.
            kwargs.setdefault("stacklevel", 3)
        getattr(self._logger, method)(msg, *args, **kwargs)

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        """Log at DEBUG, unless the run is replaying steps it already ran."""
        self._emit("debug", msg, *args, **kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        """Log at INFO, unless the run is replaying steps it already ran."""
        self._emit("info", msg, *args, **kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        """Log at WARNING, unless the run is replaying steps it already ran."""
        self._emit("warning", msg, *args, **kwargs)

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        """Log at ERROR, unless the run is replaying steps it already ran."""
        self._emit("error", msg, *args, **kwargs)

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        """Log at ERROR with the exception being handled, unless the run is replaying."""
        self._emit("exception", msg, *args, **kwargs)

    def critical(self, msg: object, *args: object, **kwargs: Any) -> None:
        """Log at CRITICAL, unless the run is replaying steps it already ran."""
        self._emit("critical", msg, *args, **kwargs)

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """Log at `level`, unless the run is replaying; a `logging.Logger` records the caller's
        line, not this one."""
        if self._execution.replaying:
            return
        if isinstance(self._logger, logging.Logger):
            kwargs.setdefault("stacklevel", 2)
        self._logger.log(level, msg, *args, **kwargs)


class _ContextBase:
    def __init__(self, execution: Execution) -> None:
        self._execution = execution
        self.event: Event = execution.events[0]
        self.events: list[Event] = list(execution.events)
        self.run_id = execution.run_id
        self.logger = ReplayAwareLogger(execution.base_logger, execution)

    @property
    def attempt(self) -> int:
        """0-based attempt of the current step (or of the invocation, outside steps)."""
        return self._execution.attempt

    def __repr__(self) -> str:
        return f"<{type(self).__name__} run_id={self.run_id!r} attempt={self.attempt}>"


class Context(_ContextBase):
    """What an async handler receives."""

    def __init__(self, execution: Execution) -> None:
        super().__init__(execution)
        self.step = Step(execution)
        self.group = Group(self.step)


class ContextSync(_ContextBase):
    """What a plain (sync) handler receives."""

    def __init__(self, execution: Execution) -> None:
        super().__init__(execution)
        self.step = StepSync(execution)
        self.group = GroupSync(self.step)


def _event_or_none(value: Any) -> Event | None:
    return None if value is None else Event.from_raw(value)


def _until(duration: Duration) -> datetime:
    return clock.now() + max(to_timedelta(duration), timedelta(0))


# --- lock-step rounds for ParallelMode.WAIT ---------------------------------------------------

_rounds: contextvars.ContextVar[_Rounds | _AsyncRounds | None] = contextvars.ContextVar(
    "django_inngest_rounds", default=None
)


class _Rounds:
    """A barrier whose party count shrinks as branches end: every branch finishes its n-th
    new step before any starts its (n+1)-th."""

    def __init__(self, parties: int) -> None:
        self._parties = parties
        self._arrived = 0
        self._generation = 0
        self._condition = threading.Condition()

    def step_done(self) -> None:
        with self._condition:
            generation = self._generation
            self._arrived += 1
            if self._arrived >= self._parties:
                self._next_round()
            else:
                self._condition.wait_for(lambda: self._generation != generation)

    def leave(self) -> None:
        with self._condition:
            self._parties -= 1
            if self._parties and self._arrived >= self._parties:
                self._next_round()

    def _next_round(self) -> None:
        self._arrived = 0
        self._generation += 1
        self._condition.notify_all()


class _AsyncRounds:
    def __init__(self, parties: int) -> None:
        self._parties = parties
        self._arrived = 0
        self._generation = 0
        self._condition = asyncio.Condition()

    async def step_done(self) -> None:
        async with self._condition:
            generation = self._generation
            self._arrived += 1
            if self._arrived >= self._parties:
                self._next_round()
            else:
                await self._condition.wait_for(lambda: self._generation != generation)

    async def leave(self) -> None:
        async with self._condition:
            self._parties -= 1
            if self._parties and self._arrived >= self._parties:
                self._next_round()

    def _next_round(self) -> None:
        self._arrived = 0
        self._generation += 1
        self._condition.notify_all()


def _outcome_of_branches(results: Sequence[tuple[str, Any]]) -> tuple[Any, ...]:
    interrupts = [value for kind, value in results if kind == "interrupt"]
    if interrupts:
        raise merge_interrupts(interrupts)
    for kind, value in results:
        if kind == "error":
            raise value
    return tuple(value for _, value in results)


# --- async ------------------------------------------------------------------------------------


class Step:
    """Step tools for async handlers."""

    def __init__(self, execution: Execution) -> None:
        self._execution = execution

    async def _save(self, record: StepRecord, events: Sequence[Any] = ()) -> Any:
        execution = self._execution
        save = execution.runtime.save_step
        if save is not None:
            memo = await execution.write_async(record.step_id, lambda: save(record, events))
        else:
            memo = await execution.write_async(
                record.step_id,
                lambda: execution.runtime.offload(
                    functools.partial(execution.store.save_step, record, events)
                ),
            )
        return execution.saved(memo)

    async def _time_out(self, record: StepRecord) -> Any:
        execution = self._execution
        memo = await execution.write_async(
            record.step_id,
            lambda: execution.runtime.offload(functools.partial(execution.store.time_out, record)),
        )
        return execution.saved(memo)

    async def run(
        self, step_id: str, handler: Callable[..., Awaitable[T]] | Callable[..., T], *args: Any
    ) -> T:
        """Run `handler(*args)` once; its JSON result is stored and returned on every replay."""
        execution = self._execution
        call = execution.begin(step_id, Op.RUN)
        if call.memo is not None and call.memo.final:
            return execution.replay(call.memo)  # type: ignore[no-any-return]
        started_at = clock.now()
        token = execution.enter_body(call)
        try:
            if inspect.iscoroutinefunction(handler):
                value: Any = await handler(*args)
            else:
                value = await execution.runtime.offload_user(functools.partial(handler, *args))
                if inspect.isawaitable(value):
                    value = await value
        except (NonRetriableError, RetryAfterError):
            raise
        except Exception as error:
            record = execution.failed(call, error, started_at)
        else:
            record = execution.succeeded(call, value, started_at)
        finally:
            execution.exit_body(token)
        result = await self._save(record)
        await _round_done()
        return result  # type: ignore[no-any-return]

    async def sleep(self, step_id: str, duration: Duration) -> None:
        """Suspend the run for `duration` (an int is milliseconds)."""
        await self._sleep(step_id, lambda: _until(duration))

    async def sleep_until(self, step_id: str, until: datetime) -> None:
        """Suspend the run until `until` (naive datetimes are local time)."""
        await self._sleep(step_id, lambda: until)

    async def _sleep(self, step_id: str, until: Callable[[], datetime]) -> None:
        execution = self._execution
        call = execution.begin(step_id, Op.SLEEP)
        if call.memo is not None and call.memo.final:
            return
        await self._save(execution.sleep_record(call, None if call.memo else until()))

    async def send_event(self, step_id: str, events: Event | list[Event]) -> list[str]:
        """Send events once; on replay the same ids come back and nothing is sent again."""
        execution = self._execution
        call = execution.begin(step_id, Op.SEND_EVENT)
        if call.memo is not None and call.memo.final:
            return execution.replay(call.memo)  # type: ignore[no-any-return]
        started_at = clock.now()
        prepared = prepare(
            events, now_ms=clock.now_ms(), max_bytes=execution.runtime.max_event_bytes
        )
        result = await self._save(execution.events_record(call, prepared, started_at), prepared)
        return result  # type: ignore[no-any-return]

    async def wait_for_event(
        self, step_id: str, *, event: str, if_exp: str | None = None, timeout: Duration
    ) -> Event | None:
        """Suspend until an event named `event` (matching `if_exp`, where `event` is this run's
        trigger and `async` the candidate) arrives, or `timeout` passes: then return None."""
        execution = self._execution
        call = execution.begin(step_id, Op.WAIT_FOR_EVENT)
        if call.memo is not None and call.memo.final:
            return _event_or_none(execution.replay(call.memo))
        if call.memo is not None:
            record = execution.pending_wait(call, execution.wait_timed_out(call))
            return _event_or_none(await self._time_out(record))
        execution.start_wait(call, event=event, if_exp=if_exp, timeout=timeout)

    async def invoke(
        self,
        step_id: str,
        *,
        function: Function,
        data: Mapping[str, Any] | None = None,
        timeout: Duration | None = None,
    ) -> Any:
        """Run `function` as its own run and return its result (or raise `StepError`)."""
        return await self._invoke(step_id, function.id, data, timeout)

    async def invoke_by_id(
        self,
        step_id: str,
        *,
        app_id: str | None = None,
        function_id: str,
        data: Mapping[str, Any] | None = None,
        timeout: Duration | None = None,
    ) -> Any:
        """`invoke` by id: the function ``"{app_id}-{function_id}"`` (this run's app by default)."""
        target = f"{app_id or self._execution.function.app_id}-{function_id}"
        return await self._invoke(step_id, target, data, timeout)

    async def _invoke(
        self, step_id: str, target: str, data: Mapping[str, Any] | None, timeout: Duration | None
    ) -> Any:
        execution = self._execution
        call = execution.begin(step_id, Op.INVOKE)
        if call.memo is not None and call.memo.final:
            return execution.replay(call.memo)
        if call.memo is not None:
            record = execution.pending_wait(call, execution.invoke_timed_out(call))
            return await self._time_out(record)
        return await self._save(
            execution.start_invoke(call, function_id=target, data=data, timeout=timeout)
        )

    async def _experimental_parallel(
        self, callables: Sequence[Callable[[], Awaitable[T]]]
    ) -> tuple[T, ...]:
        return await _parallel_async(callables, ParallelMode.WAIT)


async def _round_done() -> None:
    rounds = _rounds.get()
    if isinstance(rounds, _AsyncRounds):
        await rounds.step_done()


async def _parallel_async(
    callables: Sequence[Callable[[], Awaitable[Any]]], mode: ParallelMode
) -> tuple[Any, ...]:
    rounds = _AsyncRounds(len(callables)) if mode is ParallelMode.WAIT else None

    async def branch(fn: Callable[[], Awaitable[Any]]) -> tuple[str, Any]:
        _rounds.set(rounds)
        try:
            return ("ok", await fn())
        except Interrupt as interrupt:
            return ("interrupt", interrupt)
        except Exception as error:
            return ("error", error)
        finally:
            if rounds is not None:
                await rounds.leave()

    results = await asyncio.gather(*(branch(fn) for fn in callables))
    return _outcome_of_branches(results)


class Group:
    """`ctx.group` of async handlers: run steps in parallel."""

    def __init__(self, step: Step) -> None:
        self._step = step

    async def parallel(
        self,
        callables: Sequence[Callable[[], Awaitable[T]]],
        parallel_mode: ParallelMode = ParallelMode.WAIT,
    ) -> tuple[T, ...]:
        """Run the callables concurrently; results come back in callable order."""
        return await _parallel_async(callables, parallel_mode)


async def invoke_async(execution: Execution) -> Outcome:
    """Run one invocation of an async function to its outcome; whatever the handler raises becomes
    the outcome."""
    ctx = Context(execution)
    args, kwargs = execution.handler_call(ctx, ctx.step)
    try:
        value = await execution.function.handler(*args, **kwargs)
    except BaseException as error:
        return execution.outcome_of_error(error)
    return execution.outcome_of_return(value)


# --- sync -------------------------------------------------------------------------------------


class StepSync:
    """Step tools for plain (sync) handlers."""

    def __init__(self, execution: Execution) -> None:
        self._execution = execution

    def _save(self, record: StepRecord, events: Sequence[Any] = ()) -> Any:
        execution = self._execution
        write = functools.partial(execution.store.save_step, record, events)
        return execution.saved(execution.write(record.step_id, write))

    def _time_out(self, record: StepRecord) -> Any:
        execution = self._execution
        write = functools.partial(execution.store.time_out, record)
        return execution.saved(execution.write(record.step_id, write))

    def run(self, step_id: str, handler: Callable[..., T], *args: Any) -> T:
        """Run `handler(*args)` once; its JSON result is stored and returned on every replay."""
        execution = self._execution
        call = execution.begin(step_id, Op.RUN)
        if call.memo is not None and call.memo.final:
            return execution.replay(call.memo)  # type: ignore[no-any-return]
        started_at = clock.now()
        token = execution.enter_body(call)
        try:
            value = handler(*args)
        except (NonRetriableError, RetryAfterError):
            raise
        except Exception as error:
            record = execution.failed(call, error, started_at)
        else:
            record = execution.succeeded(call, value, started_at)
        finally:
            execution.exit_body(token)
        result = self._save(record)
        rounds = _rounds.get()
        if isinstance(rounds, _Rounds):
            rounds.step_done()
        return result  # type: ignore[no-any-return]

    def sleep(self, step_id: str, duration: Duration) -> None:
        """Suspend the run for `duration` (an int is milliseconds)."""
        self._sleep(step_id, lambda: _until(duration))

    def sleep_until(self, step_id: str, until: datetime) -> None:
        """Suspend the run until `until` (naive datetimes are local time)."""
        self._sleep(step_id, lambda: until)

    def _sleep(self, step_id: str, until: Callable[[], datetime]) -> None:
        execution = self._execution
        call = execution.begin(step_id, Op.SLEEP)
        if call.memo is not None and call.memo.final:
            return
        self._save(execution.sleep_record(call, None if call.memo else until()))

    def send_event(self, step_id: str, events: Event | list[Event]) -> list[str]:
        """Send events once; on replay the same ids come back and nothing is sent again."""
        execution = self._execution
        call = execution.begin(step_id, Op.SEND_EVENT)
        if call.memo is not None and call.memo.final:
            return execution.replay(call.memo)  # type: ignore[no-any-return]
        started_at = clock.now()
        prepared = prepare(
            events, now_ms=clock.now_ms(), max_bytes=execution.runtime.max_event_bytes
        )
        return self._save(execution.events_record(call, prepared, started_at), prepared)  # type: ignore[no-any-return]

    def wait_for_event(
        self, step_id: str, *, event: str, if_exp: str | None = None, timeout: Duration
    ) -> Event | None:
        """Suspend until an event named `event` (matching `if_exp`, where `event` is this run's
        trigger and `async` the candidate) arrives, or `timeout` passes: then return None."""
        execution = self._execution
        call = execution.begin(step_id, Op.WAIT_FOR_EVENT)
        if call.memo is not None and call.memo.final:
            return _event_or_none(execution.replay(call.memo))
        if call.memo is not None:
            record = execution.pending_wait(call, execution.wait_timed_out(call))
            return _event_or_none(self._time_out(record))
        execution.start_wait(call, event=event, if_exp=if_exp, timeout=timeout)

    def invoke(
        self,
        step_id: str,
        *,
        function: Function,
        data: Mapping[str, Any] | None = None,
        timeout: Duration | None = None,
    ) -> Any:
        """Run `function` as its own run and return its result (or raise `StepError`)."""
        return self._invoke(step_id, function.id, data, timeout)

    def invoke_by_id(
        self,
        step_id: str,
        *,
        app_id: str | None = None,
        function_id: str,
        data: Mapping[str, Any] | None = None,
        timeout: Duration | None = None,
    ) -> Any:
        """`invoke` by id: the function ``"{app_id}-{function_id}"`` (this run's app by default)."""
        target = f"{app_id or self._execution.function.app_id}-{function_id}"
        return self._invoke(step_id, target, data, timeout)

    def _invoke(
        self, step_id: str, target: str, data: Mapping[str, Any] | None, timeout: Duration | None
    ) -> Any:
        execution = self._execution
        call = execution.begin(step_id, Op.INVOKE)
        if call.memo is not None and call.memo.final:
            return execution.replay(call.memo)
        if call.memo is not None:
            record = execution.pending_wait(call, execution.invoke_timed_out(call))
            return self._time_out(record)
        return self._save(
            execution.start_invoke(call, function_id=target, data=data, timeout=timeout)
        )

    def _experimental_parallel(self, callables: Sequence[Callable[[], T]]) -> tuple[T, ...]:
        return _parallel_sync(self._execution, callables, ParallelMode.WAIT)


def _parallel_sync(
    execution: Execution, callables: Sequence[Callable[[], Any]], mode: ParallelMode
) -> tuple[Any, ...]:
    concurrent = execution.runtime.concurrent
    rounds = _Rounds(len(callables)) if mode is ParallelMode.WAIT and concurrent else None

    def branch(fn: Callable[[], Any]) -> tuple[str, Any]:
        _rounds.set(rounds)
        try:
            return ("ok", fn())
        except Interrupt as interrupt:
            return ("interrupt", interrupt)
        except Exception as error:
            return ("error", error)
        finally:
            if rounds is not None:
                rounds.leave()

    contexts = [contextvars.copy_context() for _ in callables]
    branches = [
        functools.partial(context.run, branch, fn)
        for context, fn in zip(contexts, callables, strict=True)
    ]
    return _outcome_of_branches(execution.runtime.run_branches(branches))


class GroupSync:
    """`ctx.group` of plain (sync) handlers: run steps in parallel."""

    def __init__(self, step: StepSync) -> None:
        self._step = step

    def parallel(
        self,
        callables: Sequence[Callable[[], T]],
        parallel_mode: ParallelMode = ParallelMode.WAIT,
    ) -> tuple[T, ...]:
        """Run the callables concurrently; results come back in callable order."""
        return _parallel_sync(self._step._execution, callables, parallel_mode)


def invoke_sync(execution: Execution) -> Outcome:
    """Run one invocation of a sync function to its outcome; whatever the handler raises becomes the
    outcome."""
    ctx = ContextSync(execution)
    args, kwargs = execution.handler_call(ctx, ctx.step)
    try:
        value = execution.function.handler(*args, **kwargs)
    except BaseException as error:
        return execution.outcome_of_error(error)
    return execution.outcome_of_return(value)


def invoke(execution: Execution) -> Outcome:
    """Run a sync handler's invocation here, or an async one on a fresh event loop."""
    if execution.function.is_async:
        return asyncio.run(invoke_async(execution))
    return invoke_sync(execution)
