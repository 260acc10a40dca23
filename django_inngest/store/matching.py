"""Fan-out: matching pending events against the functions they start (through flow control)
and the runs waiting for them, which are resumed or cancelled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction

from django_inngest.core import ids
from django_inngest.core.engine import StepStatus, pause_result
from django_inngest.core.errors import RunEndedError, RunNotFoundError
from django_inngest.core.events import FUNCTION_FINISHED, FUNCTION_INVOKED, invocation_of
from django_inngest.core.expressions import compile_expression, event_index_keys
from django_inngest.core.flow import RunPlan
from django_inngest.models import Event, FunctionRun, Pause, QueueItem, RunStatus, RunStep
from django_inngest.store._sql import RUN, alias, is_postgresql, notify
from django_inngest.store.events import event_map, has_pending_events
from django_inngest.store.flow import (
    Planner,
    _add_to_batch,
    _apply_gcra,
    _debounce,
    _first_in_24h,
    _Intake,
    _no_planner,
)
from django_inngest.store.runs import cancel_run


@dataclass(frozen=True, kw_only=True)
class FanOut:
    events: int
    runs: int
    resumed: int = 0


Route = Callable[[Mapping[str, Any], str], Iterable[RunPlan]]


def fan_out(
    route: Route,
    *,
    now: datetime,
    limit: int = 200,
    pending: Callable[[str], bool] | None = None,
    planner: Planner | None = None,
) -> FanOut:
    """Match pending events against functions and waiting runs, in one transaction.

    For each event, in order (SPEC §3): for each function it starts (`route`), batch, rate
    limit (including idempotency), debounce, event-id de-duplication (a sender's id starts each
    function at most once in 24 hours), singleton, then create and queue the run with its
    cancellation listeners; then resume the runs waiting for the event and cancel those it
    cancels. `planner` plans the runs of flushed batches.
    """
    db = alias()
    if not has_pending_events():
        # One read instead of a locking transaction (on SQLite, the write lock) per idle pass.
        return FanOut(events=0, runs=0)
    with transaction.atomic(using=db):
        query = Event.objects.using(db).pending().order_by("id")
        if is_postgresql():
            query = query.select_for_update(skip_locked=True)
        rows = list(query.values("id", "user_id", "name", "data", "ts")[:limit])
        if not rows:
            return FanOut(events=0, runs=0)
        intake = _Intake(now, planner or _no_planner, pending)
        has_pauses: dict[str, bool] = {}
        resumed = 0
        for row in rows:
            for plan in route(event_map(row), row["id"]):
                _take(plan, row, intake)
                for spec in plan.pauses:
                    has_pauses[spec.event_name] = True
            name = row["name"]
            if name not in has_pauses:
                has_pauses[name] = Pause.objects.using(db).filter(event_name=name).exists()
            if has_pauses[name]:
                intake.flush()  # listeners created above must be visible to this event
                resumed += _match_pauses(row, now, pending)
        intake.flush()
        Event.objects.using(db).filter(id__in=[row["id"] for row in rows]).update(pending=False)
        if intake.created or resumed:
            notify()
    return FanOut(events=len(rows), runs=intake.created, resumed=resumed)


def _take(plan: RunPlan, row: Mapping[str, Any], intake: _Intake) -> None:
    """The flow-control steps before a run exists, for one function and one event."""
    now = intake.now
    if plan.batch is not None:
        _add_to_batch(plan, row, intake)
        return
    if plan.rate_limit is not None and _apply_gcra(plan.rate_limit, now, drop=True) is None:
        if row["name"] == FUNCTION_INVOKED:
            _fail_invocation(row, "invoked function is rate limited", now, intake.pending)
        return
    if plan.debounce is not None:
        _debounce(plan, row, now)
        return
    if (
        plan.dedupe
        and row["user_id"]
        and not _first_in_24h(ids.stable_hash(plan.function_id, row["user_id"]), now)
    ):
        return
    intake.start(plan, [row])


def _fail_invocation(
    row: Mapping[str, Any], message: str, now: datetime, pending: Callable[[str], bool] | None
) -> None:
    """Give the invoking step an error now, as if the invoked run had failed."""
    correlation = invocation_of(row)
    if correlation is None:
        return
    finished = {
        "id": ids.ulid(),
        "user_id": "",
        "name": FUNCTION_FINISHED,
        "ts": int(now.timestamp() * 1000),
        "data": {
            "correlation_id": correlation,
            "_inngest": {"status": RunStatus.FAILED},
            "error": {"name": "Error", "message": message, "stack": None},
        },
    }
    _match_pauses(finished, now, pending)


def _match_pauses(
    row: Mapping[str, Any], now: datetime, pending: Callable[[str], bool] | None
) -> int:
    """Resume the runs waiting for this event and cancel the runs it cancels; the first event
    to consume a wait wins, whatever the number of workers."""
    db = alias()
    incoming = event_map(row)
    keys = event_index_keys(incoming)
    # Two index lookups joined, rather than one OR that SQLite would answer by a scan.
    waiting = Pause.objects.using(db).filter(
        event_name=row["name"], after_id__lt=row["id"], expires_at__gt=now
    )
    fields = ("id", "kind", "run_id", "hashed_id", "expression", "trigger_event")
    candidates = (
        waiting.filter(match_key__in=keys)
        .values(*fields)
        .union(waiting.filter(match_key__isnull=True).values(*fields), all=True)
        .order_by("id")
    )
    resumed = 0
    for pause in candidates:
        if pause["expression"] and not compile_expression(pause["expression"]).matches(
            pause["trigger_event"], incoming
        ):
            continue
        if pause["kind"] == Pause.Kind.CANCEL:
            with contextlib.suppress(RunEndedError, RunNotFoundError):
                cancel_run(pause["run_id"], now=now, pending=pending)
            continue
        deleted, _ = Pause.objects.using(db).filter(id=pause["id"]).delete()
        if not deleted:
            continue  # another event got there first
        status, output, error = pause_result(pause["kind"], incoming)
        RunStep.objects.using(db).filter(
            run_id=pause["run_id"], hashed_id=pause["hashed_id"], status=StepStatus.WAITING
        ).update(status=status, output=output, error=error, attempts=1, ended_at=now)
        _resume(pause["run_id"], now)
        resumed += 1
    return resumed


def _resume(run_id: str, now: datetime) -> None:
    """Make a suspended run due now (a worker holding it will see the result itself)."""
    db = alias()
    item = QueueItem.objects.using(db).filter(run_id=run_id, kind=RUN, lease_owner__isnull=True)
    for priority in item.values_list("priority", flat=True):
        item.update(available_at=now, score=now - timedelta(seconds=priority))
    FunctionRun.objects.using(db).filter(
        id=run_id, status__in=[RunStatus.WAITING, RunStatus.SLEEPING]
    ).update(status=RunStatus.QUEUED)
