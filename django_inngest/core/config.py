"""Configuration value objects of `create_function`, with Inngest's names and limits (SPEC §1.3).

Wrong types raise `TypeError` when the object is built. Values out of range are returned by
`problems()` as messages, so that `manage.py check` reports them instead of an import crashing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from django_inngest.core.expressions import ExpressionError, compile_expression
from django_inngest.core.schedule import (
    MAX_JITTER,
    MIN_JITTER,
    CronError,
    parse_cron,
    parse_go_duration,
)

Duration = int | timedelta
MAX_TRIGGER_NAME = 255


class ParallelMode(enum.Enum):
    """How `group.parallel` advances branches of sequential steps: ``WAIT`` in lock-step
    rounds (the default), ``RACE`` each on its own."""

    WAIT = "wait"
    RACE = "race"


def to_timedelta(value: Duration) -> timedelta:
    """An int is milliseconds, as in Inngest's SDK."""
    if isinstance(value, bool) or not isinstance(value, int | timedelta):
        raise TypeError(f"a duration must be int milliseconds or a timedelta, not {value!r}")
    return timedelta(milliseconds=value) if isinstance(value, int) else value


def duration_problems(
    field: str,
    value: Duration | None,
    *,
    minimum: timedelta | None = timedelta(seconds=1),
    maximum: timedelta | None = None,
) -> list[str]:
    """Inngest's duration rules: at least 1 second, whole seconds, under a maximum."""
    if value is None:
        return []
    delta = to_timedelta(value)
    if minimum is not None and delta < minimum:
        return [f"{field}={value!r}: duration must be at least {_show(minimum)}"]
    if delta.microseconds:
        return [f"{field}={value!r}: duration must be a whole number of seconds"]
    if maximum is not None and delta > maximum:
        return [f"{field}={value!r}: duration must be at most {_show(maximum)}"]
    return []


def expression_problems(field: str, source: str | None) -> list[str]:
    """The compile error of the expression in `field`, as a one-item list naming the field; [] when
    it compiles or is None."""
    if source is None:
        return []
    try:
        compile_expression(source)
    except ExpressionError as error:
        return [f"{field}: {error}"]
    return []


