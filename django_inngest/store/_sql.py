"""Connection helpers shared by the store's modules: the database alias and vendor, quoting,
raw-SQL parameters, the database clock, and the NOTIFY that wakes PostgreSQL workers.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from django_inngest import conf
from django_inngest.models import QueueItem

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


#: What a notification on CHANNEL says: runs may be due, or events wait to be fanned out.
QUEUE, EVENTS = "queue", "events"


def notify(about: str = QUEUE) -> None:
    """Wake PostgreSQL workers when the current transaction commits."""
    if is_postgresql():
        with _connection().cursor() as cursor:
            cursor.execute(f"NOTIFY {CHANNEL}, '{about}'")
