"""The worker's threads and their database connections: connection hygiene, closing a pool's
connections, threads for sync parallel branches, and group commit (`GroupWriter`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from django.db import DatabaseError, connections

from django_inngest import store

T = TypeVar("T")
W = TypeVar("W")
R = TypeVar("R")

#: At most this many checkpoints (or ends) go in one statement.
GROUP_SIZE = 50


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
