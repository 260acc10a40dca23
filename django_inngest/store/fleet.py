"""Apps and workers known to the database: app syncs (the current function set of each app),
worker rows kept by heartbeats, and the backlog they leave when none serves it.

`SYNC_MARKER` is the newest sync's id; fan-out reads it in the same statement as the events it
matches, so a worker notices a new sync before it routes an event sent after that sync.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Min

from django_inngest.models import (
    AppSync,
    CronSchedule,
    Event,
    QueueItem,
    SyncedFunction,
    WorkerRecord,
)
from django_inngest.store._sql import (
    RUN,
    alias,
    atomic,
    db_connection,
    db_datetime,
    sync_marker_sql,
    table_name,
)
from django_inngest.store.dialect import dialect

#: Syncs kept per app (older ones go when a new one is made); their functions stay "known".
SYNCS_KEPT = 20


class _Seen(threading.local):
    marker: int | None = None
    """The newest sync id the last fan-out statement on this thread saw."""
    routed: int | None = None
    """The sync id of the function sets the last routing on this thread used (None: the
    process's own registry)."""


seen = _Seen()


def note_sync_marker(marker: int | None) -> None:
    """Called by fan-out with the newest sync id read together with the events."""
    seen.marker = marker


# --- syncs ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Synced:
    app_id: str
    sync_id: int
    version: str
    created: bool
    """False when the app's newest sync already had this version."""


def sync_app(
    app_id: str,
    definitions: Sequence[tuple[Mapping[str, Any], str]],
    *,
    version: str,
    now: datetime,
    by: str,
) -> Synced:
    """Make `definitions` ((definition, hash) pairs) the current function set of `app_id`,
    unless its newest sync has this version already."""
    db = alias()
    with atomic():
        newest = AppSync.objects.using(db).filter(app_id=app_id).order_by("-id").first()
        if newest is not None and newest.version == version:
            return Synced(app_id=app_id, sync_id=newest.id, version=version, created=False)
        sync = AppSync.objects.using(db).create(
            app_id=app_id, version=version, synced_at=now, synced_by=by
        )
        SyncedFunction.objects.using(db).bulk_create(
            [
                SyncedFunction(
                    sync=sync,
                    function_id=stored["id"],
                    name=stored["name"],
                    triggers=stored["triggers"],
                    options=stored["options"],
                    hash=digest,
                )
                for stored, digest in definitions
            ]
        )
        kept = list(
            AppSync.objects.using(db)
            .filter(app_id=app_id)
            .order_by("-id")
            .values_list("id", flat=True)[:SYNCS_KEPT]
        )
        AppSync.objects.using(db).filter(app_id=app_id, id__lt=min(kept)).delete()
    return Synced(app_id=app_id, sync_id=sync.id, version=version, created=True)


@dataclass(frozen=True, kw_only=True)
class CurrentSets:
    marker: int
    """The newest sync's id."""
    definitions: list[dict[str, Any]]
    """The functions of each app's newest sync."""
    synced_at: dict[str, datetime]
    """When each app's current set was synced."""
    known: frozenset[str]
    """Every function of the syncs kept, current or not."""


def current_sets() -> CurrentSets:
    """Each app's newest sync and its functions, read in one transaction."""
    db = alias()
    with atomic():
        newest = list(
            AppSync.objects.using(db)
            .values("app_id")
            .annotate(newest=Max("id"))
            .values_list("newest", flat=True)
        )
        syncs = {
            row["id"]: row
            for row in AppSync.objects.using(db)
            .filter(id__in=newest)
            .values("id", "app_id", "synced_at")
        }
        rows = SyncedFunction.objects.using(db).filter(sync_id__in=list(syncs)).order_by("id")
        definitions = [
            {
                "id": row.function_id,
                "app_id": syncs[row.sync_id]["app_id"],
                "name": row.name,
                "triggers": row.triggers,
                "options": row.options,
            }
            for row in rows
        ]
        known = frozenset(
            SyncedFunction.objects.using(db).values_list("function_id", flat=True).distinct()
        )
    return CurrentSets(
        marker=max(syncs, default=0),
        definitions=definitions,
        synced_at={row["app_id"]: row["synced_at"] for row in syncs.values()},
        known=known,
    )


# --- workers ----------------------------------------------------------------------------------


def register_worker(record: WorkerRecord) -> None:
    """Insert (or replace) a worker's row when it starts."""
    db = alias()
    with atomic():
        WorkerRecord.objects.using(db).filter(id=record.id).delete()
        record.save(using=db, force_insert=True)


def database_now() -> datetime:
    """The database's clock (SQLite: this machine's)."""
    sql, params = dialect().database_now()
    with db_connection().cursor() as cursor:
        cursor.execute(f"SELECT {sql}", params)
        (found,) = cursor.fetchone()
    return _read_datetime(found)


def _read_datetime(value: Any) -> datetime:
    """A time read back from the database: psycopg gives a datetime, SQLite the text written."""
    if isinstance(value, datetime):
        return value
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, kw_only=True)
class Beat:
    marker: int
    """The newest sync's id."""
    database_now: datetime
    """The database's clock during the heartbeat (SQLite: this machine's)."""


