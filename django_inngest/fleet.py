"""Routing by the database (DESIGN §11): app syncs, and the catalog a worker routes with.

A worker syncs the apps of its functions when it starts (`manage.py inngest_sync` does the
same before traffic moves). The newest sync of each app is its current function set; a
`Catalog` holds those sets as `Function`s rebuilt from their stored definitions, so whichever
worker matches an event starts the runs of the current sets, code or no code, and claims only
runs of the functions it serves.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django_inngest import conf
from django_inngest.core.definition import (
    definition,
    definition_hash,
    function_from_definition,
    version_of,
)
from django_inngest.core.errors import FunctionDefinitionError
from django_inngest.core.flow import RunPlan, plan_run
from django_inngest.core.function import Function
from django_inngest.registry import Registry, registry
from django_inngest.store import fleet as fleet_store

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


def sync_functions(
    functions: Iterable[Function], *, now: datetime, by: str
) -> list[fleet_store.Synced]:
    """Make `functions` the current set of each of their apps (a worker's start, or
    `inngest_sync`); an app whose newest sync has the same definitions is left as it is."""
    synced = []
    for app_id, pairs in definitions_of(functions).items():
        version = version_of(digest for _, digest in pairs)
        synced.append(fleet_store.sync_app(app_id, pairs, version=version, now=now, by=by))
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
        sets = fleet_store.current_sets()
        functions = Registry()
        broken: dict[str, str] = {}
        for stored in sets.definitions:
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
        self.refresh(fleet_store.seen.marker)
        fleet_store.seen.routed = self.version
        bound = conf.get().PRIORITY_RANGE
        return [
            plan_run(function, event, event_id, priority_bound=bound)
            for function in self.functions.matching(event)
        ]

    def planner(
        self, function_id: str, event: Mapping[str, Any], event_id: str, batched: bool
    ) -> RunPlan | None:
        """The plan of a run started by a timer (a debounce or a batch)."""
        function = self.functions.get(function_id) or self.served.get(function_id)
        if function is None:
            return None
        return plan_run(
            function, event, event_id, priority_bound=conf.get().PRIORITY_RANGE, batched=batched
        )

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
