"""Connection helpers shared by the store's modules: the database alias and vendor, the
engine's transactions (queued on a file lock on SQLite), quoting, raw-SQL parameters, the
database clock, and the NOTIFY that wakes PostgreSQL workers.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

try:
    import fcntl
except ImportError:  # Windows: SQLite's busy handler alone
    fcntl = None  # type: ignore[assignment]

from django_inngest import conf
from django_inngest.models import QueueItem

CHANNEL = "django_inngest"
EVENT_ID_TTL = timedelta(hours=24)
RUN = QueueItem.Kind.RUN.value


def alias() -> str:
    return conf.get().DATABASE


def db_connection() -> BaseDatabaseWrapper:
    return connections[alias()]


def is_postgresql() -> bool:
    return db_connection().vendor == "postgresql"


class _SqliteWriteQueue:
    """Engine writers on one SQLite database queue on a file lock next to it, in the kernel.

    SQLite's busy handler retries a locked database after sleeping 1, 2, 5, 10... ms, so two
    workers contending for its single write lock spend most of their time asleep while the lock
    is free; a blocking `flock` hands it over as soon as the holder commits. Writers that do not
    take this lock (an app's own writes) still meet SQLite's busy handler, as before.
    """

    def __init__(self) -> None:
        self._threads = threading.RLock()
        self._depth = threading.local()
        self._files: dict[tuple[int, str], int] = {}

    @contextlib.contextmanager
    def held(self, database: str) -> Iterator[None]:
        with self._threads:
            depth = getattr(self._depth, "n", 0)
            fd = self._file(database)
            if not depth:
                fcntl.flock(fd, fcntl.LOCK_EX)
            self._depth.n = depth + 1
            try:
                yield
            finally:
                self._depth.n = depth
                if not depth:
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def _file(self, database: str) -> int:
        key = (os.getpid(), database)  # a forked child opens its own: locks follow the file
        if key not in self._files:
            self._files[key] = os.open(f"{database}-inngest-lock", os.O_RDWR | os.O_CREAT, 0o644)
        return self._files[key]


_sqlite_writers = _SqliteWriteQueue()


def _queued_database() -> str | None:
    """The SQLite file whose engine writers queue on a lock, None where they do not."""
    connection = db_connection()
    if (
        connection.vendor != "sqlite"
        or fcntl is None
        or connection.is_in_memory_db()  # type: ignore[attr-defined]
        # Inside a caller's transaction SQLite's lock may already be held: queueing on the
        # file lock behind a worker that waits for that lock would deadlock.
        or connection.in_atomic_block
    ):
        return None
    return str(connection.settings_dict["NAME"])


def write_turn() -> contextlib.AbstractContextManager[Any]:
    """This thread's turn to write to an SQLite file (nothing elsewhere). A group writer takes
    its turn before it picks its group, so what arrives while it waits goes in the group."""
    database = _queued_database()
    return contextlib.nullcontext() if database is None else _sqlite_writers.held(database)


def atomic() -> contextlib.AbstractContextManager[Any]:
    """A transaction of the engine; on an SQLite file, taken in turn with the other writers."""
    database = _queued_database()
    if database is None:
        return transaction.atomic(using=alias())
    return _queued_atomic(database)


@contextlib.contextmanager
def _queued_atomic(database: str) -> Iterator[None]:
    with _sqlite_writers.held(database), transaction.atomic(using=alias()):
        yield


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


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def table_name(model: Any) -> str:
    return str(db_connection().ops.quote_name(model._meta.db_table))


def column_name(name: str) -> str:
    return str(db_connection().ops.quote_name(name))


def db_datetime(value: datetime | None) -> Any:
    """A datetime as a raw-SQL parameter, stored the way the ORM stores it."""
    return db_connection().ops.adapt_datetimefield_value(value)


def json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def lease_expiry_sql(lease_seconds: float) -> tuple[str, list[Any]]:
    """SQL for "now + lease" on the database's clock (SQLite: this machine's clock)."""
    if is_postgresql():
        return "clock_timestamp() + %s * interval '1 second'", [lease_seconds]
    return "%s", [db_datetime(datetime.now(UTC) + timedelta(seconds=lease_seconds))]


def db_now_sql() -> tuple[str, list[Any]]:
    if is_postgresql():
        return "clock_timestamp()", []
    return "%s", [db_datetime(datetime.now(UTC))]


#: What a notification on CHANNEL says: runs may be due, or events wait to be fanned out.
QUEUE, EVENTS = "queue", "events"


def notify(about: str = QUEUE) -> None:
    """Wake PostgreSQL workers when the current transaction commits."""
    if is_postgresql():
        with db_connection().cursor() as cursor:
            cursor.execute(f"NOTIFY {CHANNEL}, '{about}'")
