"""`Function`: a decorated handler, its triggers and options, and its full id."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django_inngest.core import config
from django_inngest.core.errors import FunctionDefinitionError
from django_inngest.core.events import FUNCTION_FAILED

MAX_ID_LENGTH = 255
MAX_TRIGGERS = 10
MAX_RETRIES = 20
MAX_CANCELS = 5
DEFAULT_RETRIES = 4

Handler = Callable[..., Any]

#: Flow-control options, reported together by `problems()`.
FLOW_OPTIONS = (
    "batch_events",
    "debounce",
    "priority",
    "rate_limit",
    "singleton",
    "throttle",
    "timeouts",
)
MAX_CONCURRENCY_LIMITS = 2
#: Options that cannot be combined with batching (SPEC §1.3).
NOT_WITH_BATCHING = ("cancel", "debounce", "singleton", "priority", "idempotency", "rate_limit")

_OPTION_TYPES: dict[str, type | tuple[type, ...]] = {
    "batch_events": config.Batch,
    "debounce": config.Debounce,
    "priority": config.Priority,
    "rate_limit": config.RateLimit,
    "throttle": config.Throttle,
    "singleton": config.Singleton,
    "timeouts": config.Timeouts,
    "idempotency": str,
}


class Function:
    """A durable function: what starts it, what it runs, and how it is retried and limited."""

    def __init__(
        self,
        *,
        app_id: str,
        fn_id: str,
        handler: Handler,
        trigger: config.Trigger | Sequence[config.Trigger],
        name: str | None = None,
        retries: int | None = None,
        on_failure: Handler | None = None,
        cancel: Sequence[config.Cancel] | None = None,
        concurrency: Sequence[config.Concurrency] | None = None,
        throttle: config.Throttle | None = None,
        rate_limit: config.RateLimit | None = None,
        debounce: config.Debounce | None = None,
        batch_events: config.Batch | None = None,
        priority: config.Priority | None = None,
        idempotency: str | None = None,
        singleton: config.Singleton | None = None,
        timeouts: config.Timeouts | None = None,
    ) -> None:
        if not isinstance(fn_id, str):
            raise FunctionDefinitionError(f"fn_id must be a string, not {fn_id!r}")
        if not callable(handler):
            raise FunctionDefinitionError(
                f"function {fn_id!r}: handler {handler!r} is not callable"
            )
        if name is not None and not isinstance(name, str):
            raise FunctionDefinitionError(
                f"function {fn_id!r}: name must be a string, not {name!r}"
            )
        if retries is not None and (isinstance(retries, bool) or not isinstance(retries, int)):
            raise FunctionDefinitionError(
                f"function {fn_id!r}: retries must be an int, not {retries!r}"
            )
        self.app_id = app_id
        self.local_id = fn_id
        self.id = f"{app_id}-{fn_id}"
        self.name = name or fn_id
        self.handler = handler
        self.is_async = inspect.iscoroutinefunction(handler)
        self.triggers: tuple[config.Trigger, ...] = _triggers(fn_id, trigger)
        self.retries = DEFAULT_RETRIES if retries is None else retries
        self.cancel = tuple(_typed_list(fn_id, "cancel", cancel, config.Cancel))
        self.concurrency = tuple(_typed_list(fn_id, "concurrency", concurrency, config.Concurrency))
        self.throttle = throttle
        self.rate_limit = rate_limit
        self.debounce = debounce
        self.batch_events = batch_events
        self.priority = priority
        self.idempotency = idempotency
        self.singleton = singleton
        self.timeouts = timeouts
        for option, expected in _OPTION_TYPES.items():
            value = getattr(self, option)
            if value is not None and not isinstance(value, expected):
                raise FunctionDefinitionError(
                    f"function {fn_id!r}: {option} must be {_name(expected)}, not {value!r}"
                )
        self.source = (
            f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', '?')}"
        )
        self.client: Any = None
        """The client that declared the function; its logger backs `ctx.logger`."""
        self.on_failure_handler = on_failure
        self.on_failure: Function | None = None
        if on_failure is not None:
            self.on_failure = self._failure_companion(on_failure)

    @functools.cached_property
    def call_arguments(self) -> Callable[[Any, Any], tuple[tuple[Any, ...], dict[str, Any]]]:
        """`(ctx, step) -> (args, kwargs)` for this function's handler, worked out once."""
        return handler_arguments(self.handler)

    def __repr__(self) -> str:
        return f"<Function {self.id!r}>"

    def queue_of(self, event: Mapping[str, Any]) -> str | None:
        """The queue a run started by `event` belongs to; None (any worker) for functions."""
        return None

    @property
    def on_failure_fn_id(self) -> str | None:
        return self.on_failure.id if self.on_failure else None

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def problems(self) -> list[str]:
        """Everything wrong with this configuration, each message naming field and value."""
        found: list[str] = []
        if not self.local_id.strip() or len(self.local_id) > MAX_ID_LENGTH:
            found.append(f"fn_id={self.local_id!r}: must be 1 to {MAX_ID_LENGTH} characters")
        if not 0 <= self.retries <= MAX_RETRIES:
            found.append(f"retries={self.retries!r}: must be between 0 and {MAX_RETRIES}")
        if not self.triggers:
            found.append("trigger=[]: a function needs at least one trigger")
        if len(self.cancel) > MAX_CANCELS:
            found.append(f"cancel: {len(self.cancel)} entries, more than {MAX_CANCELS}")
        for cancel in self.cancel:
            found += cancel.problems()
        if len(self.triggers) > MAX_TRIGGERS:
            found.append(f"trigger: {len(self.triggers)} triggers, more than {MAX_TRIGGERS}")
        if len(set(self.triggers)) != len(self.triggers):
            found.append("trigger: the same trigger is listed twice")
        for trigger in self.triggers:
            found += trigger.problems()
        crons = [t.cron for t in set(self.triggers) if isinstance(t, config.TriggerCron)]
        for cron in sorted({c for c in crons if crons.count(c) > 1}):
            found.append(f"TriggerCron(cron={cron!r}): the same cron expression is listed twice")
        return found + self._flow_problems()

    def _flow_problems(self) -> list[str]:
        found: list[str] = []
        for option in FLOW_OPTIONS:
            value = getattr(self, option)
            if value is not None:
                found += value.problems()
        if len(self.concurrency) > MAX_CONCURRENCY_LIMITS:
            found.append(
                f"concurrency: {len(self.concurrency)} limits, more than {MAX_CONCURRENCY_LIMITS}"
            )
        for limit in self.concurrency:
            found += limit.problems()
        if self.idempotency is not None:
            found += config.expression_problems("idempotency", self.idempotency)
        if self.batch_events is not None:
            for option in NOT_WITH_BATCHING:
                if getattr(self, option) not in (None, ()):
                    found.append(f"batch_events and {option} cannot be used together")
        return found

    def _failure_companion(self, on_failure: Handler) -> Function:
        if not callable(on_failure):
            raise FunctionDefinitionError(
                f"function {self.local_id!r}: on_failure {on_failure!r} is not callable"
            )
        failure_is_async = inspect.iscoroutinefunction(on_failure)
        if self.is_async and not failure_is_async:
            raise FunctionDefinitionError(
                "an async function cannot have a non-async on_failure handler "
                f"(function {self.local_id})"
            )
        if failure_is_async and not self.is_async:
            raise FunctionDefinitionError(
                "a non-async function cannot have an async on_failure handler "
                f"(function {self.local_id})"
            )
        return Function(
            app_id=self.app_id,
            fn_id=f"{self.local_id}-failure",
            name=f"{self.name} (failure)",
            handler=on_failure,
            retries=0,
            trigger=config.TriggerEvent(
                event=FUNCTION_FAILED,
                expression=f"event.data.function_id == {json.dumps(self.id)}",
            ),
        )


