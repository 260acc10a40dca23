"""Every write, lock and transaction of the engine.

Transactions are short and never span user code: claim, checkpoint and end each take one.
Every write that advances a run first checks that the writer still holds the run's lease
(`lease_owner = me`), so a worker whose lease expired, or whose run was cancelled, drops its
work. Due times use the engine clock; lease expiry uses the database's clock on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Min, Value
from django.db.models.functions import Coalesce

from django_inngest import conf
from django_inngest.core import ids
from django_inngest.core.engine import (
    FINAL_STEP_STATUSES,
    LeaseLost,
    Memo,
    StepRecord,
    StepStatus,
)
from django_inngest.core.errors import RunEndedError, RunNotFoundError
from django_inngest.core.events import Event as EventValue
from django_inngest.core.events import PreparedEvent, run_ended_events
from django_inngest.models import (
    ENDED_STATUSES,
    Event,
    FunctionRun,
    IdempotencyKey,
    QueueItem,
    RunStatus,
    RunStep,
)

CHANNEL = "django_inngest"
EVENT_ID_TTL = timedelta(hours=24)
RUN = QueueItem.Kind.RUN.value


def alias() -> str:
    return conf.get().DATABASE


def _connection() -> BaseDatabaseWrapper:
    return connections[alias()]


def is_postgresql() -> bool:
    return _connection().vendor == "postgresql"


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def _table(model: Any) -> str:
    return str(_connection().ops.quote_name(model._meta.db_table))


def _column(name: str) -> str:
    return str(_connection().ops.quote_name(name))


def _when(value: datetime | None) -> Any:
    """A datetime as a raw-SQL parameter, stored the way the ORM stores it."""
    return _connection().ops.adapt_datetimefield_value(value)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _lease_expiry_sql(lease_seconds: float) -> tuple[str, list[Any]]:
    """SQL for "now + lease" on the database's clock (SQLite: this machine's clock)."""
    if is_postgresql():
        return "clock_timestamp() + %s * interval '1 second'", [lease_seconds]
    return "%s", [_when(datetime.now(UTC) + timedelta(seconds=lease_seconds))]


def _db_now_sql() -> tuple[str, list[Any]]:
    if is_postgresql():
        return "clock_timestamp()", []
    return "%s", [_when(datetime.now(UTC))]


def notify() -> None:
    """Wake PostgreSQL workers when the current transaction commits."""
    if is_postgresql():
        with _connection().cursor() as cursor:
            cursor.execute(f"NOTIFY {CHANNEL}")


# --- events -----------------------------------------------------------------------------------


def insert_events(
    prepared: Sequence[PreparedEvent],
    *,
    received_at: datetime,
    pending: Callable[[str], bool] | None = None,
) -> None:
    """Store events through the caller's connection, inside the caller's transaction."""
    if not prepared:
        return
    rows = [
        Event(
            id=event.id,
            user_id=event.user_id,
            name=event.name,
            data=event.data,
            ts=event.ts,
            received_at=received_at,
            pending=pending(event.name) if pending else True,
        )
        for event in prepared
    ]
    wake = any(row.pending for row in rows)
    if is_postgresql():
        for start in range(0, len(rows), 1000):  # within the bound-parameter limit
            _insert_events_in_one_statement(rows[start : start + 1000], wake=wake and not start)
        return
    Event.objects.using(alias()).bulk_create(rows)
    if wake:
        notify()


def _insert_events_in_one_statement(rows: Sequence[Event], *, wake: bool) -> None:
    """The INSERT and the NOTIFY as one statement: `send_sync` inside the caller's transaction
    costs one round trip (plus the caller's BEGIN and COMMIT)."""
    params: list[Any] = []
    for row in rows:
        params += [row.id, row.user_id, row.name, _json(row.data), row.ts]
        params += [_when(row.received_at), row.pending]
    values = ", ".join(["(%s, %s, %s, CAST(%s AS jsonb), %s, %s, %s)"] * len(rows))
    insert = (
        f"INSERT INTO {_table(Event)} (id, user_id, name, data, ts, received_at, pending) "
        f"VALUES {values}"
    )
    with _connection().cursor() as cursor:
        if wake:
            cursor.execute(f"WITH stored AS ({insert}) SELECT pg_notify('{CHANNEL}', '')", params)
        else:
            cursor.execute(insert, params)


def event_value(row: Mapping[str, Any]) -> EventValue:
    """The `Event` a handler sees for a stored row."""
    return EventValue(
        name=row["name"], data=row["data"], id=row["user_id"] or row["id"], ts=row["ts"]
    )


def event_map(row: Mapping[str, Any]) -> dict[str, Any]:
    """The object expressions see as `event`."""
    return {
        "name": row["name"],
        "data": row["data"],
        "id": row["user_id"] or row["id"],
        "ts": row["ts"],
        "user": {},
    }


@dataclass(frozen=True, kw_only=True)
class NewRun:
    function_id: str
    available_at: datetime


@dataclass(frozen=True, kw_only=True)
class FanOut:
    events: int
    runs: int


def fan_out(
    route: Callable[[Mapping[str, Any]], Iterable[str]], *, now: datetime, limit: int = 200
) -> FanOut:
    """Match pending events against functions and create their runs, in one transaction.

    `route` gives the ids of the functions an event starts. A sender's event id starts each
    function at most once in 24 hours (SPEC §3.9).
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
        runs: list[FunctionRun] = []
        items: list[QueueItem] = []
        for row in rows:
            for function_id in route(event_map(row)):
                if row["user_id"] and not _first_in_24h(
                    ids.stable_hash(function_id, row["user_id"]), now
                ):
                    continue
                run = FunctionRun(
                    id=ids.ulid(),
                    function_id=function_id,
                    status=RunStatus.QUEUED,
                    event_id=row["id"],
                    event_ids=[row["id"]],
                    created_at=now,
                )
                runs.append(run)
                items.append(QueueItem(run=run, available_at=max(now, from_ms(row["ts"]))))
        event_ids = [row["id"] for row in rows]
        if is_postgresql():
            _record_fan_out_in_one_statement(runs, items, event_ids)
        else:
            FunctionRun.objects.using(db).bulk_create(runs)
            QueueItem.objects.using(db).bulk_create(items)
            Event.objects.using(db).filter(id__in=event_ids).update(pending=False)
            if runs:
                notify()
    return FanOut(events=len(rows), runs=len(runs))


def _record_fan_out_in_one_statement(
    runs: Sequence[FunctionRun], items: Sequence[QueueItem], event_ids: Sequence[str]
) -> None:
    """`fan_out`'s writes on PostgreSQL as one statement: the new runs, their queue items, the
    events marked matched and the wakeup (foreign keys are checked at commit)."""
    run, queue, event = _table(FunctionRun), _table(QueueItem), _table(Event)
    params: list[Any] = []
    parts = []
    if runs:
        params += [
            value
            for new in runs
            for value in (
                new.id,
                new.function_id,
                new.status,
                new.event_id,
                _json(new.event_ids),
                new.attempt,
                _when(new.created_at),
            )
        ]
        params += [
            value for item in items for value in (item.kind, item.run_id, _when(item.available_at))
        ]
        run_rows = ", ".join(["(%s, %s, %s, %s, CAST(%s AS jsonb), %s, %s)"] * len(runs))
        item_rows = ", ".join(["(%s, %s, %s)"] * len(items))
        parts += [
            f"new_runs AS (INSERT INTO {run} (id, function_id, status, event_id, event_ids, "
            f"attempt, created_at) VALUES {run_rows})",
            f"new_items AS (INSERT INTO {queue} (kind, run_id, available_at) VALUES {item_rows})",
        ]
    params.append(list(event_ids))
    parts.append(f"matched AS (UPDATE {event} SET pending = false WHERE id = ANY(%s))")
    wake = f"pg_notify('{CHANNEL}', '')" if runs else "NULL"
    with _connection().cursor() as cursor:
        cursor.execute(f"WITH {', '.join(parts)} SELECT {wake}", params)


def _first_in_24h(key: str, now: datetime) -> bool:
    """Record `key` for 24 h; False when it is already recorded and not expired."""
    table = _table(IdempotencyKey)
    with _connection().cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (key, expires_at) VALUES (%s, %s) "
            f"ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
            f"WHERE {table}.expires_at <= %s RETURNING key",
            [key, _when(now + EVENT_ID_TTL), _when(now)],
        )
        return cursor.fetchone() is not None


# --- claiming ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ClaimedRun:
    run_id: str
    function_id: str
    attempt: int
    events: list[EventValue]
    event_rows: list[dict[str, Any]]
    memos: dict[str, Memo]


def claim(worker_id: str, *, limit: int, now: datetime, lease_seconds: float) -> list[ClaimedRun]:
    """Lease up to `limit` due runs to `worker_id`, oldest due first."""
    if is_postgresql():
        return _claim_in_one_statement(worker_id, limit=limit, now=now, lease_seconds=lease_seconds)
    db = alias()
    if (
        not QueueItem.objects.using(db)
        .filter(lease_expires_at__isnull=True, available_at__lte=now)
        .exists()
    ):
        return []  # a read, so an idle worker does not take SQLite's write lock

    queue = _table(QueueItem)
    expiry_sql, expiry_params = _lease_expiry_sql(lease_seconds)
    lock = " FOR UPDATE SKIP LOCKED" if is_postgresql() else ""
    with transaction.atomic(using=db):
        with _connection().cursor() as cursor:
            cursor.execute(
                f"UPDATE {queue} SET lease_owner = %s, lease_expires_at = {expiry_sql} "
                f"WHERE id IN (SELECT id FROM {queue} WHERE lease_expires_at IS NULL "
                f"AND available_at <= %s ORDER BY available_at, id LIMIT %s{lock}) "
                f"RETURNING run_id, available_at, id",
                [worker_id, *expiry_params, _when(now), limit],
            )
            # RETURNING does not keep the subquery's order; both backends return available_at
            # in a form that sorts by time (a datetime, or SQLite's fixed-width text).
            run_ids = [row[0] for row in sorted(cursor.fetchall(), key=lambda r: (r[1], r[2]))]
        if not run_ids:
            return []
        runs = list(
            FunctionRun.objects.using(db)
            .filter(id__in=run_ids)
            .values(
                "id",
                "function_id",
                "event_ids",
                "attempt",
                "started_at",
                "status",
                "original_run_id",
            )
        )
        ended = [run["id"] for run in runs if run["status"] in ENDED_STATUSES]
        if ended:  # a queue item outlived its run: nothing to do but drop it
            QueueItem.objects.using(db).filter(run_id__in=ended).delete()
        runs = [run for run in runs if run["status"] not in ENDED_STATUSES]
        FunctionRun.objects.using(db).filter(id__in=[run["id"] for run in runs]).update(
            status=RunStatus.RUNNING, started_at=Coalesce(F("started_at"), Value(now))
        )
    event_ids = {event_id for run in runs for event_id in run["event_ids"]}
    events = {
        row["id"]: row
        for row in Event.objects.using(db)
        .filter(id__in=event_ids)
        .values("id", "user_id", "name", "data", "ts")
    }
    # A run that never started has no steps, unless it reruns another run from a step.
    memos = load_memos([run["id"] for run in runs if run["started_at"] or run["original_run_id"]])
    claimed = []
    for run in sorted(runs, key=lambda r: run_ids.index(r["id"])):
        rows = [events[event_id] for event_id in run["event_ids"] if event_id in events]
        claimed.append(
            ClaimedRun(
                run_id=run["id"],
                function_id=run["function_id"],
                attempt=run["attempt"],
                events=[event_value(row) for row in rows],
                event_rows=[dict(row) for row in rows],
                memos=memos.get(run["id"], {}),
            )
        )
    return claimed


def _claim_in_one_statement(
    worker_id: str, *, limit: int, now: datetime, lease_seconds: float
) -> list[ClaimedRun]:
    """`claim` on PostgreSQL: lease the queue items, mark their runs RUNNING and read the runs
    with their events in one statement (the CTEs share one snapshot, so `started_at` is the
    value from before this claim)."""
    queue, run, event = _table(QueueItem), _table(FunctionRun), _table(Event)
    ended = ", ".join(f"'{status}'" for status in sorted(ENDED_STATUSES))
    with _connection().cursor() as cursor:
        cursor.execute(
            f"WITH claimed AS (UPDATE {queue} SET lease_owner = %s, "
            f"lease_expires_at = clock_timestamp() + %s * interval '1 second' "
            f"WHERE id IN (SELECT id FROM {queue} WHERE lease_expires_at IS NULL "
            f"AND available_at <= %s ORDER BY available_at, id LIMIT %s FOR UPDATE SKIP LOCKED) "
            f"RETURNING run_id, available_at, id), "
            f"runs AS (SELECT r.id, r.function_id, r.event_ids, r.attempt, r.started_at, "
            f"r.status, r.original_run_id, c.available_at, c.id AS item_id "
            f"FROM {run} r JOIN claimed c ON r.id = c.run_id), "
            f"started AS (UPDATE {run} r SET status = %s, "
            f"started_at = COALESCE(r.started_at, %s) FROM runs "
            f"WHERE r.id = runs.id AND runs.status NOT IN ({ended}) RETURNING r.id) "
            f"SELECT runs.id, runs.function_id, runs.attempt, runs.started_at, runs.status, "
            f"runs.original_run_id, (SELECT jsonb_agg(jsonb_build_object('id', e.id, "
            f"'user_id', e.user_id, 'name', e.name, 'data', e.data, 'ts', e.ts)) "
            f"FROM {event} e WHERE e.id IN "
            f"(SELECT jsonb_array_elements_text(runs.event_ids))), runs.event_ids, "
            f"(SELECT count(*) FROM started) "
            f"FROM runs ORDER BY runs.available_at, runs.item_id",
            [worker_id, lease_seconds, _when(now), limit, RunStatus.RUNNING, _when(now)],
        )
        rows = cursor.fetchall()
    if not rows:
        return []
    stale = [row[0] for row in rows if row[4] in ENDED_STATUSES]
    if stale:  # a queue item outlived its run: nothing to do but drop it
        QueueItem.objects.using(alias()).filter(run_id__in=stale).delete()
    rows = [row for row in rows if row[4] not in ENDED_STATUSES]
    # A run that never started has no steps, unless it reruns another run from a step.
    memos = load_memos([row[0] for row in rows if row[3] or row[5]])
    claimed = []
    for run_id, function_id, attempt, _, _, _, found, event_ids, _ in rows:
        events = {item["id"]: item for item in _loaded(found) or []}
        ordered = [events[event_id] for event_id in _loaded(event_ids) if event_id in events]
        claimed.append(
            ClaimedRun(
                run_id=run_id,
                function_id=function_id,
                attempt=attempt,
                events=[event_value(item) for item in ordered],
                event_rows=ordered,
                memos=memos.get(run_id, {}),
            )
        )
    return claimed


def _loaded(value: Any) -> Any:
    """A jsonb value from a raw cursor: Django's psycopg backend leaves it as text."""
    return json.loads(value) if isinstance(value, str) else value


def load_memos(run_ids: Sequence[str]) -> dict[str, dict[str, Memo]]:
    if not run_ids:
        return {}
    memos: dict[str, dict[str, Memo]] = {}
    for row in (
        RunStep.objects.using(alias())
        .filter(run_id__in=run_ids)
        .values(
            "run_id",
            "hashed_id",
            "op",
            "status",
            "output",
            "error",
            "attempts",
            "wake_at",
            "started_at",
        )
    ):
        memo = Memo(
            hashed_id=row["hashed_id"],
            op=row["op"],
            status=row["status"],
            output=row["output"],
            error=row["error"],
            attempts=row["attempts"],
            wake_at=row["wake_at"],
            started_at=row["started_at"],
        )
        memos.setdefault(row["run_id"], {})[memo.hashed_id] = memo
    return memos


# --- checkpoints ------------------------------------------------------------------------------


class _LostRace(Exception):
    def __init__(self, memo: Memo) -> None:
        self.memo = memo


def save_step(
    run_id: str,
    worker_id: str,
    record: StepRecord,
    events: Sequence[PreparedEvent] = (),
    *,
    pending: Callable[[str], bool] | None = None,
) -> Memo:
    """Write a step's final result while `worker_id` holds the run; first writer wins."""
    try:
        if events:
            with transaction.atomic(using=alias()):
                insert_events(events, received_at=datetime.now(UTC), pending=pending)
                _insert_final_step(run_id, worker_id, record)
        else:
            _insert_final_step(run_id, worker_id, record)
    except _LostRace as lost:
        return lost.memo
    return record.as_memo()


def _insert_final_step(run_id: str, worker_id: str, record: StepRecord) -> None:
    step, queue = _table(RunStep), _table(QueueItem)
    json_sql = "CAST(%s AS jsonb)" if is_postgresql() else "%s"
    final = "', '".join(sorted(FINAL_STEP_STATUSES))
    index = _column("index")
    with _connection().cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {step} (run_id, hashed_id, step_id, {index}, op, status, output, "
            f"error, attempts, history, started_at, ended_at, wake_at) "
            f"SELECT %s, %s, %s, %s, %s, %s, {json_sql}, {json_sql}, %s, {json_sql}, %s, %s, %s "
            f"WHERE EXISTS (SELECT 1 FROM {queue} WHERE run_id = %s AND kind = %s "
            f"AND lease_owner = %s) "
            f"ON CONFLICT (run_id, hashed_id) DO UPDATE SET status = excluded.status, "
            f"output = excluded.output, error = excluded.error, attempts = excluded.attempts, "
            f"ended_at = excluded.ended_at, wake_at = excluded.wake_at "
            f"WHERE {step}.status NOT IN ('{final}') RETURNING id",
            [
                run_id,
                record.hashed_id,
                record.step_id,
                record.index,
                record.op,
                record.status,
                _json(record.output),
                _json(record.error),
                record.attempts,
                "[]",
                _when(record.started_at),
                _when(record.ended_at),
                _when(record.wake_at),
                run_id,
                RUN,
                worker_id,
            ],
        )
        if cursor.fetchone() is not None:
            return
    # Nothing written: either the run is no longer ours, or another writer stored this step.
    if (
        not QueueItem.objects.using(alias())
        .filter(run_id=run_id, kind=RUN, lease_owner=worker_id)
        .exists()
    ):
        raise LeaseLost(f"run {run_id} is no longer held by {worker_id}")
    existing = load_memos([run_id]).get(run_id, {}).get(record.hashed_id)
    if existing is None or not existing.final:
        raise LeaseLost(f"step {record.step_id!r} of run {run_id} could not be written")
    raise _LostRace(existing)


def _write_records(run_id: str, records: Sequence[StepRecord]) -> None:
    """Sleeping steps and failed attempts, inside the caller's transaction."""
    db = alias()
    for record in records:
        existing = (
            RunStep.objects.using(db)
            .select_for_update()
            .filter(run_id=run_id, hashed_id=record.hashed_id)
            .first()
        )
        if existing is not None and existing.status in FINAL_STEP_STATUSES:
            continue
        step = existing or RunStep(
            run_id=run_id,
            hashed_id=record.hashed_id,
            step_id=record.step_id,
            index=record.index,
            op=record.op,
            started_at=record.started_at,
        )
        step.status = record.status
        step.attempts = record.attempts
        step.wake_at = record.wake_at
        if record.status == StepStatus.ERRORED and record.error is not None:
            step.error = record.error
            step.history = [
                *step.history,
                {
                    "attempt": record.attempts - 1,
                    "started_at": _iso(record.started_at),
                    "ended_at": _iso(record.ended_at),
                    "error": record.error,
                },
            ]
        step.save(using=db)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- run transitions --------------------------------------------------------------------------


def _release_item(run_id: str, worker_id: str, available_at: datetime) -> bool:
    return bool(
        QueueItem.objects.using(alias())
        .filter(run_id=run_id, kind=RUN, lease_owner=worker_id)
        .update(available_at=available_at, lease_owner=None, lease_expires_at=None)
    )


def retry_run(
    run_id: str,
    worker_id: str,
    *,
    attempt: int,
    available_at: datetime,
    records: Sequence[StepRecord],
) -> bool:
    with transaction.atomic(using=alias()):
        if not _release_item(run_id, worker_id, available_at):
            return False
        FunctionRun.objects.using(alias()).filter(id=run_id).update(
            status=RunStatus.QUEUED, attempt=attempt
        )
        _write_records(run_id, records)
    return True


def suspend_run(
    run_id: str, worker_id: str, *, wake_at: datetime, records: Sequence[StepRecord]
) -> bool:
    with transaction.atomic(using=alias()):
        if not _release_item(run_id, worker_id, wake_at):
            return False
        FunctionRun.objects.using(alias()).filter(id=run_id).update(
            status=RunStatus.SLEEPING, attempt=0
        )
        _write_records(run_id, records)
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
) -> bool:
    """End a run held by `worker_id`: drop its queue item, record the end, emit events."""
    if is_postgresql():
        return _end_run_in_one_statement(
            run_id,
            worker_id,
            status=status,
            output=output,
            now=now,
            emitted=emitted,
            pending=pending,
        )
    db = alias()
    with transaction.atomic(using=db):
        deleted, _ = (
            QueueItem.objects.using(db)
            .filter(run_id=run_id, kind=RUN, lease_owner=worker_id)
            .delete()
        )
        if not deleted:
            return False
        FunctionRun.objects.using(db).filter(id=run_id).update(
            status=status, output=output, ended_at=now
        )
        insert_events(emitted, received_at=now, pending=pending)
    return True


