"""The engine's statements on PostgreSQL (see `store.dialect`): row locks taken with SKIP
LOCKED, leases on the database's clock, several writes in one statement (one round trip),
and NOTIFY to wake the workers.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db.models import Model, QuerySet
from django.db.models.fields import AutoFieldMixin

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
    CHANNEL,
    EVENTS,
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

NOTIFIES = True
WRITES_IN_ONE_STATEMENT = True

RECEIPT_SEQUENCE = "django_inngest_event_receipt_order_seq"

#: Notification payloads stay below PostgreSQL's limit (8,000 bytes).
PAYLOAD_BYTES = 7_000


def notify(about: str) -> None:
    with db_connection().cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, about])


def lease_expiry(lease_seconds: float) -> tuple[str, list[Any]]:
    return "clock_timestamp() + %s * interval '1 second'", [lease_seconds]


def database_now() -> tuple[str, list[Any]]:
    return "clock_timestamp()", []


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
    """Lease up to `limit` ready queue items in score order, skipping those another claim has
    locked. With `serves`, runs of other functions stay (timers do not); with `queues`, runs
    of tasks in other queues. Returns `claim.CLAIMED` and the score of each, in no order."""
    queue, run = table_name(QueueItem), table_name(FunctionRun)
    only_served, only_queues = "", ""
    params: list[Any] = [worker_id, lease_seconds, db_datetime(horizon), db_datetime(now)]
    if serves is not None:
        only_served = (
            f" AND (q.kind <> %s OR EXISTS (SELECT 1 FROM {run} r WHERE r.id = q.run_id "
            f"AND r.function_id = ANY(%s)))"
        )
        params += [RUN, sorted(serves)]
    if queues is not None:  # runs of functions have no queue: any worker takes them
        only_queues = " AND (queue IS NULL OR queue = ANY(%s))"
        params.append(sorted(queues))
    params.append(limit)
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"UPDATE {queue} SET lease_owner = %s, "
            f"lease_expires_at = clock_timestamp() + %s * interval '1 second' "
            f"WHERE id IN (SELECT id FROM {queue} q WHERE lease_expires_at IS NULL "
            f"AND parked_on IS NULL AND score <= %s AND available_at <= %s"
            f"{only_served}{only_queues} ORDER BY score, id LIMIT %s FOR UPDATE SKIP LOCKED) "
            f"RETURNING id, kind, run_id, ref, priority, ckey1, climit1, ckey2, climit2, "
            f"lease_losses, score",
            params,
        )
        found: list[tuple[Any, ...]] = cursor.fetchall()
    return found


def start_runs(run_ids: list[str], now: datetime) -> list[dict[str, Any]]:
    """Mark the claimed runs that have not ended RUNNING, in one statement; return them with
    `started_at` as it was before (None: first start) and their events."""
    run, event = table_name(FunctionRun), table_name(Event)
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"UPDATE {run} r SET status = %s, started_at = COALESCE(r.started_at, %s) "
            f"FROM (SELECT id, started_at FROM {run} WHERE id = ANY(%s) "
            f"AND NOT (status = ANY(%s)) FOR UPDATE) AS before WHERE r.id = before.id "
            f"RETURNING r.id, r.function_id, r.event_ids, r.attempt, before.started_at, "
            f"r.original_run_id, r.finish_timeout, (SELECT coalesce(jsonb_agg(jsonb_build_object("
            f"'id', e.id, 'user_id', e.user_id, 'name', e.name, 'data', e.data, 'ts', e.ts)), "
            # = ANY(ARRAY(...)): a join with the JSON array's elements would scan the table.
            f"'[]') FROM {event} e WHERE e.id = ANY(ARRAY("
            f"SELECT jsonb_array_elements_text(r.event_ids))))",
            [RunStatus.RUNNING, db_datetime(now), run_ids, sorted(ENDED_STATUSES)],
        )
        rows = cursor.fetchall()
    runs = []
    for id_, function_id, event_ids, attempt, started_at, original, timeout, events in rows:
        event_ids = json.loads(event_ids)  # Django reads jsonb as text
        found = {row["id"]: row for row in json.loads(events)}
        runs.append(
            {
                "id": id_,
                "function_id": function_id,
                "event_ids": event_ids,
                "attempt": attempt,
                "started_at": started_at,
                "original_run_id": original,
                "finish_timeout": timeout,
                "events": [found[i] for i in event_ids if i in found],
            }
        )
    return runs


# --- steps and ends ---------------------------------------------------------------------------


def insert_final_steps(params: list[Any], rows: int) -> set[tuple[str, str]]:
    """`rows` steps (`STEP_COLUMNS` and the writer each) inserted, or finished, where the
    writer still holds the run and the step is not final yet; returns those written."""
    step, queue = table_name(RunStep), table_name(QueueItem)
    columns = STEP_COLUMNS.format(index=column_name("index"))
    row = (
        "(%s, %s, %s, %s::int, %s, %s, CAST(%s AS jsonb), CAST(%s AS jsonb), %s::int, "
        "CAST(%s AS jsonb), %s::timestamptz, %s::timestamptz, %s::timestamptz, %s)"
    )
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"WITH v ({columns}, owner) AS (VALUES {', '.join([row] * rows)}) "
            f"INSERT INTO {step} ({columns}) SELECT {columns} FROM v "
            f"WHERE EXISTS (SELECT 1 FROM {queue} q WHERE q.run_id = v.run_id "
            f"AND q.kind = %s AND q.lease_owner = v.owner) "
            f"ON CONFLICT (run_id, hashed_id) DO UPDATE SET status = excluded.status, "
            f"output = excluded.output, error = excluded.error, attempts = excluded.attempts, "
            f"ended_at = excluded.ended_at, wake_at = excluded.wake_at "
            f"WHERE NOT ({step}.status = ANY(%s)) RETURNING run_id, hashed_id",
            [*params, RUN, sorted(FINAL_STEP_STATUSES)],
        )
        return {(run_id, hashed_id) for run_id, hashed_id in cursor.fetchall()}


def end_runs(
    worker_id: str, ends: Sequence[RunEnd]
) -> tuple[dict[str, tuple[str | None, ...]], list[RunEnd]]:
    """End the runs `worker_id` still holds as one statement (one round trip, its own
    transaction unless the caller has one), every write conditional on the lease check:
    drop the queue items, record the ends, drop the pauses asked for, store the events
    emitted and wake the workers. Returns the concurrency keys each ended run held, by run id,
    and no ends left to finish."""
    queue, run, event, pause = (
        table_name(QueueItem),
        table_name(FunctionRun),
        table_name(Event),
        table_name(Pause),
    )
    params: list[Any] = []
    for end in ends:
        params += [end.run_id, end.status, json_text(end.output), db_datetime(end.now)]
        params.append(end.drop_pauses)
    values = ", ".join(
        ["(%s, %s, CAST(%s AS jsonb), CAST(%s AS timestamptz), %s::boolean)"] * len(ends)
    )
    params += [[end.run_id for end in ends], RUN, worker_id]
    emitted: list[str] = []
    wake = False
    for end in ends:
        for item in end.emitted:
            is_pending = end.pending(item.name) if end.pending else True
            wake = wake or is_pending
            emitted.append("(%s, %s, %s, %s, CAST(%s AS jsonb), %s::bigint, %s::timestamptz, %s)")
            params += [end.run_id, item.id, item.user_id, item.name, json_text(item.data)]
            params += [item.ts, db_datetime(end.now), is_pending]
    columns = "id, user_id, name, data, ts, received_at, pending"
    params += [CHANNEL, EVENTS, wake]
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"WITH v (run_id, status, output, ended_at, drop_pauses) AS (VALUES {values}), "
            # By the run ids themselves, not a join with v: the planner then uses the index.
            f"dropped AS (DELETE FROM {queue} q WHERE q.run_id = ANY(%s) "
            f"AND q.kind = %s AND q.lease_owner = %s RETURNING q.run_id, q.ckey1, q.ckey2), "
            f"ended AS (UPDATE {run} r SET status = v.status, output = v.output, "
            f"ended_at = v.ended_at FROM v WHERE r.id = v.run_id "
            f"AND r.id IN (SELECT run_id FROM dropped) RETURNING r.id)"
            + (
                f", unpaused AS (DELETE FROM {pause} WHERE run_id IN (SELECT id FROM ended) "
                f"AND run_id IN (SELECT run_id FROM v WHERE drop_pauses))"
                if any(end.drop_pauses for end in ends)
                else ""
            )
            + (
                f", emitted AS (INSERT INTO {event} ({columns}) SELECT {columns} "
                f"FROM (VALUES {', '.join(emitted)}) AS e(run_id, {columns}) "
                f"WHERE e.run_id IN (SELECT id FROM ended))"
                if emitted
                else ""
            )
            + ", woken AS (SELECT pg_notify(%s, %s) WHERE %s AND EXISTS (SELECT 1 FROM ended)) "
            "SELECT d.run_id, d.ckey1, d.ckey2, (SELECT count(*) FROM woken) FROM dropped d",
            params,
        )
        return {row[0]: (row[1], row[2]) for row in cursor.fetchall()}, []


# --- events -----------------------------------------------------------------------------------


def insert_events(rows: Sequence[Event], *, wake: bool, ignore_existing: bool) -> None:
    """The INSERT, and with `wake` the NOTIFY, as one statement, so `send_sync` inside the
    caller's transaction costs one round trip. The order of receipt is the column's default,
    the sequence's next value."""
    params: list[Any] = []
    for row in rows:
        params += [row.id, row.user_id, row.name, json_text(row.data), row.ts]
        params += [db_datetime(row.received_at), row.pending]
    values = ", ".join(["(%s, %s, %s, CAST(%s AS jsonb), %s, %s, %s)"] * len(rows))
    insert = (
        f"INSERT INTO {table_name(Event)} (id, user_id, name, data, ts, received_at, pending) "
        f"VALUES {values}{' ON CONFLICT (id) DO NOTHING' if ignore_existing else ''}"
    )
    with db_connection().cursor() as cursor:
        if not wake:
            cursor.execute(insert, params)
            return
        about = EVENTS
        if len(rows) == 1 and not ignore_existing:
            about = described(rows[0], params[3])
        cursor.execute(
            f"WITH stored AS ({insert}) SELECT pg_notify(%s, %s)", [*params, CHANNEL, about]
        )


