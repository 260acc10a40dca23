"""Flow control decisions, free of storage: GCRA for throttle and rate limit, and the plan of a
run (its keys, limits, priority and timers) evaluated from its function and triggering event.

`store/` applies these decisions under row locks, in the order of SPEC §3: batch, rate limit,
debounce, singleton, create the run, cancellation listeners, queue (throttle, priority).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django_inngest.core import clock
from django_inngest.core.config import to_timedelta
from django_inngest.core.engine import PauseSpec
from django_inngest.core.expressions import (
    EvaluationError,
    EvaluationLimitError,
    compile_expression,
    sharing_one_budget,
)
from django_inngest.core.function import Function

DEFAULT_PRIORITY_RANGE = 600
"""Priority factors are seconds within ±600 (Inngest's documented range)."""
IDEMPOTENCY_PERIOD = timedelta(hours=24)


@dataclass(frozen=True, kw_only=True)
class Gcra:
    """A generic cell rate: `limit` per `period`, `burst` extra at once."""

    key: str
    limit: int
    period: timedelta
    burst: int
    """Requests allowed at once beyond the first."""

    @property
    def interval(self) -> timedelta:
        """The time between two requests at the steady rate: `period / limit`."""
        return self.period / max(self.limit, 1)

    def decide(self, tat: datetime | None, now: datetime) -> tuple[datetime, datetime]:
        """(earliest start, new theoretical arrival time) for one more request at `now`.

        Up to `burst + 1` requests start at once from idle; then one per `interval`.
        """
        tolerance = self.interval * self.burst
        arrival = max(tat or now, now)
        start = max(now, arrival - tolerance)
        return start, arrival + self.interval


@dataclass(frozen=True, kw_only=True)
class DebounceSpec:
    """A function's debounce for one run: the key the burst is grouped by, the quiet period, and the
    longest delay from the first event."""

    key: str
    period: timedelta
    timeout: timedelta | None


@dataclass(frozen=True, kw_only=True)
class BatchSpec:
    """A function's batching for one event: the key the batch is grouped by, how many events fill
    it, how long it waits for more."""

    key: str
    max_size: int
    timeout: timedelta


@dataclass(frozen=True, kw_only=True)
class RunPlan:
    """Everything the engine must know to create and queue a run of one function."""

    function_id: str
    pauses: Sequence[PauseSpec] = ()
    """Cancellation listeners."""
    concurrency: Sequence[tuple[str, int]] = ()
    """(key, limit) pairs; a run executes only while each key has fewer executing runs."""
    priority: int = 0
    """Seconds the run's queue items move ahead (positive) or behind (negative)."""
    throttle: Gcra | None = None
    rate_limit: Gcra | None = None
    debounce: DebounceSpec | None = None
    batch: BatchSpec | None = None
    singleton: tuple[str, str] | None = None
    """(key, mode) with mode "skip" or "cancel"."""
    start_timeout: timedelta | None = None
    finish_timeout: timedelta | None = None
    queue: str | None = None
    """The queue of a Django task's run (workers limited to queues take only theirs)."""
    dedupe: bool = True
    """Whether the sender's event id de-duplicates (not for debounced or batched runs)."""
    errors: list[str] = field(default_factory=list)
    """Keys that failed to evaluate (logged; the run goes on without that limit)."""
    skipped: str = ""
    """Why routing or planning this function for this event failed: no run is created, the
    reason is recorded with the event, and the other functions and events go on."""


def digest(*parts: str) -> str:
    """A short stable key (SHA-1, hex) of `parts`, joined by a control character (the unit
    separator) so that ("a", "bc") and ("ab", "c") differ."""
    return hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()


def _key_value(expression: str | None, event: Mapping[str, Any]) -> str | None:
    """The `%v` of a key expression; None when it evaluates to false (no key)."""
    if expression is None:
        return ""
    return compile_expression(expression).key(event)


def priority_factor(function: Function, event: Mapping[str, Any], bound: int) -> int:
    """Integral results (whole floats too) within ±bound; anything else counts as 0."""
    if function.priority is None:
        return 0
    try:
        value = compile_expression(function.priority.run).evaluate(event)
    except EvaluationLimitError:
        raise
    except EvaluationError:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    if isinstance(value, float) and not value.is_integer():
        return 0
    return max(-bound, min(bound, int(value)))


@sharing_one_budget  # every key of one run of one function, for one event, in one budget
def plan_run(
    function: Function,
    event: Mapping[str, Any],
    event_id: str,
    *,
    priority_bound: int = DEFAULT_PRIORITY_RANGE,
    batched: bool = False,
) -> RunPlan:
    """The plan of a run of `function` started by `event` (the first, for a batch)."""
    errors: list[str] = []

    def key_of(expression: str | None, purpose: str) -> str | None:
        try:
            return _key_value(expression, event)
        except EvaluationLimitError:
            raise  # contained by the caller: the function is skipped for this event
        except EvaluationError as error:
            errors.append(f"{purpose} key {expression!r}: {error}")
            return "<invalid>"

    concurrency = []
    for limit in function.concurrency:
        if limit.limit == 0:
            continue
        value = None if batched else key_of(limit.key, "concurrency")
        if value is None and limit.key is not None and not batched:
            continue
        if limit.scope in ("env", "account"):
            concurrency.append((digest("env", value or ""), limit.limit))
        else:
            concurrency.append((digest("fn", function.id, value or ""), limit.limit))

    rate_limit = None
    if function.idempotency is not None:
        value = key_of(function.idempotency, "idempotency")
        if value is not None:
            rate_limit = Gcra(
                key=digest("rate", function.id, value), limit=1, period=IDEMPOTENCY_PERIOD, burst=0
            )
    elif function.rate_limit is not None:
        value = key_of(function.rate_limit.key, "rate_limit")
        if value is not None:
            rate_limit = Gcra(
                key=digest("rate", function.id, value),
                limit=function.rate_limit.limit,
                period=to_timedelta(function.rate_limit.period),
                burst=function.rate_limit.limit // 10,
            )

    throttle = None
    if function.throttle is not None:
        value = key_of(function.throttle.key, "throttle")
        if value is not None:
            limit = max(function.throttle.limit, 1)
            extra = function.throttle.burst if function.throttle.burst is not None else 1
            throttle = Gcra(  # limit + burst start at once (SPEC §3.3)
                key=digest("throttle", function.id, value),
                limit=limit,
                period=to_timedelta(function.throttle.period),
                burst=limit + extra - 1,
            )

    debounce = None
    if function.debounce is not None and not batched:
        value = key_of(function.debounce.key or None, "debounce")
        debounce = DebounceSpec(
            key=digest("debounce", function.id, value if value is not None else "false"),
            period=to_timedelta(function.debounce.period),
            timeout=to_timedelta(function.debounce.timeout)
            if function.debounce.timeout is not None
            else None,
        )

    batch = None
    if function.batch_events is not None and not batched:
        settings = function.batch_events
        joins = settings.if_exp is None or compile_expression(settings.if_exp).matches(event)
        if joins:
            value = key_of(settings.key, "batch")
            batch = BatchSpec(
                key=digest("batch", function.id, value if value is not None else "false"),
                max_size=settings.max_size,
                timeout=to_timedelta(settings.timeout)
                if settings.timeout is not None
                else timedelta(seconds=60),
            )

    singleton = None
    if function.singleton is not None:
        value = key_of(function.singleton.key, "singleton")
        if value is not None:
            singleton = (digest("singleton", function.id, value), function.singleton.mode)

    timeouts = function.timeouts
    return RunPlan(
        function_id=function.id,
        pauses=() if batched or batch else cancellation_pauses(function, event, event_id),
        concurrency=concurrency,
        priority=priority_factor(function, event, priority_bound),
        throttle=throttle,
        rate_limit=rate_limit,
        debounce=debounce,
        batch=batch,
        singleton=singleton,
        start_timeout=to_timedelta(timeouts.start)
        if timeouts and timeouts.start is not None and not batched
        else None,
        finish_timeout=to_timedelta(timeouts.finish)
        if timeouts and timeouts.finish is not None and not batched
        else None,
        queue=function.queue_of(event),
        dedupe=debounce is None and batch is None and not batched,
        errors=errors,
    )


CANCEL_TIMEOUT = timedelta(days=365)


def cancellation_pauses(
    function: Function, trigger_event: Mapping[str, Any], trigger_id: str
) -> list[PauseSpec]:
    """One listener per `Cancel` of the function, for a run started by `trigger_event`."""
    now = clock.now()
    pauses = []
    for cancel in function.cancel:
        expression = compile_expression(cancel.if_exp) if cancel.if_exp else None
        timeout = CANCEL_TIMEOUT if cancel.timeout is None else to_timedelta(cancel.timeout)
        pauses.append(
            PauseSpec(
                kind="cancel",
                event_name=cancel.event,
                expression=cancel.if_exp,
                match_key=expression.index_key(trigger_event) if expression else None,
                expires_at=now + timeout,
                trigger_event=dict(trigger_event),
            )
        )
    return pauses
