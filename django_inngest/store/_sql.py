"""Connection helpers shared by the store's modules: the database alias and vendor, the
engine's transactions (queued on a file lock on SQLite), quoting, raw-SQL parameters, and the
SQL fragments both dialects share.
"""

from __future__ import annotations

import contextlib
import json
import os
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
from django_inngest.models import AppSync, QueueItem

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


def sync_marker_sql() -> str:
    """SQL for the newest sync's id (0 before any sync)."""
    return f"(SELECT COALESCE(MAX(id), 0) FROM {table_name(AppSync)})"


#: The columns of a step a checkpoint writes (`index` quoted by the caller).
STEP_COLUMNS = (
    "run_id, hashed_id, step_id, {index}, op, status, output, error, attempts, history, "
    "started_at, ended_at, wake_at"
)

#: What a notification on CHANNEL says: runs may be due, or events wait to be fanned out.
QUEUE, EVENTS = "queue", "events"
