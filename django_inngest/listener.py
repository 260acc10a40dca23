"""A PostgreSQL worker's LISTEN thread: a connection of its own, every notification handed to
the worker on this thread (which may pick up events right here, see `Worker._notified`).

Once connected, it sends itself a notification through the worker's ordinary connection; if
that never arrives (LISTEN through a pooler in transaction mode), it says so once and marks
itself `broken`, and the worker polls instead.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable

from django.db import connections

from django_inngest import store

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

    def __init__(self, db_alias: str, on_notify: Callable[[str | None], None]) -> None:
        super().__init__(name="inngest-listen", daemon=True)
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
                except psycopg.Error:
                    logger.warning("LISTEN connection lost; reconnecting", exc_info=True)
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
