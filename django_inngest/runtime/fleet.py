"""Routing by the database (DESIGN §11): app syncs, and the catalog a worker routes with.

A worker syncs the apps of its functions when it starts (`manage.py inngest_sync` does the
same before traffic moves). The newest sync of each app is its current function set; a
`Catalog` holds those sets as `Function`s rebuilt from their stored definitions, so whichever
worker matches an event starts the runs of the current sets, code or no code, and claims only
runs of the functions it serves.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django_inngest import conf, store
from django_inngest.core import clock
from django_inngest.core.definition import (
    definition,
    definition_hash,
    function_from_definition,
    version_of,
)
from django_inngest.core.errors import FunctionDefinitionError, storable_text
from django_inngest.core.flow import RunPlan, plan_run
from django_inngest.core.function import Function
from django_inngest.fleet_status import GONE_AFTER_HEARTBEATS
from django_inngest.models import WorkerRecord
from django_inngest.registry import Registry, registry

logger = logging.getLogger("django_inngest.worker")


def definitions_of(functions: Iterable[Function]) -> dict[str, list[tuple[dict[str, Any], str]]]:
    """(definition, hash) pairs of `functions`, by app id."""
    by_app: dict[str, list[tuple[dict[str, Any], str]]] = {}
    for function in sorted(functions, key=lambda f: f.id):
        stored = definition(function)
        by_app.setdefault(function.app_id, []).append((stored, definition_hash(stored)))
    return by_app


def code_version(functions: Iterable[Function]) -> str:
    """The version of a process's code: a hash of its functions' definitions."""
    return version_of(digest for pairs in definitions_of(functions).values() for _, digest in pairs)


def sync_functions(functions: Iterable[Function], *, now: datetime, by: str) -> list[store.Synced]:
    """Make `functions` the current set of each of their apps (a worker's start, or
    `inngest_sync`); an app whose newest sync has the same definitions is left as it is."""
    synced = []
    for app_id, pairs in definitions_of(functions).items():
        version = version_of(digest for _, digest in pairs)
        synced.append(store.sync_app(app_id, pairs, version=version, now=now, by=by))
    return synced


class Catalog:
    """The current function sets, as one worker sees them, and the functions it serves.

    Reloaded when a fan-out statement or a heartbeat reports a newer sync than the one loaded.
    """

    def __init__(self, served: Iterable[Function]) -> None:
        self.served = {function.id: function for function in served}
        self.version = -1
        self.functions = Registry()
        self.known: frozenset[str] = frozenset()
        self.current: frozenset[str] = frozenset()
        self.synced_at: dict[str, datetime] = {}
        self.broken: dict[str, str] = {}
        """Functions of the current sets whose stored definition cannot be read back."""
        self._filter_always = False
        self.unknown: set[str] = set()
        """Functions of runs claimed here that no sync kept knows (removed before the syncs
        kept, or from before syncs existed): orphans as soon as no worker serves them."""
        self._unserved_since: dict[str, datetime] = {}
        self._lock = threading.RLock()

    def load(self) -> None:
        sets = store.current_sets()
        functions = Registry()
        broken: dict[str, str] = {}
        for stored in sets.definitions:
            own = self.served.get(stored["id"])
            if own is not None and definition_hash(definition(own)) == definition_hash(stored):
                functions.register(own)  # this worker has the code, at the version synced
                continue
            try:
                functions.register(function_from_definition(stored))
            except FunctionDefinitionError as error:
                broken[stored["id"]] = str(error)
        with self._lock:
            for function_id, problem in broken.items():
                if self.broken.get(function_id) != problem:
                    logger.error("function left out of routing fn=%s: %s", function_id, problem)
            self.functions, self.broken = functions, broken
            self.current = frozenset(stored["id"] for stored in sets.definitions)
            self.known = sets.known | self.current
            self.synced_at = sets.synced_at
            self.version = sets.marker

    def refresh(self, marker: int | None) -> None:
        """Reload when `marker` (the newest sync's id, as just read) is not the one loaded."""
        if marker is not None and marker != self.version:
            self.load()

    def route(self, event: Mapping[str, Any], event_id: str) -> list[RunPlan]:
        """The plans of the runs an event starts: the current sets' matching functions."""
        self.refresh(store.seen.marker)
        store.seen.routed = self.version
        return plans_for(self.functions, event, event_id)

    def planner(
        self, function_id: str, event: Mapping[str, Any], event_id: str, batched: bool
    ) -> RunPlan | None:
        """The plan of a run started by a timer (a debounce or a batch)."""
        function = self.functions.get(function_id) or self.served.get(function_id)
        if function is None:
            return None
        return plan_or_skip(function, event, event_id, batched=batched)

    def listens_to(self, name: str) -> bool:
        return self.functions.listens_to(name) or registry.listens_to(name)

    def priority_window(self) -> int:
        functions = [*self.functions.all(), *self.served.values()]
        if any(function.priority is not None for function in functions):
            return conf.get().PRIORITY_RANGE
        return 0

    def serves(self) -> frozenset[str] | None:
        """The functions whose runs this worker claims; None when that is every function the
        database knows (claims need no filter then)."""
        if not self._filter_always and self.known <= self.served.keys():
            return None
        return frozenset(self.served)

    def gave_back(self, function_id: str) -> None:
        """A run of a function not served was claimed (the catalog was stale, or the function
        was never synced): reload; filter claims from now on if it is still unknown."""
        self.load()
        if function_id not in self.known:
            self._filter_always = True
            self.unknown.add(function_id)

    def orphan_candidates(self, now: datetime) -> set[str]:
        """Functions out of every current set whose app synced more than the grace ago, and
        functions no sync knows that runs were claimed for here."""
        grace = timedelta(seconds=conf.get().ORPHAN_GRACE_SECONDS)
        found = self.unknown - self.current - self.served.keys()
        for function_id in self.known - self.current:
            app_synced = [
                synced_at
                for app_id, synced_at in self.synced_at.items()
                if function_id.startswith(f"{app_id}-")
            ]
            if all(synced_at <= now - grace for synced_at in app_synced):
                found.add(function_id)
        return found

    def unserved_for(self, unserved: set[str], now: datetime, grace: timedelta) -> set[str]:
        """Of the functions found `unserved` now (no live worker serves them), those this
        worker has found unserved for `grace` (a stopped worker's row is gone at once, so
        the grace is counted from when the sweep first missed a server)."""
        self._unserved_since = {
            function_id: self._unserved_since.get(function_id, now) for function_id in unserved
        }
        return {
            function_id
            for function_id, since in self._unserved_since.items()
            if since <= now - grace
        }


def plans_for(functions: Registry, event: Mapping[str, Any], event_id: str) -> list[RunPlan]:
    """The plans of the runs an event starts among `functions`. A function whose trigger or
    plan fails over this event gets a plan that says why it is skipped (DESIGN §11, "Data
    never stops the engine"); nothing here raises for data."""
    failed: list[tuple[Function, Exception]] = []
    plans = [
        plan_or_skip(function, event, event_id) for function in functions.matching(event, failed)
    ]
    plans += [
        skipped_plan(function.id, event_id, "evaluating its trigger failed", error)
        for function, error in failed
    ]
    if not plans:
        logger.debug(
            "event matched no function event_id=%s name=%s",
            event_id,
            event.get("name"),
            extra={"event_id": event_id, "event_name": event.get("name")},
        )
    return plans


def plan_or_skip(
    function: Function, event: Mapping[str, Any], event_id: str, *, batched: bool = False
) -> RunPlan:
    """`plan_run`, or the plan of `function` skipped for this event if planning fails."""
    try:
        return plan_run(
            function, event, event_id, priority_bound=conf.get().PRIORITY_RANGE, batched=batched
        )
    except Exception as error:
        return skipped_plan(function.id, event_id, "planning the run failed", error)


def skipped_plan(function_id: str, event_id: str, what: str, error: Exception) -> RunPlan:
    """The plan of a function skipped for one event, logged with the error's traceback."""
    reason = storable_text(f"{what}: {type(error).__name__}: {error}")
    logger.warning(
        "function skipped for event event_id=%s fn=%s reason=%s",
        event_id,
        function_id,
        reason,
        exc_info=error,
    )
    return RunPlan(function_id=function_id, skipped=reason)


_active: Catalog | None = None


def activate(catalog: Catalog) -> None:
    """The catalog of this process's worker, consulted by `listens_to`."""
    global _active
    _active = catalog


def listens_to(name: str) -> bool:
    """Whether a function of this process or of the current sets could match events of `name`
    (an event stored as not pending is never matched)."""
    catalog = _active
    return registry.listens_to(name) or (catalog is not None and catalog.listens_to(name))


def orphan_error(function_id: str) -> dict[str, Any]:
    grace = conf.get().ORPHAN_GRACE_SECONDS
    return {
        "code": "function_not_found",
        "message": f"function {function_id!r} is in no app's current sync and no live worker "
        f"has served it for {grace:g}s",
        "name": "FunctionNotFound",
        "stack": None,
    }


class Membership:
    """One worker's part in the fleet: it syncs its code's apps and keeps its row (`join`,
    `seen` with each heartbeat, `leave`), routes with a `Catalog`, gives back runs of
    functions it lacks, and on its sweeps forgets gone workers and fails orphaned runs."""

    def __init__(self, worker_id: str, *, concurrency: int, functions: Iterable[Function]) -> None:
        functions = list(functions)
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.catalog = Catalog(functions)
        self.version = code_version(functions)

    def join(self) -> None:
        """Correct the clock by the database's, sync this code's apps, record this worker's
        row, load the current sets."""
        sent = clock.own_now()
        clock.correct(store.database_now(), sent, clock.own_now())
        now = clock.now()
        for synced in sync_functions(self.catalog.served.values(), now=now, by=self.worker_id):
            if synced.created:
                logger.info(
                    "app synced app=%s version=%s sync=%s",
                    synced.app_id,
                    synced.version[:12],
                    synced.sync_id,
                )
        self._register(now, in_flight=0)
        self.catalog.load()
        activate(self.catalog)
        logger.info(
            "routing with the current sets sync=%s functions=%s served_here=%s",
            self.catalog.version,
            len(self.catalog.current),
            len(self.catalog.served),
        )

    def _register(self, now: datetime, *, in_flight: int) -> None:
        store.register_worker(
            WorkerRecord(
                id=self.worker_id,
                host=socket.gethostname(),
                pid=os.getpid(),
                version=self.version,
                functions=sorted(self.catalog.served),
                concurrency=self.concurrency,
                in_flight=in_flight,
                started_at=now,
                last_seen_at=now,
            )
        )

    def seen(self, now: datetime, *, in_flight: int) -> None:
        """The heartbeat on this worker's row, in one statement that also reads the newest
        sync (an app synced since: reload the current sets) and the database's clock (to
        correct this worker's by)."""
        sent = clock.own_now()
        beat = store.worker_seen(self.worker_id, now=now, in_flight=in_flight)
        if beat is None:  # taken for gone (a long pause): come back
            logger.warning("this worker's row was gone; recording it again")
            self._register(now, in_flight=in_flight)
            return
        clock.correct(beat.database_now, sent, clock.own_now())
        if beat.marker != self.catalog.version:
            self.catalog.load()
            logger.info("routing with the current sets sync=%s", self.catalog.version)

    def leave(self) -> None:
        store.unregister_worker(self.worker_id)

    def give_back(self, run_id: str, function_id: str) -> None:
        """A run of a function this worker lacks was claimed (its view of the current sets
        was stale): back to the queue, untouched, for a worker that serves it."""
        logger.warning("run given back run_id=%s fn=%s: not served here", run_id, function_id)
        store.give_back(run_id, self.worker_id)
        self.catalog.gave_back(function_id)

    def sweep(self, now: datetime, fail: Callable[[store.ClaimedRun, dict[str, Any]], Any]) -> None:
        """Forget workers gone for longer than the orphan grace; claim the due runs of
        functions in no current set that no live worker has served for that long, and
        `fail` each with its `FunctionNotFound` error."""
        settings = conf.get()
        grace = timedelta(seconds=settings.ORPHAN_GRACE_SECONDS)
        gone_after = timedelta(seconds=settings.HEARTBEAT_SECONDS * GONE_AFTER_HEARTBEATS)
        store.forget_workers_seen_before(now - max(grace, gone_after))
        candidates = self.catalog.orphan_candidates(now)
        if not candidates:
            return
        orphans = self.catalog.unserved_for(
            candidates - store.served_since(candidates, now - grace), now, grace
        )
        if not orphans:
            return
        claimed = store.claim(
            self.worker_id,
            limit=100,
            now=now,
            lease_seconds=settings.LEASE_SECONDS,
            routing=store.Routes(plans=self.catalog.planner, pending=listens_to),
            serves=orphans,
        )
        for run in claimed:
            if run.function_id in orphans:
                fail(run, orphan_error(run.function_id))
            else:  # a run of a timer fired on the way: not ours to run
                store.give_back(run.run_id, self.worker_id)
