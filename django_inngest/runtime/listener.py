"""How an idle worker hears of new work. PostgreSQL: a LISTEN thread with a connection of its
own, every notification handed to the worker on this thread (which may pick up events right
here, see `Worker._notified`). SQLite: the operating system's file notifications (inotify on
Linux) on the database's folder, then `PRAGMA data_version`, which each commit changes.

Once connected, the LISTEN thread sends itself a notification through the worker's ordinary
connection; if that never arrives (LISTEN through a pooler in transaction mode), it says so
once and marks itself `broken`, and the worker polls instead.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import os
import secrets
import select
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from django.db import connections

from django_inngest import store
from django_inngest.runtime.threads import Outage

logger = logging.getLogger("django_inngest.worker")

#: The connection settings the LISTEN connection copies from the Django database.
_KEYS = (
    "dbname",
    "user",
    "password",
    "host",
    "port",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "application_name",
    "options",
    "service",
    "passfile",
    "connect_timeout",
)
#: Seconds to wait for the probe notification, per attempt (two attempts).
PROBE_SECONDS = 5.0
PROBE_PREFIX = "probe:"


class PostgresListener(threading.Thread):
    """LISTEN on a connection of its own and call `on_notify(payload)` for each notification
    (`None` after (re)connecting: some may have been missed)."""

    def __init__(
        self,
        db_alias: str,
        on_notify: Callable[[str | None], None],
        outage: Outage | None = None,
    ) -> None:
        super().__init__(name="inngest-listen", daemon=True)
        self._outage = outage
        params = connections[db_alias].get_connection_params()
        self._params = {k: params[k] for k in _KEYS if params.get(k) not in (None, "")}
        self._on_notify = on_notify
        self._stopped = threading.Event()
        self.db_alias = db_alias
        self.broken = False
        """Set when LISTEN never heard this worker's own notification: poll instead."""
        self._probe = f"{PROBE_PREFIX}{secrets.token_hex(4)}"
        self._probe_sent_at: float | None = None
        self._probe_attempts = 0
        self._probe_done = False

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        import psycopg

        try:
            while not self._stopped.is_set():
                try:
                    with psycopg.connect(**self._params, autocommit=True) as connection:
                        connection.execute(f"LISTEN {store.CHANNEL}")
                        self._on_notify(None)  # anything sent while we were not listening
                        while not self._stopped.is_set():
                            self._probe_if_due()
                            for notification in connection.notifies(timeout=0.5, stop_after=1):
                                payload = notification.payload
                                if payload.startswith(PROBE_PREFIX):
                                    self._heard(payload)
                                else:
                                    self._on_notify(payload)
                except psycopg.Error as error:
                    if self._outage is None:
                        logger.warning("LISTEN connection lost; reconnecting", exc_info=True)
                    else:  # logged once per outage, not once a second while it lasts
                        self._outage.failed("the LISTEN connection", error)
                    self._stopped.wait(1.0)
        finally:
            connections.close_all()  # those `on_notify` opened on this thread

    def _probe_if_due(self) -> None:
        """Send the probe through the ordinary connection (again after PROBE_SECONDS); after
        two unanswered, give up on LISTEN."""
        if self._probe_done:
            return
        now = time.monotonic()
        if self._probe_sent_at is not None and now - self._probe_sent_at < PROBE_SECONDS:
            return
        if self._probe_attempts >= 2:
            self._probe_done, self.broken = True, True
            logger.warning(
                "LISTEN on database %r received none of this worker's notifications (a pooler "
                "such as PgBouncer in transaction mode?); polling instead. Set "
                "INNGEST['LISTEN_DATABASE'] to an alias with a direct connection.",
                self.db_alias,
            )
            self._on_notify(None)  # the worker looks now, and polls from here on
            return
        self._probe_attempts += 1
        self._probe_sent_at = now
        try:
            store.notify(self._probe)  # autocommit: sent at once
        except Exception:
            logger.warning("could not send the LISTEN probe; will try again", exc_info=True)

    def _heard(self, payload: str) -> None:
        if payload == self._probe and not self._probe_done:
            self._probe_done = True
            logger.info("LISTEN works database=%s", self.db_alias)


#: inotify(7): a watched directory's file was written, created or moved in.
_IN_MODIFY, _IN_CREATE, _IN_MOVED_TO, _IN_NONBLOCK = 0x2, 0x100, 0x80, 0o4000
#: After a write, how long a commit may take to become visible (SQLite writes the WAL, syncs
#: it, and only then publishes the commit).
COMMIT_VISIBLE_WITHIN = 0.1


class SqliteWatcher(threading.Thread):
    """Call `on_change()` soon after another connection commits to the SQLite database `path`.

    The kernel reports writes in the database's folder (inotify). A write comes before its
    commit is visible, so while `wanted()` (the worker has a free slot) the thread then reads
    `PRAGMA data_version` on a connection of its own, which changes at each commit of any
    other connection, and calls `on_change()` at each change until it has been still for
    `COMMIT_VISIBLE_WITHIN`. Many writes read as one wake-up; an idle database costs nothing.
    The thread never opens SQLite's files itself: closing a file descriptor of the database
    or its `-shm` file would drop every POSIX lock SQLite holds on it in this process. Linux
    only (`available()`); elsewhere the worker polls the files.
    """

    def __init__(
        self, path: Path, on_change: Callable[[], None], wanted: Callable[[], bool]
    ) -> None:
        super().__init__(name="inngest-sqlite-watch", daemon=True)
        self._path = path
        self._on_change = on_change
        self._wanted = wanted
        self._stopped = threading.Event()

    @staticmethod
    def available() -> bool:
        return sys.platform.startswith("linux") and hasattr(_libc(), "inotify_init1")

    def stop(self) -> None:
        self._stopped.set()

    def run(self) -> None:
        libc = _libc()
        fd = libc.inotify_init1(_IN_NONBLOCK)
        if fd < 0:
            logger.warning("cannot watch %s for changes; polling it", self._path)
            return
        try:
            mask = _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO
            if libc.inotify_add_watch(fd, os.fsencode(self._path.parent), mask) < 0:
                logger.warning("cannot watch %s for changes; polling it", self._path)
                return
            with contextlib.closing(sqlite3.connect(self._path, isolation_level=None)) as db:
                version = _data_version(db)
                while not self._stopped.is_set():
                    if not select.select([fd], [], [], 0.5)[0]:
                        continue
                    while True:  # everything written meanwhile is one wake-up
                        try:
                            os.read(fd, 65536)
                        except BlockingIOError:
                            break
                    if self._wanted():
                        version = self._follow_commits(db, version)
        except sqlite3.Error:
            logger.warning("cannot watch %s for changes; polling it", self._path, exc_info=True)
        finally:
            os.close(fd)

    def _follow_commits(self, db: sqlite3.Connection, version: int) -> int:
        deadline = time.monotonic() + COMMIT_VISIBLE_WITHIN
        while time.monotonic() < deadline and not self._stopped.is_set():
            current = _data_version(db)
            if current != version:
                version = current
                self._on_change()
                deadline = time.monotonic() + COMMIT_VISIBLE_WITHIN
            else:
                time.sleep(0.001)
        return version


def _data_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA data_version").fetchone()[0])


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)
