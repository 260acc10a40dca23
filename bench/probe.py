"""Measurement hooks loaded into driver and worker processes, the same for every system.

- Statement counting at the driver layer: psycopg cursors on PostgreSQL, Django's execute
  wrappers or SQLAlchemy's cursor events on SQLite. Counted where the client sends SQL, so
  every system is measured by the same rule ("statements the client sent").
- Peak RSS from `getrusage`, and the count, written to a small JSON file every 0.2 s, so the
  driver can read a worker's figures while it runs (idle load) and after it is killed.
- `mark()`: a handler reports "I am at this line now" by a UDP datagram to the driver, which
  measures pickup latency, timer lateness and step timings without touching the database.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

_lock = threading.Lock()
_count = 0
_installed = False
_socket: socket.socket | None = None


def add(n: int = 1) -> None:
    global _count
    with _lock:
        _count += n


def queries() -> int:
    return _count


def peak_rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def install() -> None:
    """Count statements in this process, whichever client library sends them."""
    global _installed
    if _installed:
        return
    _installed = True
    _patch_psycopg()
    _hook_django()
    _hook_sqlalchemy_sqlite()
    path = os.environ.get("BENCH_PROBE_FILE")
    if path:
        threading.Thread(target=_write_forever, args=(path,), daemon=True).start()


def _patch_psycopg() -> None:
    try:
        import psycopg
    except ImportError:
        return

    def counting(method: Any, per_row: bool) -> Any:
        def wrapper(self: Any, query: Any, params: Any = None, *args: Any, **kwargs: Any) -> Any:
            add(len(params) if per_row and isinstance(params, list | tuple) else 1)
            return method(self, query, params, *args, **kwargs)

        return wrapper

    async_counting = counting  # the same wrapper returns the coroutine untouched
    psycopg.Cursor.execute = counting(psycopg.Cursor.execute, False)  # type: ignore[method-assign]
    psycopg.Cursor.executemany = counting(psycopg.Cursor.executemany, True)  # type: ignore[method-assign]
    psycopg.AsyncCursor.execute = async_counting(psycopg.AsyncCursor.execute, False)  # type: ignore[method-assign]
    psycopg.AsyncCursor.executemany = async_counting(psycopg.AsyncCursor.executemany, True)  # type: ignore[method-assign]


def _hook_django() -> None:
    """On SQLite only: psycopg already counts PostgreSQL statements."""
    try:
        from django.db.backends.signals import connection_created
    except ImportError:
        return

    def wrapper(execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        add(1)
        return execute(sql, params, many, context)

    def created(sender: Any, connection: Any, **kwargs: Any) -> None:
        # Fired again on every reconnect of the same wrapper object: add the hook once.
        if connection.vendor == "sqlite" and wrapper not in connection.execute_wrappers:
            connection.execute_wrappers.append(wrapper)

    connection_created.connect(created, weak=False)


def _hook_sqlalchemy_sqlite() -> None:
    try:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine
    except ImportError:
        return

    def before(
        conn: Any, cursor: Any, statement: Any, params: Any, context: Any, many: Any
    ) -> None:
        if conn.dialect.name == "sqlite":
            add(1)

    event.listen(Engine, "before_cursor_execute", before)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def snapshot() -> dict[str, Any]:
    return {
        "queries": queries(),
        "peak_rss_kb": peak_rss_kb(),
        "cpu_s": cpu_seconds(),
        "pid": os.getpid(),
    }


def _write_forever(path: str) -> None:
    temporary = f"{path}.tmp"
    while True:
        with contextlib.suppress(OSError):
            with open(temporary, "w") as handle:
                json.dump({**snapshot(), "at": time.time()}, handle)
            os.replace(temporary, path)
        time.sleep(0.2)


def read(path: str) -> dict[str, Any]:
    try:
        with open(path) as handle:
            return dict(json.load(handle))
    except (OSError, ValueError):
        return {"queries": 0, "peak_rss_kb": 0}


def mark(tag: str, key: str, extra: float | None = None) -> None:
    """Tell the driver that a handler reached this point now (a UDP datagram; never blocks)."""
    global _socket
    port = os.environ.get("BENCH_UDP_PORT")
    if not port:
        return
    if _socket is None:
        _socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    message = f"{tag} {key} {time.time():.6f} {'' if extra is None else f'{extra:.6f}'}"
    with contextlib.suppress(OSError):
        _socket.sendto(message.encode(), ("127.0.0.1", int(port)))


@contextlib.contextmanager
def counted() -> Iterator[dict[str, int]]:
    """Statements sent inside the block (by this process)."""
    result = {"queries": 0}
    start = queries()
    try:
        yield result
    finally:
        result["queries"] = queries() - start
