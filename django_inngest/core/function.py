"""`Function`: a decorated handler, its triggers and options, and its full id.

`FunctionOptions` is the one list of the keywords `create_function` takes, with their types;
the client's method, the module-level function and `Function` all take it.

No ``from __future__ import annotations`` here: `FunctionOptions` is read at run time (which
keywords exist, which are required), and a `TypedDict` only knows its required keys when its
annotations are evaluated.
"""

import functools
import inspect
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, Required, TypedDict, Unpack, get_type_hints

from django_inngest.core import config
from django_inngest.core.errors import FunctionDefinitionError
from django_inngest.core.events import FUNCTION_FAILED

MAX_ID_LENGTH = 255
MAX_TRIGGERS = 10
MAX_RETRIES = 20
MAX_CANCELS = 5
DEFAULT_RETRIES = 4

Handler = Callable[..., Any]


class FunctionOptions(TypedDict, total=False):
    """The keywords of `create_function`, typed: what starts a function and how it is retried
    and limited. Only `fn_id` and `trigger` are required."""

    fn_id: Required[str]
    """The function's id within its app, 1 to 255 characters; the full id is
    ``"{app_id}-{fn_id}"``."""
    trigger: Required[config.Trigger | Sequence[config.Trigger]]
    """One `TriggerEvent` / `TriggerCron`, or a list of up to 10."""
    name: str | None
    """A display name for the admin; `fn_id` when left out."""
    retries: int | None
    """Retries after the first attempt, 0 to 20; 4 when left out."""
    on_failure: Handler | None
    """Called once the run has failed for good, as a function of its own."""
    cancel: Sequence[config.Cancel] | None
    """Up to 5 events that cancel a run they match."""
    concurrency: Sequence[config.Concurrency] | None
    """Up to 2 limits on the runs executing at once."""
    throttle: config.Throttle | None
    """Delays starts beyond a limit per period; nothing is dropped."""
    rate_limit: config.RateLimit | None
    """Drops starts beyond a limit per period."""
    debounce: config.Debounce | None
    """Starts one run for the last of a burst of events."""
    batch_events: config.Batch | None
    """Starts one run for a batch of events."""
    priority: config.Priority | None
    """Moves runs ahead of (or behind) the others of the function."""
    idempotency: str | None
    """An expression; at most one run per value in 24 hours."""
    singleton: config.Singleton | None
    """At most one run at a time (per key): skip the new one or cancel the old one."""
    timeouts: config.Timeouts | None
    """Cancels a run that waits too long to start or to finish."""


OPTION_NAMES = tuple(FunctionOptions.__annotations__)
"""The keywords of `FunctionOptions`, in the order they are declared."""


def check_option_names(options: Mapping[str, object], caller: str) -> None:
    """Raise `FunctionDefinitionError` (a `TypeError`, as Python's for a wrong keyword) naming
    a keyword `FunctionOptions` does not have, or a required one that is missing."""
    unknown = [name for name in options if name not in FunctionOptions.__annotations__]
    if unknown:
        raise FunctionDefinitionError(
            f"{caller}() got an unexpected keyword argument {unknown[0]!r}; "
            f"its keywords are {', '.join(OPTION_NAMES)}"
        )
    missing = [name for name in FunctionOptions.__required_keys__ if name not in options]
    if missing:
        raise FunctionDefinitionError(
            f"{caller}() missing required keyword argument {sorted(missing)[0]!r}"
        )


def spell_out_options(function: Callable[..., Any]) -> None:
    """Give `function`, which takes ``**options: Unpack[FunctionOptions]``, a signature that
    lists each keyword instead, for `help()` and the API reference."""
    signature = inspect.signature(function)
    keywords = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=inspect.Parameter.empty if name in FunctionOptions.__required_keys__ else None,
            annotation=annotation,
        )
        for name, annotation in get_type_hints(FunctionOptions).items()
    ]
    parameters = [p for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD]
    function.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*parameters, *keywords]
    )


class LoggerSource(Protocol):
    """What a function's `client` offers: the logger `ctx.logger` forwards to, read at each
    run (the client's `set_logger` can change it after the function is declared)."""

    @property
    def logger(self) -> logging.Logger:
        """The logger `ctx.logger` forwards to."""
        ...


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
    """A durable function: what starts it, what it runs, and how it is retried and limited.

    Immutable once built: setting an attribute raises `AttributeError`. `client` (anything with
    a `logger`, usually the `Inngest` client that declared it) backs `ctx.logger`; without one,
    ``django_inngest.functions`` does. `full_id` and `source` replace the full id and the
    handler's dotted path, for functions whose id is not ``"{app_id}-{fn_id}"`` (Django tasks).
    """

    def __init__(
        self,
        *,
        app_id: str,
        handler: Handler,
        client: LoggerSource | None = None,
        full_id: str | None = None,
        source: str | None = None,
        **options: Unpack[FunctionOptions],
    ) -> None:
        check_option_names(options, "Function")
        fn_id = options["fn_id"]
        name = options.get("name")
        retries = options.get("retries")
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
        self.id = full_id or f"{app_id}-{fn_id}"
        self.name = name or fn_id
        self.handler = handler
        self.is_async = inspect.iscoroutinefunction(handler)
        self.triggers: tuple[config.Trigger, ...] = _triggers(fn_id, options["trigger"])
        self.retries = DEFAULT_RETRIES if retries is None else retries
        self.cancel = tuple(_typed_list(fn_id, "cancel", options.get("cancel"), config.Cancel))
        self.concurrency = tuple(
            _typed_list(fn_id, "concurrency", options.get("concurrency"), config.Concurrency)
        )
        self.throttle = options.get("throttle")
        self.rate_limit = options.get("rate_limit")
        self.debounce = options.get("debounce")
        self.batch_events = options.get("batch_events")
        self.priority = options.get("priority")
        self.idempotency = options.get("idempotency")
        self.singleton = options.get("singleton")
        self.timeouts = options.get("timeouts")
        for option, expected in _OPTION_TYPES.items():
            value = getattr(self, option)
            if value is not None and not isinstance(value, expected):
                raise FunctionDefinitionError(
                    f"function {fn_id!r}: {option} must be {_name(expected)}, not {value!r}"
                )
        self.source = source or (
            f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', '?')}"
        )
        self.client = client
        """What backs `ctx.logger`; None for ``django_inngest.functions``."""
        on_failure = options.get("on_failure")
        self.on_failure_handler = on_failure
        self.on_failure: Function | None = None
        if on_failure is not None:
            self.on_failure = self._failure_companion(on_failure)
        self._built = True

    def __setattr__(self, name: str, value: object) -> None:
        if getattr(self, "_built", False):
            raise AttributeError(f"{self!r} is immutable: declare it again to change {name!r}")
        object.__setattr__(self, name, value)

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
        """The full id of the function that runs `on_failure`, or None."""
        return self.on_failure.id if self.on_failure else None

    @property
    def max_attempts(self) -> int:
        """How many times the function is invoked at most before it fails: `retries + 1`."""
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

    def _failure_companion(self, on_failure: Handler) -> "Function":
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
            client=self.client,
            fn_id=f"{self.local_id}-failure",
            name=f"{self.name} (failure)",
            handler=on_failure,
            retries=0,
            trigger=config.TriggerEvent(
                event=FUNCTION_FAILED,
                expression=f"event.data.function_id == {json.dumps(self.id)}",
            ),
        )


spell_out_options(Function.__init__)


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