def _end_run_in_one_statement(
    run_id: str,
    worker_id: str,
    *,
    status: str,
    output: Any,
    now: datetime,
    emitted: Sequence[PreparedEvent],
    pending: Callable[[str], bool] | None,
) -> bool:
    """`end_run` on PostgreSQL: the same writes as one statement (one round trip, its own
    transaction unless the caller has one), each step conditional on the lease check."""
    queue, run, event = _table(QueueItem), _table(FunctionRun), _table(Event)
    params: list[Any] = [run_id, RUN, worker_id, status, _json(output), _when(now)]
    emit_sql = ""
    wake = False
    if emitted:
        rows = []
        for item in emitted:
            is_pending = pending(item.name) if pending else True
            wake = wake or is_pending
            rows.append("(%s, %s, %s, CAST(%s AS jsonb), %s, %s, %s)")
            params += [item.id, item.user_id, item.name, _json(item.data), item.ts]
            params += [_when(now), is_pending]
        emit_sql = (
            f", emitted AS (INSERT INTO {event} (id, user_id, name, data, ts, received_at, "
            f"pending) SELECT * FROM (VALUES {', '.join(rows)}) AS v "
            f"WHERE EXISTS (SELECT 1 FROM ended))"
        )
    notify_sql = (
        f", woken AS (SELECT pg_notify('{CHANNEL}', '') WHERE EXISTS (SELECT 1 FROM ended))"
        if wake
        else ", woken AS (SELECT 1)"
    )
    with _connection().cursor() as cursor:
        cursor.execute(
            f"WITH dropped AS (DELETE FROM {queue} WHERE run_id = %s AND kind = %s "
            f"AND lease_owner = %s RETURNING run_id), "
            f"ended AS (UPDATE {run} SET status = %s, output = CAST(%s AS jsonb), ended_at = %s "
            f"WHERE id IN (SELECT run_id FROM dropped) RETURNING id){emit_sql}{notify_sql} "
            f"SELECT (SELECT count(*) FROM ended), (SELECT count(*) FROM woken)",
            params,
        )
        row = cursor.fetchone()
    return bool(row and row[0])


