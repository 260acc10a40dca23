"""The engine's statements on SQLite (see `store.dialect`): one writer at a time holds the
database's lock, so there are no row locks to take or skip; leases expire on this machine's
clock, and workers poll instead of being notified.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL

from django_inngest.core.engine import FINAL_STEP_STATUSES
from django_inngest.models import (
    ENDED_STATUSES,
    Event,
    FlowState,
    FunctionRun,
    Pause,
    QueueItem,
    RunStatus,
    RunStep,
)
from django_inngest.store._sql import (
    RUN,
    STEP_COLUMNS,
    column_name,
    db_connection,
    db_datetime,
    json_text,
    sync_marker_sql,
    table_name,
)

if TYPE_CHECKING:
    from django_inngest.store.runs import RunEnd

NOTIFIES = False
WRITES_IN_ONE_STATEMENT = False


def notify(about: str) -> None:
    """Nothing to do: SQLite workers poll."""


def lease_expiry(lease_seconds: float) -> tuple[str, list[Any]]:
    return "%s", [db_datetime(datetime.now(UTC) + timedelta(seconds=lease_seconds))]


def database_now() -> tuple[str, list[Any]]:
    return "%s", [db_datetime(datetime.now(UTC))]


# --- claims -----------------------------------------------------------------------------------


def lease_due_items(
    worker_id: str,
    *,
    limit: int,
    now: datetime,
    horizon: datetime,
    lease_seconds: float,
    serves: Collection[str] | None,
    queues: frozenset[str] | None,
) -> list[tuple[Any, ...]]:
    """Lease up to `limit` ready queue items in score order (the caller's transaction holds
    the write lock). With `serves`, runs of other functions stay (timers do not); with
    `queues`, runs of tasks in other queues. Returns `claim.CLAIMED` and the score of each,
    in no order."""
    queue, run = table_name(QueueItem), table_name(FunctionRun)
    only_served, only_queues = "", ""
    expires_at = db_datetime(datetime.now(UTC) + timedelta(seconds=lease_seconds))
    params: list[Any] = [worker_id, expires_at, db_datetime(horizon), db_datetime(now)]
    if serves is not None:
        only_served = (
            f" AND (q.kind <> %s OR EXISTS (SELECT 1 FROM {run} r WHERE r.id = q.run_id "
            f"AND r.function_id IN ({', '.join(['%s'] * len(serves)) or 'NULL'})))"
        )
        params += [RUN, *sorted(serves)]
    if queues is not None:  # runs of functions have no queue: any worker takes them
        only_queues = (
            f" AND (queue IS NULL OR queue IN ({', '.join(['%s'] * len(queues)) or 'NULL'}))"
        )
        params += sorted(queues)
    params.append(limit)
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"UPDATE {queue} SET lease_owner = %s, lease_expires_at = %s "
            f"WHERE id IN (SELECT id FROM {queue} q WHERE lease_expires_at IS NULL "
            f"AND parked_on IS NULL AND score <= %s AND available_at <= %s"
            f"{only_served}{only_queues} ORDER BY score, id LIMIT %s) "
            f"RETURNING id, kind, run_id, ref, priority, ckey1, climit1, ckey2, climit2, "
            f"lease_losses, score",
            params,
        )
        found: list[tuple[Any, ...]] = cursor.fetchall()
    return found


def start_runs(run_ids: list[str], now: datetime) -> list[dict[str, Any]]:
    """Mark the claimed runs that have not ended RUNNING; return them with `started_at` as it
    was before (None: first start), without their events (read after the commit)."""
    run = table_name(FunctionRun)
    ended = sorted(ENDED_STATUSES)
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"SELECT id, function_id, event_ids, attempt, started_at, original_run_id, "
            f"finish_timeout FROM {run} WHERE id IN ({', '.join(['%s'] * len(run_ids))}) "
            f"AND status NOT IN ({', '.join(['%s'] * len(ended))})",
            [*run_ids, *ended],
        )
        rows = cursor.fetchall()
        if rows:
            cursor.execute(
                f"UPDATE {run} SET status = %s, started_at = COALESCE(started_at, %s) "
                f"WHERE id IN ({', '.join(['%s'] * len(rows))})",
                [RunStatus.RUNNING, db_datetime(now), *(row[0] for row in rows)],
            )
    # As the ORM would read them: JSON text, microseconds.
    return [
        {
            "id": id_,
            "function_id": function_id,
            "event_ids": json.loads(event_ids),
            "attempt": attempt,
            "started_at": started_at,
            "original_run_id": original,
            "finish_timeout": None if timeout is None else timedelta(microseconds=timeout),
        }
        for id_, function_id, event_ids, attempt, started_at, original, timeout in rows
    ]


# --- steps and ends ---------------------------------------------------------------------------


def insert_final_steps(params: list[Any], rows: int) -> set[tuple[str, str]]:
    """`rows` steps (`STEP_COLUMNS` and the writer each) inserted, or finished, where the
    writer still holds the run and the step is not final yet; returns those written."""
    step, queue = table_name(RunStep), table_name(QueueItem)
    columns = STEP_COLUMNS.format(index=column_name("index"))
    row = f"({', '.join(['%s'] * 14)})"
    final = sorted(FINAL_STEP_STATUSES)
    with db_connection().cursor() as cursor:
        # The CTE names the VALUES' columns; the WHERE tells the upsert's ON CONFLICT from a
        # join's ON.
        cursor.execute(
            f"WITH v ({columns}, owner) AS (VALUES {', '.join([row] * rows)}) "
            f"INSERT INTO {step} ({columns}) SELECT {columns} FROM v "
            f"WHERE EXISTS (SELECT 1 FROM {queue} q WHERE q.run_id = v.run_id "
            f"AND q.kind = %s AND q.lease_owner = v.owner) "
            f"ON CONFLICT (run_id, hashed_id) DO UPDATE SET status = excluded.status, "
            f"output = excluded.output, error = excluded.error, attempts = excluded.attempts, "
            f"ended_at = excluded.ended_at, wake_at = excluded.wake_at "
            f"WHERE {step}.status NOT IN ({', '.join(['%s'] * len(final))}) "
            f"RETURNING run_id, hashed_id",
            [*params, RUN, *final],
        )
        return {(run_id, hashed_id) for run_id, hashed_id in cursor.fetchall()}


def end_runs(
    worker_id: str, ends: Sequence[RunEnd]
) -> tuple[dict[str, tuple[str | None, ...]], list[RunEnd]]:
    """Drop the queue items of the runs `worker_id` still holds and record their ends, inside
    the caller's transaction: one statement per table, however many runs. Returns the
    concurrency keys each ended run held, by run id, and the ends left to finish (pauses to
    drop, events to store)."""
    queue, run = table_name(QueueItem), table_name(FunctionRun)
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {queue} WHERE kind = %s AND lease_owner = %s "
            f"AND run_id IN ({', '.join(['%s'] * len(ends))}) RETURNING run_id, ckey1, ckey2",
            [RUN, worker_id, *(end.run_id for end in ends)],
        )
        held: dict[str, tuple[str | None, ...]] = {
            row[0]: (row[1], row[2]) for row in cursor.fetchall()
        }
        ended = [end for end in ends if end.run_id in held]
        if not ended:
            return held, []
        params: list[Any] = []
        for end in ended:
            params += [end.run_id, end.status, json_text(end.output), db_datetime(end.now)]
        cursor.execute(
            f"WITH v (id, status, output, ended_at) AS (VALUES "
            f"{', '.join(['(%s, %s, %s, %s)'] * len(ended))}) UPDATE {run} SET "
            f"status = v.status, output = v.output, ended_at = v.ended_at "
            f"FROM v WHERE {run}.id = v.id",
            params,
        )
    return held, ended


# --- events -----------------------------------------------------------------------------------

# The order of receipt: after the last event stored (the greatest rowid, found by the rowid's
# own index), and never below the database's clock in microseconds, so that it keeps
# increasing even when pruning deletes every event. Writers are serialized, so the last event
# stored is the last one received.
LAST_RECEIPT = (
    f"COALESCE((SELECT receipt_order FROM {Event._meta.db_table} ORDER BY rowid DESC LIMIT 1), 0)"
)
CLOCK = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)"
NEXT_RECEIPT = f"max({LAST_RECEIPT} + 1, {CLOCK} + 1)"


def insert_events(rows: Sequence[Event], *, wake: bool, ignore_existing: bool) -> None:
    """The INSERT, with each event's order of receipt (`NEXT_RECEIPT`); `wake` is for
    PostgreSQL."""
    params: list[Any] = []
    for offset, row in enumerate(rows):
        params += [row.id, row.user_id, row.name, json_text(row.data), row.ts]
        params += [db_datetime(row.received_at), row.pending, offset]
    values = ", ".join([f"(%s, %s, %s, %s, %s, %s, %s, {NEXT_RECEIPT} + %s)"] * len(rows))
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table_name(Event)} "
            f"(id, user_id, name, data, ts, received_at, pending, receipt_order) "
            f"VALUES {values}{' ON CONFLICT (id) DO NOTHING' if ignore_existing else ''}",
            params,
        )


def receipt_position() -> int:
    with db_connection().cursor() as cursor:
        cursor.execute(f"SELECT max({LAST_RECEIPT}, {CLOCK})")
        row = cursor.fetchone()
    return int(row[0])


def pending_events(limit: int, due_by: tuple[datetime, datetime] | None) -> list[tuple[Any, ...]]:
    """The oldest pending events (the caller's transaction holds the write lock), each with
    whether runs wait for its name, no clock (NULL: this machine's is used), whether runs are
    due by `due_by` (score, availability; false without it) and the newest sync's id."""
    event, pause, queue = table_name(Event), table_name(Pause), table_name(QueueItem)
    due, params = "false", list[Any]()
    if due_by is not None:
        due = (
            f"EXISTS (SELECT 1 FROM {queue} WHERE lease_expires_at IS NULL "
            f"AND parked_on IS NULL AND score <= %s AND available_at <= %s)"
        )
        params += [db_datetime(due_by[0]), db_datetime(due_by[1])]
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"SELECT e.id, e.user_id, e.name, e.data, e.ts, e.receipt_order, EXISTS (SELECT 1 "
            f"FROM {pause} p WHERE p.event_name = e.name), NULL, {due}, {sync_marker_sql()} "
            f"FROM {event} e WHERE e.pending ORDER BY e.receipt_order LIMIT %s",
            [*params, limit],
        )
        found: list[tuple[Any, ...]] = cursor.fetchall()
    return found


# --- writes of flow control -------------------------------------------------------------------


def write_together(statements: list[tuple[str, list[Any]]]) -> None:
    """The statements one after the other (SQLite has no data-modifying CTEs)."""
    with db_connection().cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)


def take_prune_turn(key: str, now: datetime, since: datetime) -> bool:
    table = table_name(FlowState)
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (key, kind, data, updated_at) VALUES (%s, 'prune', %s, %s) "
            f"ON CONFLICT (key) DO UPDATE SET updated_at = excluded.updated_at "
            f"WHERE {table}.updated_at <= %s RETURNING key",
            [key, "{}", db_datetime(now), db_datetime(since)],
        )
        return cursor.fetchone() is not None


def runs_with_event(runs: QuerySet[FunctionRun], event_id: str) -> QuerySet[FunctionRun]:
    # SQLite has no JSON containment lookup; json_each does the same.
    return runs.filter(
        RawSQL(
            "EXISTS (SELECT 1 FROM json_each(event_ids) WHERE json_each.value = %s)",
            [event_id],
            output_field=BooleanField(),
        )
    )
