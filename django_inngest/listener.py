"""A PostgreSQL worker's LISTEN thread: a connection of its own, every notification handed to
the worker on this thread (which may pick up events right here, see `Worker._notified`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import connections

from django_inngest import store
from django_inngest.threads import Outage

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
                            for notification in connection.notifies(timeout=0.5, stop_after=1):
                                self._on_notify(notification.payload)
                except psycopg.Error as error:
                    if self._outage is None:
                        logger.warning("LISTEN connection lost; reconnecting", exc_info=True)
                    else:  # logged once per outage, not once a second while it lasts
                        self._outage.failed("the LISTEN connection", error)
                    self._stopped.wait(1.0)
        finally:
            connections.close_all()  # those `on_notify` opened on this thread