# --- cancellation and reruns ------------------------------------------------------------------


def cancel_run(run_id: str, *, now: datetime, pending: Callable[[str], bool] | None = None) -> None:
    """Cancel a run that has not ended. Its queue item goes at once, so a worker running it
    loses its lease: the step in flight finishes, its result is dropped, nothing else runs."""
    db = alias()
    with transaction.atomic(using=db):
        run = (
            FunctionRun.objects.using(db)
            .select_for_update()
            .filter(id=run_id)
            .values("id", "function_id", "status", "event_ids")
            .first()
        )
        if run is None:
            raise RunNotFoundError(run_id)
        if run["status"] in ENDED_STATUSES:
            raise RunEndedError(run_id, run["status"])
        QueueItem.objects.using(db).filter(run_id=run_id).delete()
        FunctionRun.objects.using(db).filter(id=run_id).update(
            status=RunStatus.CANCELLED, ended_at=now
        )
        rows = list(
            Event.objects.using(db)
            .filter(id__in=run["event_ids"])
            .values("id", "user_id", "name", "data", "ts")
        )
        rows.sort(key=lambda row: run["event_ids"].index(row["id"]))
        emitted = run_ended_events(
            function_id=run["function_id"],
            run_id=run_id,
            trigger_events=[event_map(row) for row in rows],
            status=RunStatus.CANCELLED,
            output={"code": "cancelled", "message": "the run was cancelled", "name": "Cancelled"},
            now_ms=int(now.timestamp() * 1000),
        )
        insert_events(emitted, received_at=now, pending=pending)


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