def _name(expected: type | tuple[type, ...]) -> str:
    types = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(t.__name__ for t in types)


def _triggers(fn_id: str, trigger: object) -> tuple[config.Trigger, ...]:
    items = list(trigger) if isinstance(trigger, list | tuple) else [trigger]
    triggers: list[config.Trigger] = []
    for item in items:
        if not isinstance(item, config.TriggerEvent | config.TriggerCron):
            raise FunctionDefinitionError(
                f"function {fn_id!r}: trigger must be TriggerEvent or TriggerCron (or a list of "
                f"them), not {item!r}"
            )
        triggers.append(item)
    return tuple(triggers)


def _typed_list(fn_id: str, field: str, value: object, item_type: type) -> list[Any]:
    if value is None:
        return []
    items = list(value) if isinstance(value, list | tuple) else [value]
    for item in items:
        if not isinstance(item, item_type):
            raise FunctionDefinitionError(
                f"function {fn_id!r}: {field} must be a list of {item_type.__name__}, not {item!r}"
            )
    return items


def handler_arguments(
    handler: Handler,
) -> Callable[[Any, Any], tuple[tuple[Any, ...], dict[str, Any]]]:
    """How to call `handler`: ``fn(ctx)``, ``fn(ctx, step)`` or keyword-only ``fn(*, ctx, step)``."""
    parameters = list(inspect.signature(handler).parameters.values())
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters) or len(positional) >= 2:
        return lambda ctx, step: ((ctx, step), {})
    if len(positional) == 1:
        return lambda ctx, step: ((ctx,), {})
    names = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)

    def keywords(ctx: Any, step: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        offered = {"ctx": ctx, "step": step}
        return (), {k: v for k, v in offered.items() if accepts_any or k in names}

    return keywords