def worker_seen(worker_id: str, *, now: datetime, in_flight: int) -> Beat | None:
    """A worker's heartbeat on its row, in one statement that also reads the newest sync's id
    and the database's clock; None when the row is gone (another worker took it for dead)."""
    clock_sql, clock_params = dialect().database_now()
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"UPDATE {table_name(WorkerRecord)} SET last_seen_at = %s, in_flight = %s "
            f"WHERE id = %s RETURNING {sync_marker_sql()}, {clock_sql}",
            [db_datetime(now), in_flight, worker_id, *clock_params],
        )
        found = cursor.fetchone()
    if found is None:
        return None
    return Beat(marker=int(found[0]), database_now=_read_datetime(found[1]))


def unregister_worker(worker_id: str) -> None:
    WorkerRecord.objects.using(alias()).filter(id=worker_id).delete()


def forget_workers_seen_before(cutoff: datetime) -> int:
    """Delete the rows of workers not seen since `cutoff`."""
    gone = WorkerRecord.objects.using(alias()).filter(last_seen_at__lt=cutoff)
    if not gone.exists():
        return 0  # the usual case: a read, not a write transaction (on SQLite, the write lock)
    deleted, _ = gone.delete()
    return deleted


def workers() -> list[WorkerRecord]:
    return list(WorkerRecord.objects.using(alias()).order_by("started_at", "id"))


def served_since(function_ids: Iterable[str], since: datetime) -> set[str]:
    """Which of `function_ids` a worker seen since `since` serves."""
    wanted = set(function_ids)
    served: set[str] = set()
    rows = WorkerRecord.objects.using(alias()).filter(last_seen_at__gte=since)
    for functions in rows.values_list("functions", flat=True):
        served |= wanted & set(functions)
    return served


def give_back(run_id: str, worker_id: str) -> bool:
    """Return a run `worker_id` claimed but cannot execute to the queue, as it was."""
    from django_inngest.store.claim import requeue  # claim imports matching, which imports us

    with atomic():
        with db_connection().cursor() as cursor:
            cursor.execute(
                f"UPDATE {table_name(QueueItem)} SET lease_owner = NULL, lease_expires_at = NULL "
                f"WHERE run_id = %s AND kind = %s AND lease_owner = %s "
                f"RETURNING run_id, ckey1, ckey2",
                [run_id, RUN, worker_id],
            )
            returned = cursor.fetchall()
        requeue(returned)
    return bool(returned)


# --- backlog ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class DueRuns:
    function_id: str
    count: int
    oldest_due_at: datetime


@dataclass(frozen=True, kw_only=True)
class Backlog:
    pending_events: int
    oldest_pending_at: datetime | None
    due: list[DueRuns]


def backlog(now: datetime, priority_window: int = 0) -> Backlog:
    """Events not yet matched and runs due but not taken, per function (runs held back by a
    full concurrency key are not counted: they wait by design). Read from the partial
    indexes of pending events and ready queue items, so sleeping runs cost nothing."""
    db = alias()
    events = Event.objects.using(db).pending().aggregate(n=Count("id"), oldest=Min("received_at"))
    due = (
        QueueItem.objects.using(db)
        .filter(
            kind=RUN,
            lease_expires_at__isnull=True,
            parked_on__isnull=True,
            score__lte=now + timedelta(seconds=priority_window),
            available_at__lte=now,
        )
        .values("run__function_id")
        .annotate(n=Count("id"), oldest=Min("available_at"))
        .order_by("oldest")
    )
    return Backlog(
        pending_events=events["n"],
        oldest_pending_at=events["oldest"],
        due=[
            DueRuns(
                function_id=row["run__function_id"], count=row["n"], oldest_due_at=row["oldest"]
            )
            for row in due
        ],
    )


def cron_schedules() -> list[CronSchedule]:
    return list(CronSchedule.objects.using(alias()).order_by("function_id", "cron"))


def queued_function_ids(candidates: Collection[str]) -> set[str]:
    """Which of `candidates` have runs due to (re)start."""
    return set(
        QueueItem.objects.using(alias())
        .filter(kind=RUN, lease_owner__isnull=True, run__function_id__in=list(candidates))
        .values_list("run__function_id", flat=True)
        .distinct()
    )
