"""A claimed run against the database: the plans of the runs an event starts, the step store
of a run, recording what an invocation ended with, and giving back runs whose worker was lost
(ending those lost MAX_LEASE_LOSSES times without progress). Shared by the worker and
`testing.drain()`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from django_inngest import conf, store
from django_inngest.core import clock
from django_inngest.core.backoff import clamp_retry_after, retry_delay
from django_inngest.core.engine import (
    Completed,
    Execution,
    Failed,
    Memo,
    Outcome,
    Retry,
    Runtime,
    StepRecord,
    Suspended,
)
from django_inngest.core.errors import (
    InvalidEventError,
    OutputUnserializableError,
    WorkerLostError,
    error_data,
    storable_text,
)
from django_inngest.core.events import FUNCTION_FINISHED, PreparedEvent, run_ended_events
from django_inngest.core.flow import RunPlan, plan_run
from django_inngest.core.function import Function
from django_inngest.models import RunStatus
from django_inngest.registry import registry
from django_inngest.threads import GroupWriter, ensure_usable_connections

logger = logging.getLogger("django_inngest.worker")  # run outcomes are logged as the worker's


def route(event: Mapping[str, Any], event_id: str) -> list[RunPlan]:
    """The plans of the runs an event starts. A function whose trigger or plan fails over
    this event gets a plan that says why it is skipped; nothing here raises for data."""
    bound = conf.get().PRIORITY_RANGE
    failed: list[tuple[Function, Exception]] = []
    plans = []
    for function in registry.matching(event, failed):
        try:
            plans.append(plan_run(function, event, event_id, priority_bound=bound))
        except Exception as error:
            plans.append(skipped_plan(function.id, event_id, "planning the run failed", error))
    plans += [
        skipped_plan(function.id, event_id, "evaluating its trigger failed", error)
        for function, error in failed
    ]
    return plans


def planner(
    function_id: str, event: Mapping[str, Any], event_id: str, batched: bool
) -> RunPlan | None:
    """The plan of a run started by a timer (a debounce or a batch)."""
    function = registry.get(function_id)
    if function is None:
        return None
    try:
        return plan_run(
            function, event, event_id, priority_bound=conf.get().PRIORITY_RANGE, batched=batched
        )
    except Exception as error:
        return skipped_plan(function.id, event_id, "planning the run failed", error)


def skipped_plan(function_id: str, event_id: str, what: str, error: Exception) -> RunPlan:
    """The plan of a function skipped for one event, logged with the error's traceback."""
    reason = storable_text(f"{what}: {type(error).__name__}: {error}")
    logger.warning(
        "function skipped for event event_id=%s fn=%s reason=%s",
        event_id,
        function_id,
        reason,
        exc_info=error,
    )
    return RunPlan(function_id=function_id, skipped=reason)


def priority_window() -> int:
    """How far ahead of now, in seconds, claims look for prioritised items."""
    if any(function.priority is not None for function in registry.all()):
        return conf.get().PRIORITY_RANGE
    return 0


def function_exists(function_id: str) -> bool:
    return registry.get(function_id) is not None


class DatabaseStepStore:
    """The engine's `StepStore` for one claimed run. With a `GroupWriter`, plain checkpoints
    are written together with those of the worker's other runs."""

    def __init__(
        self, run_id: str, worker_id: str, steps: GroupWriter[store.StepWrite, Memo] | None = None
    ) -> None:
        self.run_id = run_id
        self.worker_id = worker_id
        self.steps = steps

    def save_step(self, record: StepRecord, events: Sequence[PreparedEvent] = ()) -> Memo:
        if events or self.steps is None:
            return store.save_step(self.run_id, self.worker_id, record, events)
        return self.steps.submit(self._write(record)).result()

    async def save_step_async(
        self, record: StepRecord, events: Sequence[PreparedEvent], runtime: Runtime
    ) -> Memo:
        if events or self.steps is None:
            memo: Memo = await runtime.offload(functools.partial(self.save_step, record, events))
            return memo
        return await asyncio.wrap_future(self.steps.submit(self._write(record)))

    def _write(self, record: StepRecord) -> store.StepWrite:
        return store.StepWrite(run_id=self.run_id, worker_id=self.worker_id, record=record)

    def time_out(self, record: StepRecord) -> Memo:
        return store.time_out(self.run_id, self.worker_id, record)


def execution_for(
    claimed: store.ClaimedRun,
    function: Function,
    worker_id: str,
    runtime: Runtime,
    steps: GroupWriter[store.StepWrite, Memo] | None = None,
) -> Execution:
    client_logger = getattr(function.client, "logger", None)
    step_store = DatabaseStepStore(claimed.run_id, worker_id, steps)
    if function.is_async and steps is not None:
        runtime = dataclasses.replace(
            runtime,
            save_step=lambda record, events: step_store.save_step_async(record, events, runtime),
        )
    return Execution(
        function=function,
        run_id=claimed.run_id,
        events=claimed.events,
        attempt=claimed.attempt,
        memos=claimed.memos,
        store=step_store,
        runtime=runtime,
        logger=client_logger,
    )


def not_registered(claimed: store.ClaimedRun) -> Failed:
    return Failed(
        error={
            "code": "function_not_found",
            "message": f"function {claimed.function_id!r} is not registered in this worker; "
            "is its app in INSTALLED_APPS and its module named functions.py?",
            "name": "FunctionNotFound",
            "stack": None,
        }
    )


