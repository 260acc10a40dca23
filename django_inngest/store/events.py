"""Stored events: inserting them (inside the caller's transaction), and reading a stored row
back as the `Event` a handler sees or the `event` an expression sees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from django_inngest.core.events import Event as EventValue
from django_inngest.core.events import PreparedEvent
from django_inngest.models import Event
from django_inngest.store._sql import alias
from django_inngest.store.dialect import dialect


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
        dialect().insert_events(
            rows[start : start + 1000], wake=wake and not start, ignore_existing=ignore_existing
        )


def receipt_position() -> int:
    """The order of receipt now: events stored from now on get a greater `receipt_order`,
    events already stored (committed or not) a smaller or equal one. For what a run starts to
    wait for (`Pause.after_receipt`)."""
    return dialect().receipt_position()


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