def described(row: Event, data: str) -> str:
    """The notification about one event: "events:" and the event, so that an idle worker can
    match it without reading it first (`take_notified_event`); "events" alone when it is too
    big. `data` is the event's data as JSON, already made for the INSERT: a large event is not
    turned into JSON a second time only to find it too big."""
    if len(data) > PAYLOAD_BYTES:
        return EVENTS
    event = {"id": row.id, "user_id": row.user_id, "name": row.name, "data": row.data, "ts": row.ts}
    about = f"{EVENTS}:{json.dumps(event, separators=(',', ':'))}"
    return about if len(about.encode()) <= PAYLOAD_BYTES else EVENTS


def described_event(about: str) -> dict[str, Any] | None:
    """The event a notification describes (see `described`), None when it describes none."""
    prefix = f"{EVENTS}:"
    if not about.startswith(prefix):
        return None
    event: dict[str, Any] = json.loads(about[len(prefix) :])
    return event


def receipt_position() -> int:
    with db_connection().cursor() as cursor:
        cursor.execute("SELECT nextval(%s)", [RECEIPT_SEQUENCE])
        row = cursor.fetchone()
    return int(row[0])


def pending_events(limit: int, due_by: tuple[datetime, datetime] | None) -> list[tuple[Any, ...]]:
    """The oldest pending events, locked (others' locked ones skipped), each with whether runs
    wait for its name, the database's clock, whether runs are due by `due_by` (score,
    availability; false without it) and the newest sync's id."""
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
            f"FROM {pause} p WHERE p.event_name = e.name), clock_timestamp(), {due}, "
            f"{sync_marker_sql()} FROM {event} e WHERE e.pending ORDER BY e.receipt_order LIMIT %s "
            f"FOR UPDATE OF e SKIP LOCKED",
            [*params, limit],
        )
        found: list[tuple[Any, ...]] = cursor.fetchall()
    return found


