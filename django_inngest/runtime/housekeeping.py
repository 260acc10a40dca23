"""The worker's background jobs: heartbeats, the sweep of expired leases and of gone workers,
the release of parked runs, pruning, cron ticks and, on SQLite, watching the database files for
commits by other processes. Each runs on the worker's loop and queries through its I/O pool.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import DatabaseError, connections

from django_inngest import conf, store
from django_inngest.core import clock
from django_inngest.core.engine import Failed
from django_inngest.registry import registry
from django_inngest.runtime.fleet import Membership
from django_inngest.runtime.listener import SqliteWatcher
from django_inngest.runtime.outcomes import Outcomes, sweep_leases
from django_inngest.runtime.scheduler import CronScheduler
from django_inngest.runtime.threads import IoCall, Outage

logger = logging.getLogger("django_inngest.worker")

#: How often a worker releases parked runs whose key has free slots (a safety net).
PARKED_CHECK_SECONDS = 30.0
#: Seconds before the first retry of loading cron schedules, and the longest wait after.
CRON_RETRY_SECONDS = (1.0, 30.0)


class Housekeeping:
    """The background jobs of one worker; `start()` creates their tasks on the running loop."""

    def __init__(
        self,
        *,
        worker_id: str,
        fleet: Membership,
        outage: Outage,
        outcomes: Outcomes,
        io_call: IoCall,
        poke: Callable[[], None],
        in_flight: Callable[[], int],
        has_free_slot: Callable[[], bool],
        poll_interval: float,
    ) -> None:
        self.worker_id = worker_id
        self.fleet = fleet
        self.poll_interval = poll_interval
        self._outage = outage
        self._outcomes = outcomes
        self._io_call = io_call
        self._poke = poke
        self._in_flight = in_flight
        self._has_free_slot = has_free_slot

    def start(self, *, watch_sqlite: bool) -> list[asyncio.Task[None]]:
        """Start every job (and the watch of SQLite's files, with `watch_sqlite`)."""
        settings = conf.get()
        jobs = [
            self._every(settings.HEARTBEAT_SECONDS, self._heartbeat),
            self._every(settings.SWEEP_SECONDS, self._sweep),
            self._every(PARKED_CHECK_SECONDS, self._release_parked),
            self._schedule_cron(),
        ]
        if settings.PRUNE_INTERVAL_SECONDS:  # one worker per interval prunes (retention.py)
            jobs.append(self._every(self._prune_check(), self._prune))
        if watch_sqlite:
            jobs.append(self._watch_sqlite_files())
        return [asyncio.create_task(job) for job in jobs]

    async def _every(self, seconds: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
                self._outage.recovered()
            except DatabaseError as error:
                self._outage.failed(getattr(job, "__name__", "a background job"), error)

    async def _heartbeat(self) -> None:
        in_flight = self._in_flight()
        if in_flight:
            await self._io_call(store.heartbeat, self.worker_id, conf.get().LEASE_SECONDS)
        await self._io_call(self.fleet.seen, clock.now(), in_flight=in_flight)

    async def _sweep(self) -> None:
        returned = await self._io_call(sweep_leases, self.worker_id)
        if returned:
            logger.warning("returned %s runs whose worker stopped renewing its lease", returned)
            self._poke()
        try:
            await self._io_call(self.fleet.sweep, clock.now(), self._fail_orphan)
        except DatabaseError:
            raise
        except Exception:  # a bug here must not stop the sweep of expired leases
            logger.exception("sweeping the fleet failed; will try again")

    def _fail_orphan(self, claimed: store.ClaimedRun, error: dict[str, Any]) -> None:
        self._outcomes.record(claimed, Failed(error=error), registry.get(claimed.function_id))

    @staticmethod
    def _prune_check() -> float:
        """How often a worker asks whether it is its turn to prune (a cheap upsert)."""
        return min(60.0, conf.get().PRUNE_INTERVAL_SECONDS or 60.0)

    async def _prune(self) -> None:
        interval = conf.get().PRUNE_INTERVAL_SECONDS
        assert interval
        retention = store.retention_of_settings()
        call = functools.partial(store.prune_when_due, interval=interval, retention=retention)
        pruned = await self._io_call(call, now=clock.now())
        if pruned is not None:
            logger.info("pruned worker_id=%s: %s", self.worker_id, pruned.summary())

    async def _release_parked(self) -> None:
        if await self._io_call(store.release_parked_with_room):
            self._poke()

    async def _schedule_cron(self) -> None:
        """Fire due cron ticks (see scheduler.py): sleep until the next one, but look at the
        clock at least every second, or every poll interval if shorter, so clock jumps count."""
        scheduler = CronScheduler(registry.all(), worker_id=self.worker_id)
        failures = 0
        while True:
            try:
                await self._io_call(scheduler.start, clock.now())
                break
            except DatabaseError as error:
                # The traceback once; then one line per try, less and less often.
                delay = min(CRON_RETRY_SECONDS[1], CRON_RETRY_SECONDS[0] * 2**failures)
                logger.warning(
                    "cannot load cron schedules (%s); will try again in %.0fs",
                    error,
                    delay,
                    exc_info=failures == 0,
                )
                failures += 1
                await asyncio.sleep(delay)
        logger.info(
            "cron scheduler started worker_id=%s schedules=%s", self.worker_id, scheduler.watched
        )
        longest_sleep = min(1.0, self.poll_interval)
        while scheduler.active:
            due = scheduler.next_due()
            assert due is not None
            wait = (due - clock.now()).total_seconds()
            if wait > 0:
                await asyncio.sleep(min(wait, longest_sleep))
                continue
            try:
                if await self._io_call(scheduler.tick, clock.now()):
                    self._poke()
            except Exception:
                logger.exception("cron scheduler error; will try again")
                await asyncio.sleep(1.0)

    async def _watch_sqlite_files(self) -> None:
        """Any commit by another process changes the database or its WAL file. On Linux the
        kernel tells us at once (`SqliteWatcher`); the poll is the fallback elsewhere and for
        anything missed."""
        name = str(connections[store.alias()].settings_dict["NAME"])
        if name == ":memory:" or name.startswith("file:"):
            return
        path = Path(name).resolve()
        watcher = (
            SqliteWatcher(path, self._poke, self._has_free_slot)
            if SqliteWatcher.available()
            else None
        )
        if watcher is not None:
            watcher.start()
        try:
            await self._poll_sqlite_files([path, Path(f"{path}-wal")])
        finally:
            if watcher is not None:
                watcher.stop()
                await asyncio.to_thread(watcher.join, 5.0)

    async def _poll_sqlite_files(self, paths: list[Path]) -> None:

        def signature() -> tuple[tuple[int, int] | None, ...]:
            found: list[tuple[int, int] | None] = []
            for path in paths:
                try:
                    stat = path.stat()
                    found.append((stat.st_mtime_ns, stat.st_size))
                except FileNotFoundError:
                    found.append(None)
            return tuple(found)

        last = signature()
        while True:
            await asyncio.sleep(self.poll_interval)
            current = signature()
            if current != last:
                last = current
                self._poke()
