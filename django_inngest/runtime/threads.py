"""The worker's threads and their database connections: connection hygiene, closing a pool's
connections, threads for sync parallel branches, group commit (`GroupWriter`), and logging a
database outage once (`Outage`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, Protocol, TypeVar

from django.db import DatabaseError, connections

from django_inngest import store

T = TypeVar("T")
W = TypeVar("W")
R = TypeVar("R")

#: At most this many checkpoints (or ends) go in one statement.
GROUP_SIZE = 50


class IoCall(Protocol):
    """Runs a blocking call on a worker's I/O pool, from its loop."""

    def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Awaitable[T]: ...


def ensure_usable_connections() -> None:
    """Close this thread's connections that failed, so the next query reconnects."""
    for connection in connections.all(initialized_only=True):
        if connection.connection is not None and (
            connection.errors_occurred and not connection.is_usable()
        ):
            connection.close()


def hygienic(fn: Callable[[], T]) -> T:
    """Call `fn` on this thread's connections, dropping those a failure left unusable."""
    ensure_usable_connections()
    try:
        return fn()
    except DatabaseError:
        ensure_usable_connections()
        raise


def on_own_connection(fn: Callable[..., T], *args: Any) -> T:
    """Call `fn` on a thread of its own whose connections are closed after, so that the
    thread that called it (perhaps short-lived) is left no connection to leak."""

    def call() -> T:
        try:
            return fn(*args)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="inngest-start") as pool:
        return pool.submit(call).result()


def close_connections_of(executor: ThreadPoolExecutor, threads: int) -> None:
    """Close the database connections of every thread of `executor`: one task per thread,
    held at a barrier so that no thread takes two."""
    barrier = threading.Barrier(threads)

    def close() -> None:
        connections.close_all()
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)

    for future in [executor.submit(close) for _ in range(threads)]:
        future.result()


def run_branches_in_threads(branches: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run the branches of a sync parallel group at once, one thread each."""
    results: list[Any] = [None] * len(branches)

    def target(index: int, branch: Callable[[], Any]) -> None:
        try:
            results[index] = branch()
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=target, args=(i, b), name=f"inngest-branch-{i}", daemon=True)
        for i, b in enumerate(branches)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


class GroupWriter(Generic[W, R]):
    """Group commit: writes submitted by concurrent runs go to the database together. While
    `groups` groups are being written, new writes wait and then go as the next group, so an
    idle worker writes at once and a busy one makes one statement for many runs.

    `write` takes a list of items and returns one result per item (a result may be an
    exception instance, raised to that item's submitter). When a group fails, its items are
    written one by one, so one bad item does not fail the others."""

    def __init__(
        self,
        write: Callable[[list[W]], Sequence[R | BaseException]],
        executor: ThreadPoolExecutor,
        *,
        groups: int = 1,
    ) -> None:
        self._write = write
        self._executor = executor
        self._lock = threading.Lock()
        self._waiting: list[tuple[W, Future[R]]] = []
        self._free = groups

    def submit(self, item: W) -> Future[R]:
        """Queue `item`; the future resolves once its group is committed. Thread-safe."""
        future: Future[R] = Future()
        with self._lock:
            self._waiting.append((item, future))
            start = self._free > 0
            if start:
                self._free -= 1
        if start:
            self._executor.submit(self._write_next)
        return future

    def _write_next(self) -> None:
        try:
            # On SQLite, wait for the turn to write before picking the group: what arrives
            # meanwhile goes in it.
            with store.write_turn():
                with self._lock:
                    group = self._waiting[:GROUP_SIZE]
                    del self._waiting[:GROUP_SIZE]
                results = self._results(group)
            for (_, future), result in zip(group, results, strict=True):
                if not future.set_running_or_notify_cancel():
                    continue  # its submitter stopped waiting (a task cancelled at shutdown)
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            with self._lock:
                more = bool(self._waiting)
                if not more:
                    self._free += 1
        if more:  # at the back of the pool's queue: claims are not starved
            self._executor.submit(self._write_next)

    def _results(self, group: list[tuple[W, Future[R]]]) -> Sequence[R | BaseException]:
        try:
            return hygienic(lambda: self._write([item for item, _ in group]))
        except Exception as error:
            if len(group) > 1:
                return [result for one in group for result in self._results([one])]
            return [error]


class Outage:
    """Logs a database outage once, however many threads and runs meet it: its first failure
    at WARNING with the error, the failures after it at DEBUG, and its end (the next success)
    at INFO with how long it lasted, how many calls failed and how many runs were dropped."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failures = 0
        self._dropped = 0

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(
        self, what: str, error: BaseException | None = None, *, dropped: bool = False
    ) -> None:
        """`what` failed (with `error`, when there is one to show); `dropped`: a run was given
        back because of it."""
        with self._lock:
            first = self._since is None
            if first:
                self._since = time.monotonic()
            self._failures += 1
            self._dropped += dropped
        if first:
            self._logger.warning(
                "database unreachable or failing (%s); runs in flight are dropped and go on "
                "from their last checkpoint; reconnecting",
                what,
                exc_info=error,
            )
        else:
            self._logger.debug("database still failing (%s): %s", what, error)

    def recovered(self) -> None:
        """A database call succeeded: the outage, if there was one, is over."""
        if self._since is None:  # the usual case, without taking the lock
            return
        with self._lock:
            since, failures, dropped = self._since, self._failures, self._dropped
            self._since, self._failures, self._dropped = None, 0, 0
        if since is not None:
            self._logger.info(
                "database reachable again after %.1fs: %s calls failed, %s runs dropped and "
                "queued again",
                time.monotonic() - since,
                failures,
                dropped,
            )