def rerun(run_id: str, *, now: datetime, from_step: str | None = None) -> str:
    """Start a new run with the same events, linked to the original. With `from_step` (a step
    id or hashed id), results of the steps completed before that step are kept."""
    db = alias()
    with transaction.atomic(using=db):
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
        QueueItem.objects.using(db).create(run=new, available_at=now)
        notify()
    return new.id


# --- leases -----------------------------------------------------------------------------------


def heartbeat(worker_id: str, lease_seconds: float) -> int:
    """Extend every lease `worker_id` holds, in one statement."""
    expiry_sql, expiry_params = _lease_expiry_sql(lease_seconds)
    with _connection().cursor() as cursor:
        cursor.execute(
            f"UPDATE {_table(QueueItem)} SET lease_expires_at = {expiry_sql} "
            f"WHERE lease_owner = %s",
            [*expiry_params, worker_id],
        )
        return int(cursor.rowcount)


def return_expired_leases() -> int:
    """Put back in the queue the runs whose worker stopped renewing their lease."""
    now_sql, now_params = _db_now_sql()
    with _connection().cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {_table(QueueItem)} WHERE lease_expires_at < {now_sql} LIMIT 1",
            now_params,
        )
        if cursor.fetchone() is None:
            return 0  # the usual case: a read, not a write transaction, every sweep
    with transaction.atomic(using=alias()):
        with _connection().cursor() as cursor:
            cursor.execute(
                f"UPDATE {_table(QueueItem)} SET lease_owner = NULL, lease_expires_at = NULL "
                f"WHERE lease_expires_at < {now_sql} RETURNING run_id",
                now_params,
            )
            run_ids = [row[0] for row in cursor.fetchall()]
        _requeue(run_ids)
    return len(run_ids)


def release(worker_id: str) -> int:
    """Give back every run `worker_id` holds (a worker shutting down)."""
    with transaction.atomic(using=alias()):
        with _connection().cursor() as cursor:
            cursor.execute(
                f"UPDATE {_table(QueueItem)} SET lease_owner = NULL, lease_expires_at = NULL "
                f"WHERE lease_owner = %s RETURNING run_id",
                [worker_id],
            )
            run_ids = [row[0] for row in cursor.fetchall()]
        _requeue(run_ids)
    return len(run_ids)


def _requeue(run_ids: list[str]) -> None:
    if run_ids:
        FunctionRun.objects.using(alias()).filter(id__in=run_ids, status=RunStatus.RUNNING).update(
            status=RunStatus.QUEUED
        )


def next_due_at() -> datetime | None:
    """When the earliest unleased queue item becomes due."""
    value: datetime | None = (
        QueueItem.objects.using(alias())
        .filter(lease_expires_at__isnull=True)
        .aggregate(due=Min("available_at"))["due"]
    )
    return value


def has_pending_events() -> bool:
    return Event.objects.using(alias()).pending().exists()
