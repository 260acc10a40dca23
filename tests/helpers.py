"""Building functions, events and worker rows for tests, and running a function to its end
either in memory (`core.local`) or through the database with `drain()` and a frozen clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django_inngest.core import clock, ids
from django_inngest.core.config import TriggerEvent
from django_inngest.core.engine import StepRecord
from django_inngest.core.events import Event, PreparedEvent
from django_inngest.core.function import Function, Handler
from django_inngest.core.local import LocalResult, run_locally
from django_inngest.models import WorkerRecord

Runner = Callable[..., LocalResult]


def make(handler: Handler, **options: Any) -> Function:
    options.setdefault("trigger", TriggerEvent(event="t"))
    options.setdefault("fn_id", handler.__name__)
    return Function(app_id="test", handler=handler, **options)


def event(data: dict[str, Any] | None = None, name: str = "t") -> Event:
    return Event(name=name, data=data or {}, id=ids.ulid(), ts=clock.now_ms())


def run_in_memory(
    function: Function, data: dict[str, Any] | None = None, **kwargs: Any
) -> LocalResult:
    return run_locally(function, [event(data)], **kwargs)


def run_on_database(function: Function, data: dict[str, Any] | None = None) -> LocalResult:
    """Send one event and drain until the run ends, moving the frozen clock to each due time."""
    from django_inngest import store
    from django_inngest.models import Event as EventRow
    from django_inngest.models import FunctionRun, RunStep
    from django_inngest.registry import registry
    from django_inngest.testing import drain, frozen_clock

    with registry.isolated(), frozen_clock() as frozen:
        registry.register(function)
        [trigger_id] = store_event(Event(name="t", data=data or {}))
        invocations = 0
        for _ in range(1000):
            invocations += drain().invocations
            run = FunctionRun.objects.get(function_id=function.id)
            if run.ended:
                break
            due = store.next_due_at()
            assert due is not None, f"run {run.id} is {run.status} with nothing due"
            frozen.set(max(due, frozen.now()))
        steps = {
            row.hashed_id: StepRecord(
                hashed_id=row.hashed_id,
                step_id=row.step_id,
                index=row.index,
                op=row.op,
                status=row.status,
                output=row.output,
                error=row.error,
                attempts=row.attempts,
                started_at=row.started_at,
                ended_at=row.ended_at,
                wake_at=row.wake_at,
            )
            for row in RunStep.objects.filter(run=run)
        }
        sent = [
            PreparedEvent(id=row.id, name=row.name, data=row.data, user_id=row.user_id, ts=row.ts)
            for row in EventRow.objects.exclude(id=trigger_id)
            .exclude(name__startswith="inngest/")
            .order_by("id")
        ]
        failed = run.status == "FAILED"
        return LocalResult(
            status=run.status,
            output=None if failed else run.output,
            error=run.output if failed else None,
            invocations=invocations,
            steps=steps,
            sent_events=sent,
        )


def store_event(value: Event) -> list[str]:
    from django_inngest.client import Inngest

    return Inngest(app_id="test").send_sync(value)


def worker_row(
    worker_id: str, *, seen_ago: float, version: str = "a" * 40, in_flight: int = 3
) -> None:
    """A worker's row in the fleet table, as its heartbeat leaves it `seen_ago` seconds ago
    (by the engine's clock), serving tests-f with 10 slots."""
    now = clock.now()
    WorkerRecord.objects.create(
        id=worker_id,
        host="web-1",
        pid=100,
        version=version,
        functions=["tests-f"],
        concurrency=10,
        in_flight=in_flight,
        started_at=now - timedelta(hours=1),
        last_seen_at=now - timedelta(seconds=seen_ago),
    )
