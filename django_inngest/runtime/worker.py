"""The worker: claim due runs, start them, wake up.

The event loop claims and schedules; every database call from the loop goes through a small
I/O pool (Django refuses ORM calls on a thread that runs an event loop). On PostgreSQL, an idle
worker picks up notified events on its LISTEN thread (`listener.py`) and hands the runs to the
loop. How a run is executed is in `executor.py` (async handlers on the loop, sync ones in a
thread pool); what it does against the database, shared with `testing.drain()`, in
`claimed.py` and `outcomes.py`; leases, heartbeats, cron and the other background jobs in
`housekeeping.py`.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import DatabaseError

from django_inngest import conf, store
from django_inngest.core import clock
from django_inngest.registry import registry
from django_inngest.runtime import fleet
from django_inngest.runtime.executor import RunExecutor
from django_inngest.runtime.housekeeping import Housekeeping
from django_inngest.runtime.listener import PostgresListener
from django_inngest.runtime.outcomes import TALLIES, Outcomes
from django_inngest.runtime.startup import new_worker_id, refuse_unfit_start
from django_inngest.runtime.threads import (
    Outage,
    close_connections_of,
    hygienic,
    on_own_connection,
)

logger = logging.getLogger("django_inngest.worker")
T = TypeVar("T")

IO_THREADS = 4
#: PostgreSQL workers wake on NOTIFY; this slow poll only covers a lost notification.
POSTGRES_FALLBACK_POLL = 10.0
#: A PostgreSQL worker whose LISTEN connection hears nothing (behind a transaction-mode pooler)
#: polls this often instead.
LISTEN_BROKEN_POLL = 2.0
#: Events fanned out per transaction.
FAN_OUT_LIMIT = 200


class Worker:
    """Runs functions until stopped. `run()` blocks; `stop()` may be called from any thread."""

    def __init__(
        self,
        *,
        concurrency: int | None = None,
        worker_id: str | None = None,
        poll_interval: float | None = None,
        burst: bool = False,
        shutdown_grace: float = 30.0,
        handle_signals: bool = False,
        queues: Sequence[str] | None = None,
    ) -> None:
        settings = conf.get()
        self.queues = frozenset(queues) if queues else None
        """The queues of Django tasks this worker runs (None: all); functions run anyway."""
        self.concurrency = settings.WORKER_CONCURRENCY if concurrency is None else concurrency
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int):
            raise TypeError(f"concurrency must be an int, not {self.concurrency!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {self.concurrency!r}")
        self.worker_id = worker_id or new_worker_id()
        self.burst = burst
        self.shutdown_grace = shutdown_grace
        self.handle_signals = handle_signals
        self._postgresql = store.is_postgresql()
        default_poll = 0.1 if not self._postgresql else POSTGRES_FALLBACK_POLL
        self.poll_interval = poll_interval or settings.POLL_INTERVAL or default_poll
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._events_due = True
        """Whether pending events may exist. On PostgreSQL it is set by notifications about
        events, by a reconnected listener and by the fallback poll, so that a busy worker does
        not look for events after every run; on SQLite it stays set."""
        self._events_notified = False
        """Set by a notification about events (or a reconnected listener)."""
        self._taking = threading.Lock()
        """Held while runs are picked up or claimed, on the loop's I/O thread or the listener's,
        so that the slots counted free are not being filled by the other meanwhile."""
        self._slots = threading.Lock()
        self._promised = 0
        """Runs claimed that the loop has not started yet (guarded by `_slots`)."""
        self._held: collections.deque[store.ClaimedRun] = collections.deque()
        """Claimed runs that lost their lease before, waiting to run alone (see `_adopt`)."""
        self._alone: str | None = None
        """The run running alone, if one does."""
        self._signals = 0
        self._outage = Outage(logger)
        self._outcomes = Outcomes(self.worker_id, self._outage)
        self._listener: PostgresListener | None = None
        self.unfinished = 0
        """Runs still executing when the worker gave up waiting for them at shutdown."""
        self.tally: Counter[str] = Counter()
        """Invocations by what they ended with (`TALLIES`' names)."""
        self._started_at = time.monotonic()
        self.fleet = fleet.Membership(
            self.worker_id, concurrency=self.concurrency, functions=registry.all()
        )

    # -- public ----------------------------------------------------------------------------

    def run(self) -> None:
        refuse_unfit_start()
        self._started_at = time.monotonic()
        logger.info(
            "worker starting worker_id=%s concurrency=%s functions=%s version=%s queues=%s",
            self.worker_id,
            self.concurrency,
            len(registry.all()),
            self.fleet.version[:12],
            ",".join(sorted(self.queues)) if self.queues else "all",
        )
        on_own_connection(self.fleet.join)
        try:
            asyncio.run(self._main())
        finally:
            try:
                on_own_connection(hygienic, self.fleet.leave)
            except DatabaseError:
                logger.warning("could not delete this worker's row", exc_info=True)
        logger.info("worker stopped worker_id=%s", self.worker_id)

    def summary(self) -> str:
        """One line: what the invocations of this worker ended with, and for how long it ran."""
        counts = ", ".join(f"{self.tally[name]} {name}" for name in TALLIES.values())
        elapsed = time.monotonic() - self._started_at
        return f"{sum(self.tally.values())} invocations in {elapsed:.1f}s: {counts}"

    def stop(self) -> None:
        """Stop claiming, finish or release what is held, then return from `run()`."""
        self._stopping.set()
        self._poke()

    # -- loop ------------------------------------------------------------------------------

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._io = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="inngest-io")
        self._runners = ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="inngest-run"
        )
        self._executor = RunExecutor(
            worker_id=self.worker_id,
            fleet=self.fleet,
            outcomes=self._outcomes,
            loop=self._loop,
            io=self._io,
            runners=self._runners,
            io_call=self._io_call,
            tally=self.tally,
        )
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(signum, self._on_signal, signum)
        housekeeping = Housekeeping(
            worker_id=self.worker_id,
            fleet=self.fleet,
            outage=self._outage,
            outcomes=self._outcomes,
            io_call=self._io_call,
            poke=self._poke,
            in_flight=lambda: len(self._inflight),
            has_free_slot=self._has_free_slot,
            poll_interval=self.poll_interval,
        )
        background = housekeeping.start(watch_sqlite=not self._postgresql)
        listener: PostgresListener | None = None
        if self._postgresql:
            listen_alias = conf.get().LISTEN_DATABASE or store.alias()
            listener = self._listener = PostgresListener(listen_alias, self._notified, self._outage)
            listener.start()
        try:
            await self._claim_loop()
            if listener is not None:  # what it picked up meanwhile is started, then finished
                listener.stop()
                await asyncio.to_thread(listener.join, 5.0)
            await self._finish_inflight()
        finally:
            for task in background:
                task.cancel()
            if listener is not None:
                listener.stop()
                await asyncio.to_thread(listener.join, 5.0)
            await self._io_call(store.release, self.worker_id)
            if not self.unfinished:
                await asyncio.to_thread(close_connections_of, self._runners, self.concurrency)
            self._runners.shutdown(wait=False, cancel_futures=True)
            await asyncio.to_thread(close_connections_of, self._io, IO_THREADS)
            self._io.shutdown(wait=True)

    async def _claim_loop(self) -> None:
        assert self._wake is not None
        failures = 0
        while not self._stopping.is_set():
            self._wake.clear()
            progressed = False
            try:
                events = await self._events_waiting()
                if events or self._free() > 0:
                    taken = await self._io_call(self._take, events)
                    assert taken is not None  # the loop waits its turn
                    claimed, fanned = taken
                    self._adopt(claimed)
                    progressed = fanned > 0 or bool(claimed)
                    if fanned >= FAN_OUT_LIMIT:
                        self._events_due = True  # more are waiting
                    self._outage.recovered()
                failures = 0
            except DatabaseError as error:
                self._events_due = True
                failures += 1
                delay = min(30.0, 0.5 * 2**failures)
                self._outage.failed("claiming runs", error)
                await self._sleep(delay)
                continue
            except Exception:  # a bug, not data (contained in routing): never exit for it
                self._events_due = True
                failures += 1
                delay = min(30.0, 0.5 * 2**failures)
                logger.exception("worker error while taking work; retrying in %.1fs", delay)
                await self._sleep(delay)
                continue
            if (
                self.burst
                and not progressed
                and not self._inflight
                and not self._promised
                and not self._held
            ):
                return
            full = self._free() <= 0
            if progressed and not full:
                continue
            await self._sleep(await self._idle_timeout(full))

    def _free(self) -> int:
        with self._slots:
            if self._held or self._alone is not None:
                return 0
            return self.concurrency - len(self._inflight) - self._promised

    def _take(
        self, events: bool, wait: bool = True, event: Mapping[str, Any] | None = None
    ) -> tuple[list[store.ClaimedRun], int] | None:
        """Pick up pending events (with `events`; first `event`, known from its notification,
        in one statement when it can be) and claim runs for the free slots, on a thread that
        may query. Returns the runs claimed, which count as taken slots until `_adopt` starts
        them, and how many events were matched; None when another thread is taking runs and
        `wait` is false."""
        if not self._taking.acquire(blocking=wait):
            return None
        try:
            free = self._free()
            settings = conf.get()
            catalog = self.fleet.catalog
            common: dict[str, Any] = {
                "now": clock.now(),
                "lease_seconds": settings.LEASE_SECONDS,
                "serves": catalog.serves(),
                "queues": self.queues,
            }
            claimed = None
            if event is not None:
                claimed = store.pick_up_event(event, catalog, self.worker_id, limit=free, **common)
            if claimed is not None:
                fanned = 1
            elif events:
                picked = store.pick_up(
                    catalog, self.worker_id, limit=free, fan_out_limit=FAN_OUT_LIMIT, **common
                )
                claimed, fanned = picked.claimed, picked.fanned.events
            else:
                claimed = (
                    store.claim(self.worker_id, limit=free, routing=catalog, **common)
                    if free > 0
                    else []
                )
                fanned = 0
            with self._slots:
                self._promised += len(claimed)
            return claimed, fanned
        finally:
            self._taking.release()

    def _adopt(self, claimed: Sequence[store.ClaimedRun]) -> None:
        """Start runs `_take` claimed (on the loop).

        A run that lost its lease before (its worker may have been killed by it) is held
        until the worker's other runs are done, then runs alone, and the worker claims
        nothing meanwhile: if it kills this worker too, no other run is lost with it, and
        only it comes nearer to MAX_LEASE_LOSSES."""
        with self._slots:
            self._promised -= len(claimed)
            for run in claimed:
                if run.lease_losses:
                    self._held.append(run)
                else:
                    self._start(run)
            self._start_held()

    def _start_held(self) -> None:
        """Start the next held run once nothing else runs (with `_slots` held)."""
        if self._held and not self._inflight and not self._stopping.is_set():
            run = self._held.popleft()
            self._alone = run.run_id
            self._start(run)

    async def _events_waiting(self) -> bool:
        """Whether to fan out now. A notification about events is taken at its word; otherwise
        one read looks (on SQLite, instead of taking the write lock)."""
        if not self._events_due:
            return False
        self._events_due = not self._postgresql
        if self._events_notified:
            self._events_notified = False
            return True
        return bool(await self._io_call(store.has_pending_events))

    async def _idle_timeout(self, full: bool) -> float:
        settings = conf.get()
        broken = self._listener is not None and self._listener.broken
        postgres_poll = LISTEN_BROKEN_POLL if broken else POSTGRES_FALLBACK_POLL
        fallback = settings.POLL_INTERVAL or (
            postgres_poll if self._postgresql else settings.IDLE_QUERY_INTERVAL
        )
        if full:
            return fallback
        try:
            catalog = self.fleet.catalog
            due = await self._io_call(
                store.next_due_at, catalog.priority_window(), catalog.serves()
            )
        except DatabaseError:
            return fallback
        if due is None:
            return fallback
        return max(0.0, min(fallback, (due - clock.now()).total_seconds()))

    async def _sleep(self, seconds: float) -> None:
        assert self._wake is not None
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            self._events_due = True  # the fallback poll also covers a lost notification

    def _start(self, claimed: store.ClaimedRun) -> None:
        task = asyncio.create_task(self._executor.execute(claimed))
        self._inflight[claimed.run_id] = task

        def done(_: asyncio.Task[None]) -> None:
            with self._slots:
                self._inflight.pop(claimed.run_id, None)
                if self._alone == claimed.run_id:
                    self._alone = None
                self._start_held()
            if self._wake is not None:
                self._wake.set()

        task.add_done_callback(done)

    async def _io_call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        assert self._loop is not None
        return await self._loop.run_in_executor(
            self._io, hygienic, functools.partial(fn, *args, **kwargs)
        )

    async def _finish_inflight(self) -> None:
        if not self._inflight:
            return
        logger.info(
            "worker stopping: waiting up to %.0fs for %s runs",
            self.shutdown_grace,
            len(self._inflight),
        )
        _, pending = await asyncio.wait(list(self._inflight.values()), timeout=self.shutdown_grace)
        self.unfinished = len(pending)
        for task in pending:
            task.cancel()

    # -- signals ---------------------------------------------------------------------------

    def _notified(self, about: str | None) -> None:
        """A notification, on the listener's thread (None: it (re)connected and may have
        missed some). Events are picked up right here when the worker has free slots and is
        not already taking runs: two thread hand-offs fewer between a send and its run, and
        an event the notification describes is taken in one statement when it can be."""
        if about is not None and about.startswith(store.EVENTS) and self._picked_up_here(about):
            return
        if about != store.QUEUE:
            self._events_due = self._events_notified = True
        self._poke()

    def _picked_up_here(self, about: str) -> bool:
        """Whether `_take` ran here and took what was notified; otherwise (busy, full,
        stopping, more events than one pass takes, or an error) the loop takes over."""
        loop = self._loop
        if loop is None or self._stopping.is_set() or self._free() <= 0:
            return False
        try:
            event = store.described_event(about)
            taken = hygienic(functools.partial(self._take, True, wait=False, event=event))
        except DatabaseError as error:
            self._outage.failed("picking up events on the listener", error)
            return False
        except Exception:
            logger.warning("picking up events on the listener failed; retrying", exc_info=True)
            return False
        if taken is None:
            return False
        claimed, fanned = taken
        try:
            loop.call_soon_threadsafe(self._adopt, claimed)
        except RuntimeError:  # the loop has closed: the runs' leases are released or expire
            return True
        return fanned < FAN_OUT_LIMIT

    def _has_free_slot(self) -> bool:
        """Whether new work could start now (a full worker looks again when a run ends)."""
        return self._free() > 0

    def _poke(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def _on_signal(self, signum: int) -> None:
        self._signals += 1
        name = signal.Signals(signum).name
        if self._signals > 1:
            logger.warning("second %s: exiting now", name)
            os._exit(1)
        logger.info("%s received: finishing current runs; send it again to exit now", name)
        self.stop()