# --- writes of flow control -------------------------------------------------------------------


def write_together(statements: list[tuple[str, list[Any]]]) -> None:
    """The statements as one (foreign keys are checked at commit)."""
    with db_connection().cursor() as cursor:
        if len(statements) == 1:
            [(sql, params)] = statements
            cursor.execute(sql, params)
            return
        *first, (last, last_params) = statements
        cursor.execute(
            "WITH "
            + ", ".join(f"w{index} AS ({sql})" for index, (sql, _) in enumerate(first))
            + f" {last}",
            [param for _, params in first for param in params] + last_params,
        )


def take_notified_event(
    event: Mapping[str, Any],
    *,
    horizon: datetime,
    now: datetime,
    routed_with: int | None,
    rows: Sequence[Model],
    lease_seconds: float,
) -> tuple[Any, ...] | None:
    """One statement in autocommit: take the pending `event` (unless runs wait for its name,
    runs are already due, or an app synced since it was routed with `routed_with`), and only
    then insert `rows`, the runs it starts with their queue items. Returns the event's stored
    data and order of receipt, None when it was not taken (and nothing was written). Leased
    runs' leases expire on the database's clock (`lease_seconds` from now)."""
    params: list[Any] = [event["id"], event["name"], db_datetime(horizon), db_datetime(now)]
    same_sync = ""
    if routed_with is not None:
        same_sync, params = f" AND {sync_marker_sql()} = %s", [*params, routed_with]
    inserts = [_insert_once(row, "claimed", lease_seconds) for row in rows]
    ctes = "".join(f", w{index} AS ({sql})" for index, (sql, _) in enumerate(inserts))
    with prepared_cursor() as cursor:
        cursor.execute(
            f"WITH claimed AS (UPDATE {table_name(Event)} SET pending = false "
            f"WHERE id = %s AND pending "
            f"AND NOT EXISTS (SELECT 1 FROM {table_name(Pause)} WHERE event_name = %s) "
            f"AND NOT EXISTS (SELECT 1 FROM {table_name(QueueItem)} WHERE lease_expires_at IS NULL "
            f"AND parked_on IS NULL AND score <= %s AND available_at <= %s){same_sync} "
            f"RETURNING data, receipt_order){ctes} SELECT * FROM claimed",
            [*params, *(param for _, values in inserts for param in values)],
        )
        taken: tuple[Any, ...] | None = cursor.fetchone()
    return taken


