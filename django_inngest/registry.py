"""Registered functions, looked up by id and by the events that start them.

`create_function` registers as it decorates; `AppConfig.ready()` imports every installed app's
`functions` module. Two different handlers with one id are recorded as a conflict that
`manage.py check` reports, rather than an import error.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from django.utils.module_loading import autodiscover_modules

from django_inngest.core.config import TriggerEvent
from django_inngest.core.events import FUNCTION_INVOKED, invoked_function
from django_inngest.core.expressions import ExpressionError, compile_expression
from django_inngest.core.function import Function


class Registry:
    """The functions this process knows, by full id: those declared with `create_function` (found by
    `autodiscover`) and those resolvers make on demand (Django tasks). Thread-safe; a second
    function with the same id from other code is recorded in `conflicts`, which a system check
    reports."""

    def __init__(self) -> None:
        self._functions: dict[str, Function] = {}
        self.conflicts: list[str] = []
        self._lock = threading.RLock()
        self._by_name: dict[str, list[tuple[Function, TriggerEvent]]] | None = None
        self._wildcards: list[tuple[str, Function, TriggerEvent]] = []
        self._resolvers: dict[str, Callable[[str], Function | None]] = {}

    def resolve_with(self, prefix: str, resolver: Callable[[str], Function | None]) -> None:
        """Functions registered on first use: an unknown function id or event name starting
        with `prefix` is given to `resolver`, which registers and returns its function (the
        tasks backend imports a task this way in a worker that has not imported it yet)."""
        with self._lock:
            self._resolvers[prefix] = resolver

    def register(self, function: Function) -> None:
        """Add `function` (and its `on_failure` companion); the same id declared by other code is
        recorded as a conflict, the same code again replaces it."""
        with self._lock:
            existing = self._functions.get(function.id)
            if existing is not None and existing.source != function.source:
                self.conflicts.append(
                    f"function id {function.id!r} is declared twice: by {existing.source} and "
                    f"by {function.source}"
                )
            self._functions[function.id] = function
            if function.on_failure is not None:
                self._functions[function.on_failure.id] = function.on_failure
            self._by_name = None

    def get(self, function_id: str, *, resolve: bool = True) -> Function | None:
        """The function with full id `function_id`, or None; with `resolve`, the resolvers may make
        it (a Django task's function is made the first time it is asked for)."""
        found = self._functions.get(function_id)
        if found is None and resolve and self._resolvers:
            found = self._resolve(function_id)
        return found

    def _resolve(self, name: str) -> Function | None:
        for prefix, resolver in list(self._resolvers.items()):
            if name.startswith(prefix):
                return resolver(name)
        return None

    def all(self) -> list[Function]:
        """Every registered function, sorted by id."""
        with self._lock:
            return sorted(self._functions.values(), key=lambda f: f.id)

    def matching(
        self,
        event: Mapping[str, Any],
        failed: list[tuple[Function, Exception]] | None = None,
    ) -> list[Function]:
        """Functions an event starts: per function, the first trigger that matches wins.

        A trigger whose expression raises over this event does not start its function; the
        function and the error are added to `failed` when given."""
        name = str(event.get("name", ""))
        if name == FUNCTION_INVOKED:  # only the target runs, whatever its triggers
            target = self.get(invoked_function(event) or "")
            return [target] if target is not None else []
        by_name, wildcards = self._index()
        if name not in by_name and self._resolvers and self._resolve(name) is not None:
            by_name, wildcards = self._index()
        candidates = list(by_name.get(name, ()))
        candidates += [(fn, t) for prefix, fn, t in wildcards if name.startswith(prefix)]
        started: list[Function] = []
        for function, trigger in candidates:
            if function in started:
                continue
            if trigger.expression is not None:
                try:
                    if not compile_expression(trigger.expression).matches(event):
                        continue
                except ExpressionError:
                    continue  # reported by `manage.py check`; never start on a broken filter
                except Exception as error:  # contained: this function only, this event only
                    if failed is not None and all(f is not function for f, _ in failed):
                        failed.append((function, error))
                    continue
            started.append(function)
        return started

    def listens_to(self, name: str) -> bool:
        """Whether some trigger could match events of this name."""
        by_name, wildcards = self._index()
        return name in by_name or any(name.startswith(prefix) for prefix, _, _ in wildcards)

    def _index(
        self,
    ) -> tuple[
        dict[str, list[tuple[Function, TriggerEvent]]], list[tuple[str, Function, TriggerEvent]]
    ]:
        with self._lock:
            if self._by_name is None:
                by_name: dict[str, list[tuple[Function, TriggerEvent]]] = {}
                wildcards = []
                for function in sorted(self._functions.values(), key=lambda f: f.id):
                    for trigger in function.triggers:
                        if not isinstance(trigger, TriggerEvent):
                            continue
                        if trigger.event.endswith("*"):
                            wildcards.append((trigger.event[:-1], function, trigger))
                        else:
                            by_name.setdefault(trigger.event, []).append((function, trigger))
                self._by_name, self._wildcards = by_name, wildcards
            return self._by_name, self._wildcards

    @contextlib.contextmanager
    def isolated(self) -> Iterator[Registry]:
        """Within the block, only functions registered inside it exist (for tests)."""
        with self._lock:
            saved = (dict(self._functions), list(self.conflicts))
            self._functions.clear()
            self.conflicts.clear()
            self._by_name = None
        try:
            yield self
        finally:
            with self._lock:
                self._functions, self.conflicts = saved[0], saved[1]
                self._by_name = None


registry = Registry()


def autodiscover() -> None:
    """Import the `functions` module of every installed app, so the functions it declares are
    registered."""
    autodiscover_modules("functions")
