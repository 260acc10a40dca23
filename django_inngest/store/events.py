"""Stored events: inserting them (inside the caller's transaction), and reading a stored row
back as the `Event` a handler sees or the `event` an expression sees.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from django_inngest.core.events import Event as EventValue
from django_inngest.core.events import PreparedEvent
from django_inngest.models import Event
from django_inngest.store._sql import (
    CHANNEL,
    EVENTS,
    alias,
    db_connection,
    db_datetime,
    is_postgresql,
    json_text,
    table_name,
)


def insert_events(
    prepared: Sequence[PreparedEvent],
    *,
    received_at: datetime,
    pending: Callable[[str], bool] | None = None,
    ignore_existing: bool = False,
) -> None:
    """Store events through the caller's connection, inside the caller's transaction.

    With `ignore_existing`, an event whose id is already stored is skipped: ids derived from
    a sender's seed make a retried send a no-op, even when two copies arrive at once.
    """
    store_event_rows(event_rows(prepared, received_at, pending), ignore_existing=ignore_existing)


def event_rows(
    prepared: Sequence[PreparedEvent],
    received_at: datetime,
    pending: Callable[[str], bool] | None = None,
) -> list[Event]:
    """Unsaved rows for `prepared`; `pending` says which need matching (all when None)."""
    return [
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


def store_event_rows(rows: Sequence[Event], *, ignore_existing: bool = False) -> None:
    """Insert `rows` in as few statements as the bound-parameter limit allows."""
    wake = any(row.pending for row in rows)
    for start in range(0, len(rows), 1000):
        _insert_events_in_one_statement(
            rows[start : start + 1000], wake=wake and not start, ignore_existing=ignore_existing
        )


def _insert_events_in_one_statement(
    rows: Sequence[Event], *, wake: bool, ignore_existing: bool
) -> None:
    """The INSERT, and on PostgreSQL the NOTIFY, as one statement, so `send_sync` inside the
    caller's transaction costs one round trip."""
    params: list[Any] = []
    for row in rows:
        params += [row.id, row.user_id, row.name, json_text(row.data), row.ts]
        params += [db_datetime(row.received_at), row.pending]
    postgresql = is_postgresql()
    if postgresql:  # receipt_order: the column's default, the sequence's next value
        columns = "id, user_id, name, data, ts, received_at, pending"
        values = ", ".join(["(%s, %s, %s, CAST(%s AS jsonb), %s, %s, %s)"] * len(rows))
    else:
        columns = "id, user_id, name, data, ts, received_at, pending, receipt_order"
        values = ", ".join(
            f"(%s, %s, %s, %s, %s, %s, %s, {_SQLITE_NEXT_RECEIPT} + {offset})"
            for offset in range(len(rows))
        )
    insert = (
        f"INSERT INTO {table_name(Event)} ({columns}) "
        f"VALUES {values}{' ON CONFLICT (id) DO NOTHING' if ignore_existing else ''}"
    )
    with db_connection().cursor() as cursor:
        if wake and postgresql:
            about = EVENTS
            if len(rows) == 1 and not ignore_existing:
                about = _described(rows[0], params[3])
            cursor.execute(
                f"WITH stored AS ({insert}) SELECT pg_notify('{CHANNEL}', %s)", [*params, about]
            )
        else:
            cursor.execute(insert, params)


# SQLite's order of receipt: after the last event stored (the greatest rowid, found by the
# rowid's own index), and never below the database's clock in microseconds, so that it keeps
# increasing even when pruning deletes every event. Writers are serialized, so the last event
# stored is the last one received.
_SQLITE_LAST_RECEIPT = (
    f"COALESCE((SELECT receipt_order FROM {Event._meta.db_table} ORDER BY rowid DESC LIMIT 1), 0)"
)
_SQLITE_CLOCK = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)"
_SQLITE_NEXT_RECEIPT = f"max({_SQLITE_LAST_RECEIPT} + 1, {_SQLITE_CLOCK} + 1)"


def receipt_position() -> int:
    """The order of receipt now: events stored from now on get a greater `receipt_order`,
    events already stored (committed or not) a smaller or equal one. For what a run starts to
    wait for (`Pause.after_receipt`)."""
    sql = (
        f"SELECT nextval('{RECEIPT_SEQUENCE}')"
        if is_postgresql()
        else f"SELECT max({_SQLITE_LAST_RECEIPT}, {_SQLITE_CLOCK})"
    )
    with db_connection().cursor() as cursor:
        cursor.execute(sql)
        row = cursor.fetchone()
    return int(row[0])


RECEIPT_SEQUENCE = "django_inngest_event_receipt_order_seq"


#: Notification payloads stay below PostgreSQL's limit (8,000 bytes).
_PAYLOAD_BYTES = 7_000


def _described(row: Event, data: str) -> str:
    """The notification about one event: "events:" and the event, so that an idle worker can
    match it without reading it first (`pick_up_event`); "events" alone when it is too big.
    `data` is the event's data as JSON, already made for the INSERT: a large event is not
    turned into JSON a second time only to find it too big."""
    if len(data) > _PAYLOAD_BYTES:
        return EVENTS
    event = {"id": row.id, "user_id": row.user_id, "name": row.name, "data": row.data, "ts": row.ts}
    described = f"{EVENTS}:{json.dumps(event, separators=(',', ':'))}"
    return described if len(described.encode()) <= _PAYLOAD_BYTES else EVENTS


def described_event(about: str) -> dict[str, Any] | None:
    """The event a notification describes (see `_described`), None when it describes none."""
    prefix = f"{EVENTS}:"
    if not about.startswith(prefix):
        return None
    event: dict[str, Any] = json.loads(about[len(prefix) :])
    return event


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


def has_pending_events() -> bool:
    return Event.objects.using(alias()).pending().exists()