def _insert_once(row: Model, source: str, lease_seconds: float) -> tuple[str, list[Any]]:
    """INSERT `row` once for each row of `source`; a leased queue item's lease expires
    `lease_seconds` from now on the database's clock."""
    connection = db_connection()
    model = type(row)
    columns, values, params = [], [], []
    for field in model._meta.concrete_fields:
        if field.primary_key and isinstance(field, AutoFieldMixin):
            continue
        columns.append(connection.ops.quote_name(str(field.column)))
        if isinstance(row, QueueItem) and field.attname == "lease_expires_at" and row.lease_owner:
            values.append("clock_timestamp() + %s * interval '1 second'")
            params.append(lease_seconds)
        elif (
            isinstance(row, Pause)
            and field.attname == "after_receipt"
            and row.after_receipt is None
        ):
            values.append("receipt_order")  # of the event `source` took: the run's own event
        else:
            values.append("%s")
            params.append(field.get_db_prep_save(field.pre_save(row, add=True), connection))
    return (
        f"INSERT INTO {table_name(model)} ({', '.join(columns)}) "
        f"SELECT {', '.join(values)} FROM {source}",
        params,
    )


def take_prune_turn(key: str, now: datetime, since: datetime) -> bool:
    table = table_name(FlowState)
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (key, kind, data, updated_at) "
            f"VALUES (%s, 'prune', CAST(%s AS jsonb), %s) "
            f"ON CONFLICT (key) DO UPDATE SET updated_at = excluded.updated_at "
            f"WHERE {table}.updated_at <= %s RETURNING key",
            [key, "{}", db_datetime(now), db_datetime(since)],
        )
        return cursor.fetchone() is not None


def runs_with_event(runs: QuerySet[FunctionRun], event_id: str) -> QuerySet[FunctionRun]:
    return runs.filter(event_ids__contains=[event_id])


def prepared_cursor() -> Any:
    """A cursor of the engine's connection on PostgreSQL whose statements are prepared on the
    server at their first run and reused by later runs on that connection (parameters bound
    on the server). Django's cursors bind on the client, and PostgreSQL then plans every
    statement afresh: about half a millisecond for a large one.

    Django turns psycopg's preparing off (`prepare_threshold` None) so that transaction-mode
    poolers keep working; only worker code uses this cursor, and a worker needs a session of
    its own for LISTEN anyway. The connection's threshold is set so high that nothing else is
    prepared; an explicit `"OPTIONS": {"prepare_threshold": None}` turns this off too."""
    import psycopg

    connection = db_connection()
    connection.ensure_connection()
    raw = connection.connection
    options = connection.settings_dict.get("OPTIONS", {})
    if raw.prepare_threshold is None and "prepare_threshold" not in options:
        raw.prepare_threshold = sys.maxsize  # only what asks to be prepared is
    preparing = raw.prepare_threshold is not None
    cursor: Any = _preparing_cursor_class()(raw) if preparing else psycopg.Cursor(raw)
    if connection.queries_logged:
        return connection.make_debug_cursor(cursor)
    return connection.make_cursor(cursor)


@functools.cache
def _preparing_cursor_class() -> Any:
    """psycopg's server-binding cursor, preparing every statement it runs."""
    import psycopg

    class Preparing(psycopg.Cursor):
        def execute(self, query: Any, params: Any = None, **options: Any) -> Any:
            return super().execute(query, params, **{**options, "prepare": True})

    return Preparing
