"""A claimed run against the database: the plans of the runs an event starts, the step store
of a run, and recording what an invocation ended with. Shared by the worker and
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
    Execution,
    Failed,
    Memo,
    Outcome,
    Retry,
    Runtime,
    StepRecord,
    Suspended,
)
from django_inngest.core.events import PreparedEvent, run_ended_events
from django_inngest.core.flow import RunPlan, plan_run
from django_inngest.core.function import Function
from django_inngest.models import RunStatus
from django_inngest.registry import registry
from django_inngest.threads import GroupWriter

logger = logging.getLogger("django_inngest.worker")  # run outcomes are logged as the worker's


def route(event: Mapping[str, Any], event_id: str) -> list[RunPlan]:
    """The plans of the runs an event starts."""
    bound = conf.get().PRIORITY_RANGE
    return [
        plan_run(function, event, event_id, priority_bound=bound)
        for function in registry.matching(event)
    ]


def planner(
    function_id: str, event: Mapping[str, Any], event_id: str, batched: bool
) -> RunPlan | None:
    """The plan of a run started by a timer (a debounce or a batch)."""
    function = registry.get(function_id)
    if function is None:
        return None
    return plan_run(
        function, event, event_id, priority_bound=conf.get().PRIORITY_RANGE, batched=batched
    )


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
    return store.RunEnd(
        run_id=claimed.run_id,
        worker_id=worker_id,
        status=status,
        output=output,
        now=clock.now(),
        emitted=run_ended_events(
            function_id=claimed.function_id,
            run_id=claimed.run_id,
            trigger_events=trigger_events,
            status=status,
            output=output,
            now_ms=clock.now_ms(),
        ),
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
    logger.info("run dropped run_id=%s reason=%s", claimed.run_id, outcome.reason)
    return None