def run_end(claimed: store.ClaimedRun, outcome: Completed | Failed, worker_id: str) -> store.RunEnd:
    """How a run that completed or failed is ended."""
    status = RunStatus.COMPLETED if isinstance(outcome, Completed) else RunStatus.FAILED
    output = outcome.output if isinstance(outcome, Completed) else outcome.error
    trigger_events = [store.event_map(row) for row in claimed.event_rows]
    function = registry.get(claimed.function_id)

    def ended_events() -> list[PreparedEvent]:
        return run_ended_events(
            function_id=claimed.function_id,
            run_id=claimed.run_id,
            trigger_events=trigger_events,
            status=status,
            output=output,
            now_ms=clock.now_ms(),
        )

    try:
        emitted = ended_events()
    except InvalidEventError as error:
        # The output is stored, but the events that carry it cannot be (too large): the run
        # fails saying so, rather than being run again after every lease.
        status = RunStatus.FAILED
        output = error_data(
            OutputUnserializableError(
                f'function "{claimed.function_id}" ended with data that cannot be sent in '
                f"its {FUNCTION_FINISHED} event: {error}"
            )
        )
        try:
            emitted = ended_events()
        except InvalidEventError:
            emitted = []
    return store.RunEnd(
        run_id=claimed.run_id,
        worker_id=worker_id,
        status=status,
        output=output,
        now=clock.now(),
        emitted=emitted,
        pending=store.ended_pending(registry.listens_to, trigger_events),
        drop_pauses=bool(function and function.cancel),
    )


def log_end(end: store.RunEnd, function_id: str, written: bool) -> str | None:
    """The run's new status, or None when the run was no longer this worker's."""
    if not written:
        return None
    logger.info("run %s run_id=%s fn=%s", end.status.lower(), end.run_id, function_id)
    return end.status


def record_outcome(claimed: store.ClaimedRun, outcome: Outcome, worker_id: str) -> str | None:
    """Write what an invocation ended with; returns the run's new status, or None when the
    run was no longer this worker's."""
    settings = conf.get()
    now = clock.now()
    if isinstance(outcome, Completed | Failed):
        end = run_end(claimed, outcome, worker_id)
        return log_end(end, claimed.function_id, store.end_runs([end])[0])
    if isinstance(outcome, Retry):
        if outcome.retry_at is not None:
            available_at = clamp_retry_after(outcome.retry_at, now)
        else:
            available_at = now + retry_delay(
                outcome.attempt - 1, settings.RETRY_BACKOFF, settings.RETRY_JITTER
            )
        logger.info(
            "run retrying run_id=%s fn=%s attempt=%s at=%s error=%s",
            claimed.run_id,
            claimed.function_id,
            outcome.attempt,
            available_at.isoformat(),
            outcome.error.get("message"),
        )
        written = store.retry_run(
            claimed.run_id,
            worker_id,
            attempt=outcome.attempt,
            available_at=available_at,
            records=outcome.records,
            priority=claimed.priority,
        )
        return RunStatus.QUEUED if written else None
    if isinstance(outcome, Suspended):
        written = store.suspend_run(
            claimed.run_id,
            worker_id,
            wake_at=outcome.wake_at,
            records=outcome.records,
            pauses=outcome.pauses,
            events=outcome.events,
            waiting=outcome.waiting,
            now=now,
            priority=claimed.priority,
        )
        if not written:
            return None
        return RunStatus.WAITING if outcome.waiting else RunStatus.SLEEPING
    if outcome.store_failed:
        drop_run(claimed.run_id, worker_id)
    else:
        logger.info("run dropped run_id=%s reason=%s", claimed.run_id, outcome.reason)
    return None


def drop_run(run_id: str, worker_id: str) -> int | None:
    """Give back a run this worker could not go on with because the engine's own database
    writes failed: it goes on from its last checkpoint, on any worker, with no attempt used.
    The loss counts like a lost lease: a run lost MAX_LEASE_LOSSES times without progress
    ends FAILED (`WorkerLostError`). Returns the run's losses (None: it was no longer held)."""
    settings = conf.get()
    ensure_usable_connections()  # the failure may have left this thread's connection broken
    losses = store.lose_lease(
        run_id,
        worker_id,
        max_losses=settings.MAX_LEASE_LOSSES,
        lease_seconds=settings.LEASE_SECONDS,
    )
    logger.debug("run dropped run_id=%s losses=%s", run_id, losses)
    if losses is not None and losses >= settings.MAX_LEASE_LOSSES:
        end_lost_runs(worker_id)
    return losses


def sweep_leases(worker_id: str) -> int:
    """Return the runs whose lease expired to the queue (their worker died or stopped
    renewing it) and end those lost MAX_LEASE_LOSSES times without progress; returns how
    many leases had expired."""
    settings = conf.get()
    expired = store.return_expired_leases(
        worker_id, max_losses=settings.MAX_LEASE_LOSSES, lease_seconds=settings.LEASE_SECONDS
    )
    if expired:
        end_lost_runs(worker_id)
    return expired


def end_lost_runs(worker_id: str) -> int:
    """End FAILED, with a `WorkerLostError`, the runs `worker_id` holds because they were lost
    too often; their `on_failure` handlers start as for any failure. Returns how many."""
    lost = store.lost_runs(worker_id, conf.get().MAX_LEASE_LOSSES)
    if not lost:
        return 0
    ends = [
        run_end(
            run.claimed,
            Failed(error=error_data(WorkerLostError(run.losses, run.last_step))),
            worker_id,
        )
        for run in lost
    ]
    written = store.end_runs(ends)
    for run, ended in zip(lost, written, strict=True):
        if ended:
            logger.warning(
                "run failed: its worker was lost %s times without progress run_id=%s fn=%s "
                "last_step=%s",
                run.losses,
                run.claimed.run_id,
                run.claimed.function_id,
                run.last_step,
            )
    return sum(written)
