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

from django_inngest import conf, killpoints, store
from django_inngest.core import clock
from django_inngest.core.backoff import clamp_retry_after, retry_delay
from django_inngest.core.engine import (
    Completed,
    Dropped,
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
)
from django_inngest.core.events import FUNCTION_FINISHED, PreparedEvent, run_ended_events
from django_inngest.core.flow import RunPlan
from django_inngest.core.function import Function
from django_inngest.models import RunStatus
from django_inngest.registry import registry
from django_inngest.runtime import fleet
from django_inngest.runtime.threads import GroupWriter, ensure_usable_connections

logger = logging.getLogger("django_inngest.worker")  # run outcomes are logged as the worker's


def run_fields(run_id: str, function_id: str) -> dict[str, str]:
    """The `extra=` of a run's log lines, for structured loggers and formatters."""
    return {"run_id": run_id, "fn": function_id}


def route(event: Mapping[str, Any], event_id: str) -> list[RunPlan]:
    """The plans of the runs an event starts among this process's functions (`drain()`; a
    worker routes through its `fleet.Catalog`, the current function sets)."""
    return fleet.plans_for(registry, event, event_id)


def planner(
    function_id: str, event: Mapping[str, Any], event_id: str, batched: bool
) -> RunPlan | None:
    """The plan of a run started by a timer (a debounce or a batch)."""
    function = registry.get(function_id)
    if function is None:
        return None
    return fleet.plan_or_skip(function, event, event_id, batched=batched)


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
        killpoints.park("before-checkpoint")
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
    fields = run_fields(claimed.run_id, claimed.function_id)
    if claimed.memos:
        logger.debug(
            "run resumed run_id=%s fn=%s attempt=%s steps_done=%s",
            claimed.run_id,
            claimed.function_id,
            claimed.attempt,
            len(claimed.memos),
            extra=fields,
        )
    else:
        logger.debug(
            "run started run_id=%s fn=%s attempt=%s",
            claimed.run_id,
            claimed.function_id,
            claimed.attempt,
            extra=fields,
        )
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
        pending=store.ended_pending(fleet.listens_to, trigger_events),
        drop_pauses=bool(function and function.cancel),
    )


def log_end(end: store.RunEnd, function_id: str, written: bool) -> str | None:
    """The run's new status, or None when the run was no longer this worker's."""
    if not written:
        return None
    fields = run_fields(end.run_id, function_id)
    if end.status == RunStatus.FAILED:
        error = end.output if isinstance(end.output, dict) else {}
        logger.warning(
            "run failed run_id=%s fn=%s error=%s: %s",
            end.run_id,
            function_id,
            error.get("name", "Error"),
            error.get("message", ""),
            extra={**fields, "error_name": error.get("name"), "error": error.get("message")},
        )
    else:
        logger.info(
            "run %s run_id=%s fn=%s", end.status.lower(), end.run_id, function_id, extra=fields
        )
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
        failed_steps = [record.step_id for record in outcome.records]
        logger.info(
            "run retrying run_id=%s fn=%s attempt=%s at=%s step=%s error=%s: %s",
            claimed.run_id,
            claimed.function_id,
            outcome.attempt,
            available_at.isoformat(),
            ",".join(failed_steps) or "-",
            outcome.error.get("name", "Error"),
            outcome.error.get("message", ""),
            extra={
                **run_fields(claimed.run_id, claimed.function_id),
                "attempt": outcome.attempt,
                "error_name": outcome.error.get("name"),
                "error": outcome.error.get("message"),
            },
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
        fields = run_fields(claimed.run_id, claimed.function_id)
        if outcome.waiting:
            logger.debug(
                "run waiting run_id=%s fn=%s for=%s until=%s",
                claimed.run_id,
                claimed.function_id,
                ",".join(sorted({pause.event_name for pause in outcome.pauses})) or "-",
                outcome.wake_at.isoformat(),
                extra=fields,
            )
            return RunStatus.WAITING
        logger.debug(
            "run sleeping run_id=%s fn=%s until=%s",
            claimed.run_id,
            claimed.function_id,
            outcome.wake_at.isoformat(),
            extra=fields,
        )
        return RunStatus.SLEEPING
    if outcome.store_failed:
        drop_run(claimed.run_id, worker_id)
    else:
        log_dropped(claimed, outcome)
    return None


def log_dropped(claimed: store.ClaimedRun, outcome: Dropped) -> None:
    logger.info(
        "run dropped run_id=%s fn=%s reason=%s",
        claimed.run_id,
        claimed.function_id,
        outcome.reason,
        extra=run_fields(claimed.run_id, claimed.function_id),
    )


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
