"""Fan-out: matching pending events against the functions they start (through flow control)
and the runs waiting for them, which are resumed or cancelled.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django_inngest import killpoints
from django_inngest.core import ids
from django_inngest.core.engine import StepStatus
from django_inngest.core.errors import RunEndedError, RunNotFoundError, storable_text
from django_inngest.core.events import FUNCTION_FINISHED, FUNCTION_INVOKED, invocation_of
from django_inngest.core.expressions import compile_expression, event_index_keys
from django_inngest.core.flow import RunPlan
from django_inngest.models import (
    Event,
    EventSkip,
    FunctionRun,
    Pause,
    QueueItem,
    RunStatus,
    RunStep,
)
from django_inngest.store._sql import (
    RUN,
    alias,
    atomic,
    table_name,
)
from django_inngest.store.dialect import dialect, notify
from django_inngest.store.events import event_map, has_pending_events
from django_inngest.store.fleet import note_sync_marker
from django_inngest.store.flow import (
    Intake,
    Lease,
    LeasedRun,
    Planner,
    Route,
    Routing,
    add_to_batch,
    apply_gcra,
    debounce_event,
    first_in_24h,
    routing_of,
)
from django_inngest.store.runs import cancel_run

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FanOut:
    events: int
    run_ids: tuple[str, ...] = ()
    """The runs queued (or leased)."""
    resumed: int = 0
    leased: tuple[LeasedRun, ...] = ()
    """The runs leased to the worker that fanned out, as they were created."""
    backlog: bool = False
    """Whether due runs were already waiting when it looked (it leases none then)."""

    @property
    def runs(self) -> int:
        return len(self.run_ids)


def fan_out(
    routing: Routing | Route,
    *,
    now: datetime,
    limit: int = 200,
    pending: Callable[[str], bool] | None = None,
    planner: Planner | None = None,
) -> FanOut:
    """Match pending events against functions and waiting runs, in one transaction.

    For each event, in order (SPEC §3): for each function it starts (`routing.route`), batch,
    rate limit (including idempotency), debounce, event-id de-duplication (a sender's id starts
    each function at most once in 24 hours), singleton, then create and queue the run with its
    cancellation listeners; then resume the runs waiting for the event and cancel those it
    cancels. `routing.planner` plans the runs of flushed batches. `pending` and `planner` are
    for a bare `route` function (`routing_of`).
    """
    if not has_pending_events():
        # One read instead of a locking transaction (on SQLite, the write lock) per idle pass.
        return FanOut(events=0)
    with atomic():
        fanned = fan_out_in_transaction(routing_of(routing, planner, pending), now=now, limit=limit)
        if fanned.run_ids or fanned.resumed:
            notify()
    return fanned


def fan_out_in_transaction(
    routing: Routing,
    *,
    now: datetime,
    limit: int,
    lease: Lease | None = None,
) -> FanOut:
    """`fan_out` inside the caller's transaction, which notifies workers of the runs queued.

    With `lease`, when no run is already due, the new runs that could start now are leased to
    `lease.worker_id` as they are created (up to `lease.slots`): a run created by an idle
    worker starts there without being claimed.
    """
    due_by = None
    if lease is not None:
        # Whether runs are already due, as the claim would see them.
        due_by = (now + timedelta(seconds=lease.priority_window), now)
    # Whether runs wait for each event's name comes with it: one round trip, not one per name.
    found = dialect().pending_events(limit, due_by)
    if not found:
        return FanOut(events=0)
    rows = [
        {
            "id": id_,
            "user_id": user_id,
            "name": name,
            "data": json.loads(data),
            "ts": ts,
            "receipt_order": receipt_order,
        }
        for id_, user_id, name, data, ts, receipt_order, *_ in found
    ]
    has_pauses = {row[2]: bool(row[6]) for row in found}
    db_now, backlog = found[0][7] or datetime.now(UTC), bool(found[0][8])
    note_sync_marker(found[0][9])  # before `route`: the functions synced with these events
    if lease is None or backlog:
        intake = Intake(now, routing)
    else:
        expires_at = db_now + timedelta(seconds=lease.seconds)
        intake = Intake(now, routing, lease, expires_at)
    resumed = 0
    for row in rows:
        for plan in routing.route(event_map(row), row["id"]):
            _take(plan, row, intake)
            for spec in plan.pauses:
                has_pauses[spec.event_name] = True
        if has_pauses[row["name"]]:
            intake.flush()  # listeners created above must be visible to this event
            resumed += _match_pauses(row, now, routing.listens_to)
    seen = [row["id"] for row in rows]
    killpoints.park("fan-out")
    intake.flush(
        (
            f"UPDATE {table_name(Event)} SET pending = false "
            f"WHERE id IN ({', '.join(['%s'] * len(seen))})",
            seen,
        )
    )
    return FanOut(
        events=len(rows),
        run_ids=tuple(intake.created),
        resumed=resumed,
        leased=tuple(intake.leased),
        backlog=backlog,
    )


def _take(plan: RunPlan, row: Mapping[str, Any], intake: Intake) -> None:
    """The flow-control steps before a run exists, for one function and one event."""
    if plan.skipped:
        intake.skip(plan, [row])
        return
    now = intake.now
    if plan.batch is not None:
        add_to_batch(plan, row, intake)
        return
    if plan.rate_limit is not None and apply_gcra(plan.rate_limit, now, drop=True) is None:
        if row["name"] == FUNCTION_INVOKED:
            _fail_invocation(
                row, "invoked function is rate limited", now, intake.routing.listens_to
            )
        return
    if plan.debounce is not None:
        debounce_event(plan, row, now)
        return
    if (
        plan.dedupe
        and row["user_id"]
        and not first_in_24h(ids.stable_hash(plan.function_id, row["user_id"]), now)
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
    _match_pauses(finished, now, pending, stored=False)


def _match_pauses(
    row: Mapping[str, Any],
    now: datetime,
    pending: Callable[[str], bool] | None,
    *,
    stored: bool = True,
) -> int:
    """Resume the runs waiting for this event and cancel the runs it cancels; the first event
    to consume a wait wins, whatever the number of workers.

    A wait whose condition fails to evaluate over this event is skipped for this event only
    (logged, and recorded with the event when it is `stored`)."""
    db = alias()
    incoming = event_map(row)
    waiting = Pause.objects.using(db).filter(event_name=row["name"], expires_at__gt=now)
    if row.get("receipt_order") is not None:  # an event made here and now follows every pause
        waiting = waiting.filter(after_receipt__lt=row["receipt_order"])
    fields = ("id", "kind", "run_id", "hashed_id", "expression", "trigger_event")
    try:
        keys = event_index_keys(incoming)
    except Exception:
        logger.warning(
            "cannot index event event_id=%s; every wait for %r is looked at",
            row["id"],
            row["name"],
            exc_info=True,
        )
        candidates = waiting.values(*fields).order_by("id")
    else:
        # Two index lookups joined, rather than one OR that SQLite would answer by a scan.
        candidates = (
            waiting.filter(match_key__in=keys)
            .values(*fields)
            .union(waiting.filter(match_key__isnull=True).values(*fields), all=True)
            .order_by("id")
        )
    resumed = 0
    skips: list[EventSkip] = []
    for pause in candidates:
        if pause["expression"]:
            try:
                matched = compile_expression(pause["expression"]).matches(
                    pause["trigger_event"], incoming
                )
            except Exception as failure:
                skips.append(_skipped_pause(row, pause, failure, now))
                continue
            if not matched:
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
    if skips and stored:
        functions = dict(
            FunctionRun.objects.using(db)
            .filter(id__in={skip.run_id for skip in skips})
            .values_list("id", "function_id")
        )
        for skip in skips:
            skip.function_id = functions.get(skip.run_id, "")
        EventSkip.objects.using(db).bulk_create(skips)
    return resumed


def _skipped_pause(
    row: Mapping[str, Any], pause: Mapping[str, Any], error: Exception, now: datetime
) -> EventSkip:
    what = {"cancel": "cancel condition", "invoke": "invocation"}.get(pause["kind"], "wait")
    reason = storable_text(
        f"evaluating the {what} {pause['expression']!r} failed: {type(error).__name__}: {error}"
    )
    logger.warning(
        "waiting run skipped for event event_id=%s run_id=%s reason=%s",
        row["id"],
        pause["run_id"],
        reason,
        exc_info=error,
    )
    return EventSkip(event_id=row["id"], run_id=pause["run_id"], reason=reason, created_at=now)


def _resume(run_id: str, now: datetime) -> None:
    """Make a suspended run due now (a worker holding it will see the result itself)."""
    db = alias()
    item = QueueItem.objects.using(db).filter(run_id=run_id, kind=RUN, lease_owner__isnull=True)
    for priority in item.values_list("priority", flat=True):
        item.update(available_at=now, score=now - timedelta(seconds=priority))
    FunctionRun.objects.using(db).filter(
        id=run_id, status__in=[RunStatus.WAITING, RunStatus.SLEEPING]
    ).update(status=RunStatus.QUEUED)


def pause_result(kind: str, incoming: Mapping[str, Any]) -> tuple[str, Any, dict[str, Any] | None]:
    """The step result an event gives a consumed pause: (status, output, error).

    A wait returns the event itself; an invocation returns the invoked run's result or error.
    """
    if kind != "invoke":
        return StepStatus.COMPLETED, dict(incoming), None
    data = incoming.get("data") or {}
    status = (data.get("_inngest") or {}).get("status")
    if status == "COMPLETED":
        return StepStatus.COMPLETED, data.get("result"), None
    error = data.get("error") or {}
    return (
        StepStatus.FAILED,
        None,
        {
            "name": error.get("name", "Error"),
            "message": error.get("message", f"invoked function ended {status}"),
            "stack": error.get("stack"),
        },
    )
