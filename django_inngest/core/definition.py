"""A function's definition as JSON (what an app sync stores) and back, and its hash.

The definition holds what routing and flow control need without the code: id, name, triggers
and options. A `Function` rebuilt from it has a handler that refuses to run, so a worker that
lacks a function's code can fan out its events and fire its timers, but never execute it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

from django_inngest.core import config
from django_inngest.core.errors import FunctionDefinitionError
from django_inngest.core.function import Function

#: Options stored as one config object each, and their types.
_SINGLE: dict[str, type[Any]] = {
    "throttle": config.Throttle,
    "rate_limit": config.RateLimit,
    "debounce": config.Debounce,
    "batch_events": config.Batch,
    "priority": config.Priority,
    "singleton": config.Singleton,
    "timeouts": config.Timeouts,
}
#: Options stored as a list of config objects.
_LISTS: dict[str, type[Any]] = {"cancel": config.Cancel, "concurrency": config.Concurrency}


def _plain(value: Any) -> Any:
    """A config object's fields as JSON: durations in milliseconds (as the SDK takes them)."""
    if isinstance(value, timedelta):
        return round(value.total_seconds() * 1000)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: _plain(getattr(value, field.name))
            for field in dataclasses.fields(value)
            if getattr(value, field.name) is not None
        }
    return value


def definition(function: Function) -> dict[str, Any]:
    """The JSON definition of `function` (its `on_failure` companion is a function of its own)."""
    triggers = [_plain(trigger) for trigger in function.triggers]
    options: dict[str, Any] = {"fn_id": function.local_id, "retries": function.retries}
    for name in _SINGLE:
        value = getattr(function, name)
        if value is not None:
            options[name] = _plain(value)
    for name in _LISTS:
        values = getattr(function, name)
        if values:
            options[name] = [_plain(value) for value in values]
    if function.idempotency is not None:
        options["idempotency"] = function.idempotency
    return {
        "id": function.id,
        "app_id": function.app_id,
        "name": function.name,
        "triggers": triggers,
        "options": options,
    }


def definition_hash(stored: Mapping[str, Any]) -> str:
    """A stable hash of a definition (key order does not matter)."""
    text = json.dumps(stored, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def version_of(hashes: Iterable[str]) -> str:
    """The version of a set of functions: a hash of their definitions' hashes."""
    return hashlib.sha1("\n".join(sorted(hashes)).encode("ascii")).hexdigest()


#: The app of the functions `django_inngest.tasks` makes, ids `tasks.<module>.<name>`.
TASKS_APP_ID = "tasks"


def _not_here(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("this function is known from its stored definition; its code is elsewhere")


def _trigger(stored: Mapping[str, Any]) -> config.Trigger:
    if "cron" in stored:
        return config.TriggerCron(**stored)
    return config.TriggerEvent(**stored)


def function_from_definition(stored: Mapping[str, Any]) -> Function:
    """The `Function` a definition describes, with a handler that refuses to run.

    Raises `FunctionDefinitionError` naming the function and the offending value when the
    definition cannot be read back (written by a newer version, or edited by hand).
    """
    function_id = stored.get("id", "?")
    try:
        options = dict(stored["options"])
        kwargs: dict[str, Any] = {
            "fn_id": options.pop("fn_id"),
            "retries": options.pop("retries", None),
            "idempotency": options.pop("idempotency", None),
        }
        for name, kind in _SINGLE.items():
            if name in options:
                kwargs[name] = kind(**options.pop(name))
        for name, kind in _LISTS.items():
            if name in options:
                kwargs[name] = [kind(**value) for value in options.pop(name)]
        if options:
            raise FunctionDefinitionError(f"unknown options {sorted(options)!r}")
        function = Function(
            app_id=stored["app_id"],
            # A Django task's function keeps its dotted path as its id.
            full_id=stored["id"] if stored["app_id"] == TASKS_APP_ID else None,
            handler=_not_here,
            trigger=[_trigger(trigger) for trigger in stored["triggers"]],
            name=stored["name"],
            **kwargs,
        )
    except (FunctionDefinitionError, KeyError, TypeError, ValueError) as error:
        raise FunctionDefinitionError(
            f"stored definition of function {function_id!r} cannot be read: {error}"
        ) from error
    if function.id != function_id:
        raise FunctionDefinitionError(
            f"stored definition of function {function_id!r} rebuilds as {function.id!r}"
        )
    return function