def _show(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _require(value: Any, types: type | tuple[type, ...], field: str, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise TypeError(f"{field} must be {_type_names(types)}, not {value!r}")
    if not isinstance(value, types):
        raise TypeError(f"{field} must be {_type_names(types)}, not {value!r}")


def _type_names(types: type | tuple[type, ...]) -> str:
    names = [t.__name__ for t in (types if isinstance(types, tuple) else (types,))]
    return " or ".join(names)


_DURATION_TYPES = (int, timedelta)


@dataclass(frozen=True, kw_only=True)
class TriggerEvent:
    """Start a run for each event of this name (and matching `expression`, when given)."""

    event: str
    """The event name; ``app/*`` and ``app/user.*`` match by prefix."""
    expression: str | None = None
    """A CEL condition over ``event``; the run starts only when it is true."""

    def __post_init__(self) -> None:
        _require(self.event, str, "TriggerEvent.event", optional=False)
        _require(self.expression, str, "TriggerEvent.expression", optional=True)

    def problems(self) -> list[str]:
        """Everything wrong with this trigger: an empty or too long event name, an expression that
        does not compile."""
        found = []
        if not self.event.strip():
            found.append(f"TriggerEvent.event={self.event!r}: the event name is empty")
        if len(self.event) > MAX_TRIGGER_NAME:
            found.append(
                f"TriggerEvent.event={self.event[:40]!r}...: longer than {MAX_TRIGGER_NAME}"
            )
        return found + expression_problems("TriggerEvent.expression", self.expression)

    def matches_name(self, name: str) -> bool:
        """Whether an event named `name` can start the function: the same name, or a name that
        starts with the part before a trailing ``*``."""
        if self.event.endswith("*"):
            return name.startswith(self.event[:-1])
        return name == self.event


@dataclass(frozen=True, kw_only=True)
class TriggerCron:
    """Start a run on a cron schedule, exactly once per tick across all workers."""

    cron: str
    """Five cron fields, optionally prefixed by ``TZ=Area/City``."""
    jitter: str | None = None
    """A delay such as ``"30s"`` (0, or 1 s..5 m): each tick fires a deterministic 1 s..jitter
    after its time."""

    def __post_init__(self) -> None:
        _require(self.cron, str, "TriggerCron.cron", optional=False)
        _require(self.jitter, str, "TriggerCron.jitter", optional=True)

    def problems(self) -> list[str]:
        """Everything wrong with this schedule: a cron expression or time zone that does not parse,
        a jitter that is not a valid duration."""
        found = []
        try:
            parse_cron(self.cron)
        except CronError as error:
            found.append(f"TriggerCron.cron: {error}")
        if self.jitter is not None:
            try:
                jitter = parse_go_duration(self.jitter)
            except ValueError as error:
                found.append(f"TriggerCron.jitter: {error}")
            else:
                if jitter and not MIN_JITTER <= jitter <= MAX_JITTER:
                    found.append(
                        f"TriggerCron.jitter={self.jitter!r}: must be 0 or between 1s and 5m"
                    )
        return found

    def to_dict(self) -> dict[str, str]:
        """The trigger as Inngest registers it: ``{"cron": ..., "jitter": ...}``."""
        found = {"cron": self.cron}
        if self.jitter is not None:
            found["jitter"] = self.jitter
        return found


Trigger = TriggerEvent | TriggerCron


@dataclass(frozen=True, kw_only=True)
class Batch:
    """Give one run up to `max_size` events, started when full or `timeout` after the first."""

    max_size: int
    timeout: Duration | None = None
    key: str | None = None
    if_exp: str | None = None

    def __post_init__(self) -> None:
        _require(self.max_size, int, "Batch.max_size", optional=False)
        _require(self.timeout, _DURATION_TYPES, "Batch.timeout", optional=True)
        _require(self.key, str, "Batch.key", optional=True)
        _require(self.if_exp, str, "Batch.if_exp", optional=True)

    def problems(self) -> list[str]:
        """Everything wrong with these batch settings: a size under 2, a timeout over 60 s, an
        expression that does not compile."""
        found = []
        if self.max_size < 2:
            found.append(f"Batch.max_size={self.max_size!r}: batch size cannot be smaller than 2")
        found += duration_problems("Batch.timeout", self.timeout, maximum=timedelta(seconds=60))
        return (
            found
            + expression_problems("Batch.key", self.key)
            + expression_problems("Batch.if_exp", self.if_exp)
        )


@dataclass(frozen=True, kw_only=True)
class Cancel:
    """Cancel a run when an event of this name (matching `if_exp`) arrives within `timeout`."""

    event: str
    if_exp: str | None = None
    timeout: Duration | None = None

    def __post_init__(self) -> None:
        _require(self.event, str, "Cancel.event", optional=False)
        _require(self.if_exp, str, "Cancel.if_exp", optional=True)
        _require(self.timeout, _DURATION_TYPES, "Cancel.timeout", optional=True)

    def problems(self) -> list[str]:
        """Everything wrong with this cancellation: an empty event name, an `if_exp` that does not
        compile or that could match every event."""
        found = [] if self.event.strip() else [f"Cancel.event={self.event!r}: empty event name"]
        found += expression_problems("Cancel.if_exp", self.if_exp)
        if self.if_exp is not None and not found:
            found += [
                f"Cancel.if_exp={self.if_exp!r}: {problem}"
                for problem in compile_expression(self.if_exp).restrictive_problems()
            ]
        return found + duration_problems("Cancel.timeout", self.timeout)


@dataclass(frozen=True, kw_only=True)
class Concurrency:
    """Limit the runs executing at once, per function or per `key` value (`scope` shares it)."""

    limit: int
    key: str | None = None
    scope: Literal["account", "env", "fn"] | None = None

    def __post_init__(self) -> None:
        _require(self.limit, int, "Concurrency.limit", optional=False)
        _require(self.key, str, "Concurrency.key", optional=True)
        _require(self.scope, str, "Concurrency.scope", optional=True)

    def problems(self) -> list[str]:
        """Everything wrong with this limit: a negative limit, an unknown scope, an env or account
        scope without a key, a key that does not compile."""
        found = []
        if self.limit < 0:
            found.append(f"Concurrency.limit={self.limit!r}: must be 0 (no limit) or more")
        if self.scope not in (None, "fn", "env", "account"):
            found.append(f"Concurrency.scope={self.scope!r}: must be 'fn', 'env' or 'account'")
        if self.scope in ("env", "account") and not self.key:
            found.append(
                f"Concurrency.scope={self.scope!r}: a concurrency key must be specified for "
                f"{self.scope} scoped limits"
            )
        return found + expression_problems("Concurrency.key", self.key)


@dataclass(frozen=True, kw_only=True)
class Debounce:
    """One run with the last event, `period` after it; never later than `timeout` after the first."""

    period: Duration
    key: str | None = None
    timeout: Duration | None = None

    def __post_init__(self) -> None:
        _require(self.period, _DURATION_TYPES, "Debounce.period", optional=False)
        _require(self.key, str, "Debounce.key", optional=True)
        _require(self.timeout, _DURATION_TYPES, "Debounce.timeout", optional=True)

    def problems(self) -> list[str]:
        """Everything wrong with this debounce: a period over 7 days, an invalid timeout, a key that
        does not compile."""
        return (
            duration_problems("Debounce.period", self.period, maximum=timedelta(days=7))
            + duration_problems("Debounce.timeout", self.timeout)
            + expression_problems("Debounce.key", self.key)
        )


@dataclass(frozen=True, kw_only=True)
class Priority:
    """An expression giving a run's priority in seconds (within ± `PRIORITY_RANGE`)."""

    run: str

    def __post_init__(self) -> None:
        _require(self.run, str, "Priority.run", optional=False)

    def problems(self) -> list[str]:
        """The compile error of the `run` expression, if any."""
        return expression_problems("Priority.run", self.run)


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """Create at most `limit` runs per `period` (per `key`); runs over it are not created."""

    limit: int
    period: Duration
    key: str | None = None

    def __post_init__(self) -> None:
        _require(self.limit, int, "RateLimit.limit", optional=False)
        _require(self.period, _DURATION_TYPES, "RateLimit.period", optional=False)
        _require(self.key, str, "RateLimit.key", optional=True)

    def problems(self) -> list[str]:
        """Everything wrong with this rate limit: a limit under 1, a period over 24 hours, a key
        that does not compile."""
        found = [] if self.limit >= 1 else [f"RateLimit.limit={self.limit!r}: must be at least 1"]
        return (
            found
            + duration_problems("RateLimit.period", self.period, maximum=timedelta(hours=24))
            + expression_problems("RateLimit.key", self.key)
        )


@dataclass(frozen=True, kw_only=True)
class Throttle:
    """Delay run starts to `limit` per `period` (per `key`), with `burst` extra at once."""

    limit: int
    period: Duration
    key: str | None = None
    burst: int | None = 1

    def __post_init__(self) -> None:
        _require(self.limit, int, "Throttle.limit", optional=False)
        _require(self.period, _DURATION_TYPES, "Throttle.period", optional=False)
        _require(self.key, str, "Throttle.key", optional=True)
        _require(self.burst, int, "Throttle.burst", optional=True)

    def problems(self) -> list[str]:
        """Everything wrong with this throttle: a negative limit or burst, a period over 7 days, a
        key that does not compile."""
        found = [] if self.limit >= 0 else [f"Throttle.limit={self.limit!r}: must not be negative"]
        if self.burst is not None and self.burst < 0:
            found.append(f"Throttle.burst={self.burst!r}: must not be negative")
        return (
            found
            + duration_problems("Throttle.period", self.period, maximum=timedelta(days=7))
            + expression_problems("Throttle.key", self.key)
        )


@dataclass(frozen=True, kw_only=True)
class Singleton:
    """One run at a time per `key`: `mode="skip"` skips new ones, `"cancel"` replaces the old."""

    mode: Literal["skip", "cancel"]
    key: str | None = None

    def __post_init__(self) -> None:
        _require(self.mode, str, "Singleton.mode", optional=False)
        _require(self.key, str, "Singleton.key", optional=True)

    def problems(self) -> list[str]:
        """Everything wrong with this singleton: a mode other than 'skip' or 'cancel', a key that
        does not compile."""
        found = []
        if self.mode not in ("skip", "cancel"):
            found.append(f"Singleton.mode={self.mode!r}: must be 'skip' or 'cancel'")
        return found + expression_problems("Singleton.key", self.key)


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """Cancel a run not started within `start` of being queued, or not ended within `finish`."""

    start: Duration | None = None
    finish: Duration | None = None

    def __post_init__(self) -> None:
        _require(self.start, _DURATION_TYPES, "Timeouts.start", optional=True)
        _require(self.finish, _DURATION_TYPES, "Timeouts.finish", optional=True)

    def problems(self) -> list[str]:
        """Everything wrong with these timeouts: a `start` or `finish` that is not a valid duration."""
        return duration_problems("Timeouts.start", self.start) + duration_problems(
            "Timeouts.finish", self.finish
        )
