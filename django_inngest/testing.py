"""Helpers for testing code that uses django-inngest.

- `frozen_clock()`: the engine's time stands still until you `advance()` it, so sleeps,
  retries and timeouts are tested instantly.
- `drain()`: do, in this thread, everything that is due now (match events, run, retry, wake),
  including what becomes due while it runs. Works inside a test's transaction.
- `run_function()`: run one function in memory, with no database, stubbing steps by id.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async

from django_inngest import conf, store
from django_inngest.core import clock, ids
from django_inngest.core.clock import FrozenClock
from django_inngest.core.engine import Execution, Outcome, Runtime
from django_inngest.core.events import Event
from django_inngest.core.function import Function
from django_inngest.core.local import LocalResult, run_locally
from django_inngest.core.steps import invoke_async, invoke_sync
from django_inngest.models import RunStatus
from django_inngest.registry import registry
from django_inngest.runtime.claimed import (
    execution_for,
    function_exists,
    not_registered,
    planner,
    priority_window,
    route,
)
from django_inngest.runtime.outcomes import Outcomes
from django_inngest.runtime.scheduler import fire_due_ticks

__all__ = ["DrainSummary", "LocalResult", "drain", "frozen_clock", "run_function"]


@contextlib.contextmanager
def frozen_clock(at: datetime | None = None) -> Iterator[FrozenClock]:
    """Freeze the engine's clock (in every thread) for the duration of the block.

    On exit, ids are made from the real clock again: those made inside the block may carry
    times the block moved to, and the ones after it do not inherit them."""
    frozen = FrozenClock(at)
    previous = clock.install(frozen)
    sequence = ids.sequence_state()
    try:
        yield frozen
    finally:
        clock.install(previous)
        ids.restore_sequence(sequence)


@dataclass
class DrainSummary:
    """What one `drain()` did."""

    events: int = 0
    """Events matched against functions."""
    runs_created: int = 0
    invocations: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    sleeping: int = 0
    """Invocations that ended in a sleep (`step.sleep`, `step.sleep_until`)."""
    waiting: int = 0
    """Invocations that ended waiting for an event or an invoked function."""
    cron_ticks: int = 0
    """Cron ticks fired (under `frozen_clock()` only); each started a run."""

    @property
    def started(self) -> int:
        """How many runs `drain()` started (the same as `runs_created`)."""
        return self.runs_created


def drain(
    *, functions: Iterable[Function | str] | None = None, max_invocations: int = 10_000
) -> DrainSummary:
    """Process everything due at the clock's current time, sequentially in this thread.

    Under `frozen_clock()`, cron ticks due at that time fire first; with the real clock they
    do not, so tests never depend on when they run.

    With `functions` (function objects, or ids: the full `"app-fn"` or the `fn_id`), only
    their runs (and their `on_failure` runs) execute and only their cron schedules fire;
    events are still matched against every function, and the runs of the others stay
    queued for a later `drain()`.
    """
    summary = DrainSummary()
    worker_id = "drain"
    settings = conf.get()
    only = _function_ids(functions) if functions is not None else None
    outcomes = Outcomes(worker_id)
    if clock.is_frozen():
        summary.cron_ticks = fire_due_ticks(
            registry.all(), now=clock.now(), worker_id=worker_id, only=only
        )
        summary.runs_created += summary.cron_ticks
    while True:
        routing = store.Routes(
            routes=route, plans=planner, pending=registry.listens_to, window=priority_window()
        )
        fanned = store.fan_out(routing, now=clock.now())
        summary.events += fanned.events
        summary.runs_created += fanned.runs
        claimed = store.claim(
            worker_id,
            limit=100,
            now=clock.now(),
            lease_seconds=settings.LEASE_SECONDS,
            routing=routing,
            serves=only,
        )
        if not fanned.events and not claimed:
            return summary
        for run in claimed:
            summary.invocations += 1
            if summary.invocations > max_invocations:
                store.release(worker_id)
                raise RuntimeError(f"drain() stopped after {max_invocations} invocations")
            function = registry.get(run.function_id)
            status = outcomes.record(run, _invoke(run, function), function)
            if status == RunStatus.COMPLETED:
                summary.completed += 1
            elif status == RunStatus.FAILED:
                summary.failed += 1
            elif status == RunStatus.QUEUED:
                summary.retried += 1
            elif status == RunStatus.SLEEPING:
                summary.sleeping += 1
            elif status == RunStatus.WAITING:
                summary.waiting += 1


def _function_ids(functions: Iterable[Function | str]) -> list[str]:
    """The full ids of `functions` and of their `on_failure` companions; an unknown one is
    an error that lists the registered ids."""
    found: list[str] = []
    for item in [functions] if isinstance(functions, str | Function) else functions:
        function = item if isinstance(item, Function) else _registered(item)
        found.append(function.id)
        if function.on_failure is not None:
            found.append(function.on_failure.id)
    if not found:
        raise ValueError("drain(functions=...) needs at least one function")
    return found


def _registered(function_id: str) -> Function:
    function = registry.get(function_id)
    if function is not None:
        return function
    by_local_id = [f for f in registry.all() if f.local_id == function_id]
    if len(by_local_id) == 1:
        return by_local_id[0]
    known = ", ".join(repr(f.id) for f in registry.all()) or "none"
    problem = "is ambiguous" if by_local_id else "is not a registered function"
    raise ValueError(f"drain(functions=...): {function_id!r} {problem}; registered: {known}")


def _invoke(run: store.ClaimedRun, function: Function | None) -> Outcome:
    if function is None:
        return not_registered(run)
    runtime = _calling_thread_runtime(
        max_event_bytes=conf.get().MAX_EVENT_BYTES, function_exists=function_exists
    )
    return _invoke_here(execution_for(run, function, "drain", runtime))


async def _on_calling_thread(fn: Any) -> Any:
    return await sync_to_async(fn, thread_sensitive=True)()


def _calling_thread_runtime(**values: Any) -> Runtime:
    """Async handlers' storage calls and plain step callables go back to the thread that
    called `drain()` / `run_function()` (Django's `sync_to_async(thread_sensitive=True)`
    under `async_to_sync`): the ORM works in them, on the test's connection and inside its
    transaction, as a worker's runner threads do for a worker."""
    return Runtime(offload=_on_calling_thread, offload_user=_on_calling_thread, **values)


def _invoke_here(execution: Execution) -> Outcome:
    if not execution.function.is_async:
        return invoke_sync(execution)
    outcome: Outcome = async_to_sync(invoke_async)(execution)
    return outcome


def run_function(
    function: Function,
    event: Event | Sequence[Event],
    *,
    step_stubs: Mapping[str, Any] | None = None,
) -> LocalResult:
    """Run `function` for `event` in memory, like the SDK's `mocked.trigger`.

    Steps listed in `step_stubs` (by step id) return the stubbed value without running; sleeps
    end at once and retries follow at once. The engine stores nothing in the database; plain
    step callables of an async handler run on this thread, as in `drain()`, so they may use
    the ORM.
    """
    events = [event] if isinstance(event, Event) else list(event)
    if not events:
        raise ValueError("run_function needs at least one event")
    events = [
        Event(name=e.name, data=e.data, id=e.id or ids.ulid(), ts=e.ts or clock.now_ms())
        for e in events
    ]
    return run_locally(
        function,
        events,
        step_stubs=step_stubs,
        runtime=_calling_thread_runtime(),
        invoker=_invoke_here,
    )
