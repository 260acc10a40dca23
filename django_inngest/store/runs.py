"""Run transitions after a claim (retry, suspend, end), cancellation and reruns, the queries
the API and admin make about runs, and pruning what is no longer needed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django_inngest import killpoints
from django_inngest.core import ids
from django_inngest.core.engine import PauseSpec, StepRecord, StepStatus
from django_inngest.core.errors import RunEndedError, RunNotFoundError
from django_inngest.core.events import (
    FUNCTION_FINISHED,
    FUNCTION_INVOKED,
    PreparedEvent,
    run_ended_events,
)
from django_inngest.models import (
    ENDED_STATUSES,
    Cancellation,
    Event,
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
    db_connection,
    db_datetime,
    table_name,
)
from django_inngest.store.checkpoints import pause_row, write_records
from django_inngest.store.concurrency import free_slots
from django_inngest.store.dialect import dialect, notify
from django_inngest.store.events import (
    event_map,
    event_rows,
    insert_events,
    receipt_position,
    store_event_rows,
)

logger = logging.getLogger("django_inngest.runs")

# --- run transitions --------------------------------------------------------------------------


def _release_item(run_id: str, worker_id: str, available_at: datetime, priority: int) -> bool:
    """Give back the run's item, due at `available_at`; frees its concurrency slots and
    forgets the leases it lost."""
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"UPDATE {table_name(QueueItem)} SET available_at = %s, score = %s, lease_owner = NULL, "
            # Sleeping, waiting or retrying is progress: lost leases count from zero again.
            f"lease_expires_at = NULL, lease_losses = 0 "
            f"WHERE run_id = %s AND kind = %s AND lease_owner = %s "
            f"RETURNING ckey1, ckey2",
            [
                db_datetime(available_at),
                db_datetime(available_at - timedelta(seconds=priority)),
                run_id,
                RUN,
                worker_id,
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return False
    free_slots(row)
    return True


def retry_run(
    run_id: str,
    worker_id: str,
    *,
    attempt: int,
    available_at: datetime,
    records: Sequence[StepRecord],
    priority: int = 0,
) -> bool:
    with atomic():
        if not _release_item(run_id, worker_id, available_at, priority):
            return False
        FunctionRun.objects.using(alias()).filter(id=run_id).update(
            status=RunStatus.QUEUED, attempt=attempt
        )
        write_records(run_id, records)
    return True


def suspend_run(
    run_id: str,
    worker_id: str,
    *,
    wake_at: datetime,
    records: Sequence[StepRecord],
    pauses: Sequence[PauseSpec] = (),
    events: Sequence[PreparedEvent] = (),
    waiting: bool = False,
    now: datetime,
    priority: int = 0,
) -> bool:
    """Free the worker until `wake_at`, or until an event the run waits for arrives."""
    db = alias()
    with atomic():
        if not _release_item(run_id, worker_id, wake_at, priority):
            return False
        status = RunStatus.WAITING if waiting else RunStatus.SLEEPING
        if write_records(run_id, records):
            QueueItem.objects.using(db).filter(run_id=run_id, kind=RUN).update(
                available_at=now, score=now - timedelta(seconds=priority)
            )
            status = RunStatus.QUEUED
        FunctionRun.objects.using(db).filter(id=run_id).update(status=status, attempt=0)
        if pauses:
            after = receipt_position()  # only events received from now on can end the wait
            Pause.objects.using(db).bulk_create([pause_row(run_id, s, after) for s in pauses])
        insert_events(events, received_at=now)
        killpoints.park("suspend")
    return True


def end_run(
    run_id: str,
    worker_id: str,
    *,
    status: str,
    output: Any,
    now: datetime,
    emitted: Sequence[PreparedEvent] = (),
    pending: Callable[[str], bool] | None = None,
    drop_pauses: bool = False,
) -> bool:
    """End a run held by `worker_id`: drop its queue item (and its cancellation listeners when
    it has some), record the end, emit events. False when the run was no longer held."""
    end = RunEnd(
        run_id=run_id,
        worker_id=worker_id,
        status=status,
        output=output,
        now=now,
        emitted=emitted,
        pending=pending,
        drop_pauses=drop_pauses,
    )
    return end_runs([end])[0]


@dataclass(frozen=True, kw_only=True)
class RunEnd:
    run_id: str
    worker_id: str
    status: str
    output: Any
    now: datetime
    emitted: Sequence[PreparedEvent] = ()
    pending: Callable[[str], bool] | None = None
    """Which emitted events need matching (all when None)."""
    drop_pauses: bool = False


def end_runs(ends: Sequence[RunEnd]) -> list[bool]:
    """`end_run` for several runs at once: one statement per lease owner on PostgreSQL, one
    transaction on SQLite. Each run is ended only if its worker still holds it; returns which
    were."""
    held: dict[str, tuple[str | None, ...]] = {}
    statements = dialect()
    # One statement is a transaction of its own.
    with contextlib.nullcontext() if statements.WRITES_IN_ONE_STATEMENT else atomic():
        for worker_id in {end.worker_id for end in ends}:
            ended, unfinished = statements.end_runs(
                worker_id, [end for end in ends if end.worker_id == worker_id]
            )
            held.update(ended)
            _finish_ends(unfinished)
    # After the commit: an extra unparked run only re-checks its key.
    free_slots(key for keys in held.values() for key in keys)
    return [end.run_id in held for end in ends]


def _finish_ends(ended: Sequence[RunEnd]) -> None:
    """What the dialect's `end_runs` left to do for the runs it ended: drop their pauses and
    store the events they emitted."""
    unpaused = [end.run_id for end in ended if end.drop_pauses]
    if unpaused:
        Pause.objects.using(alias()).filter(run_id__in=unpaused).delete()
    store_event_rows(
        [row for end in ended for row in event_rows(end.emitted, end.now, end.pending)]
    )


# --- cancellation and reruns ------------------------------------------------------------------


def cancel_run(run_id: str, *, now: datetime, pending: Callable[[str], bool] | None = None) -> None:
    """Cancel a run that has not ended. Its queue item goes at once, so a worker running it
    loses its lease: the step in flight finishes, its result is dropped, nothing else runs."""
    db = alias()
    with atomic():
        # Locks in the order claims and ends take them (queue items, slot keys, the run), so
        # a cancellation racing a worker cannot deadlock with it.
        items = QueueItem.objects.using(db).filter(run_id=run_id).select_for_update()
        held = [
            (ckey1, ckey2)
            for kind, owner, ckey1, ckey2 in items.values_list(
                "kind", "lease_owner", "ckey1", "ckey2"
            )
            if kind == RUN and owner is not None
        ]
        items.delete()
        for keys in held:
            free_slots(keys)
        cancelled = (
            FunctionRun.objects.using(db)
            .filter(id=run_id)
            .exclude(status__in=ENDED_STATUSES)
            .update(status=RunStatus.CANCELLED, ended_at=now)
        )
        run = (
            FunctionRun.objects.using(db)
            .filter(id=run_id)
            .values("function_id", "status", "event_ids")
            .first()
        )
        if run is None:
            raise RunNotFoundError(run_id)
        if not cancelled:
            raise RunEndedError(run_id, run["status"])
        Pause.objects.using(db).filter(run_id=run_id).delete()
        rows = list(
            Event.objects.using(db)
            .filter(id__in=run["event_ids"])
            .values("id", "user_id", "name", "data", "ts")
        )
        rows.sort(key=lambda row: run["event_ids"].index(row["id"]))
        trigger_events = [event_map(row) for row in rows]
        emitted = run_ended_events(
            function_id=run["function_id"],
            run_id=run_id,
            trigger_events=trigger_events,
            status=RunStatus.CANCELLED,
            output={"code": "cancelled", "message": "the run was cancelled", "name": "Cancelled"},
            now_ms=int(now.timestamp() * 1000),
        )
        insert_events(emitted, received_at=now, pending=ended_pending(pending, trigger_events))
    logger.info(
        "run cancelled run_id=%s fn=%s",
        run_id,
        run["function_id"],
        extra={"run_id": run_id, "fn": run["function_id"]},
    )


def ended_pending(
    pending: Callable[[str], bool] | None, trigger_events: Sequence[Mapping[str, Any]]
) -> Callable[[str], bool]:
    """Which events a run's end emits need matching: those some function listens to, and the
    `inngest/function.finished` of an invoked run, which its parent waits for."""
    invoked = bool(trigger_events) and trigger_events[0].get("name") == FUNCTION_INVOKED

    def needs_matching(name: str) -> bool:
        return (pending is None or pending(name)) or (invoked and name == FUNCTION_FINISHED)

    return needs_matching


def active_runs(
    function_id: str, *, started_after: datetime | None, started_before: datetime
) -> list[dict[str, Any]]:
    """Runs of a function that have not ended, enqueued within a window, with their first event."""
    query = (
        FunctionRun.objects.using(alias())
        .active()
        .filter(function_id=function_id, created_at__lt=started_before)
    )
    if started_after is not None:
        query = query.filter(created_at__gte=started_after)
    runs = list(query.order_by("id").values("id", "event_id"))
    events = {
        row["id"]: row
        for row in Event.objects.using(alias())
        .filter(id__in=[run["event_id"] for run in runs if run["event_id"]])
        .values("id", "user_id", "name", "data", "ts")
    }
    return [
        {
            "id": run["id"],
            "event": event_map(events[run["event_id"]]) if run["event_id"] in events else {},
        }
        for run in runs
    ]


#: How long after an event arrives a batch holding it may start its run (the batch timeout is
#: at most 60 s; the rest is room for workers that were busy or down).
BATCH_RUN_WINDOW = timedelta(hours=1)


def run_ids_of_event(event_id: str, *, received_at: datetime) -> list[str]:
    """The runs an event started: runs it triggered first, and batches it joined. Batch runs
    are searched among runs created within `BATCH_RUN_WINDOW` of the event, a range of the
    primary key (run ids are ULIDs of their creation time)."""
    db = alias()
    runs = FunctionRun.objects.using(db)
    direct = list(runs.filter(event_id=event_id).values_list("id", flat=True))
    start_ms = int(received_at.timestamp() * 1000)
    end_ms = int((received_at + BATCH_RUN_WINDOW).timestamp() * 1000)
    window = runs.filter(id__gte=ids.ulid_floor(start_ms), id__lt=ids.ulid_floor(end_ms)).exclude(
        event_id=event_id
    )
    batched = dialect().runs_with_event(window, event_id).values_list("id", flat=True)
    return sorted({*direct, *batched})


def record_cancellation(
    *,
    app_id: str,
    function_id: str,
    started_after: datetime | None,
    started_before: datetime,
    if_exp: str | None,
    requested_by: str,
    cancelled_runs: int,
    now: datetime,
) -> Cancellation:
    """Keep a record of a bulk cancellation made through the HTTP API."""
    return Cancellation.objects.using(alias()).create(
        id=ids.ulid(),
        app_id=app_id,
        function_id=function_id,
        started_after=started_after,
        started_before=started_before,
        if_exp=if_exp or "",
        requested_by=requested_by,
        cancelled_runs=cancelled_runs,
        created_at=now,
    )


def rerun(run_id: str, *, now: datetime, from_step: str | None = None) -> str:
    """Start a new run with the same events, linked to the original. With `from_step` (a step
    id or hashed id), results of the steps completed before that step are kept."""
    db = alias()
    with atomic():
        original = FunctionRun.objects.using(db).filter(id=run_id).first()
        if original is None:
            raise RunNotFoundError(run_id)
        kept: list[RunStep] = []
        if from_step is not None:
            steps = list(RunStep.objects.using(db).filter(run_id=run_id).order_by("id"))
            chosen = next((s for s in steps if from_step in (s.hashed_id, s.step_id)), None)
            if chosen is None:
                raise ValueError(f"run {run_id!r} has no step {from_step!r}")
            kept = [s for s in steps if s.id < chosen.id and s.status == StepStatus.COMPLETED]
        new = FunctionRun.objects.using(db).create(
            id=ids.ulid(),
            function_id=original.function_id,
            status=RunStatus.QUEUED,
            event_id=original.event_id,
            event_ids=original.event_ids,
            created_at=now,
            original_run=original,
        )
        RunStep.objects.using(db).bulk_create(
            [
                RunStep(
                    run=new,
                    hashed_id=s.hashed_id,
                    step_id=s.step_id,
                    index=s.index,
                    op=s.op,
                    status=s.status,
                    output=s.output,
                    attempts=s.attempts,
                    started_at=s.started_at,
                    ended_at=s.ended_at,
                    wake_at=s.wake_at,
                )
                for s in kept
            ]
        )
        QueueItem.objects.using(db).create(run=new, available_at=now, score=now)
        notify()
    return new.id


def runs_in_window(
    function_id: str,
    *,
    statuses: Sequence[str],
    enqueued_after: datetime | None,
    enqueued_before: datetime,
    limit: int,
) -> list[str]:
    """Ids of the runs of `function_id` in `statuses` enqueued in [after, before), oldest
    first, at most `limit` (a bulk replay's preview and its work)."""
    runs = FunctionRun.objects.using(alias()).filter(
        function_id=function_id, status__in=list(statuses), created_at__lt=enqueued_before
    )
    if enqueued_after is not None:
        runs = runs.filter(created_at__gte=enqueued_after)
    return list(runs.order_by("id").values_list("id", flat=True)[:limit])
