"""A claimed run against the database: the plans of the runs an event starts, the step store
of a run and the `Execution` that invokes it. What the invocation ended with is recorded by
`outcomes.py`. Shared by the worker and `testing.drain()`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from django_inngest import conf, killpoints, store
from django_inngest.core.engine import (
    Execution,
    Failed,
    Memo,
    Runtime,
    StepRecord,
)
from django_inngest.core.events import PreparedEvent
from django_inngest.core.flow import RunPlan
from django_inngest.core.function import Function
from django_inngest.registry import registry
from django_inngest.runtime import fleet
from django_inngest.runtime.threads import GroupWriter

logger = logging.getLogger("django_inngest.worker")  # run starts are logged as the worker's


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
