"""The engine's one clock: every "now" of django-inngest is `clock.now()`.

Tests replace it process-wide (every thread) with a `FrozenClock` through
`django_inngest.testing.frozen_clock()`. Leases between workers use the database's clock instead.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the engine asks of a clock: the current time, timezone-aware."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    """Wall-clock time, timezone-aware UTC."""

    def now(self) -> datetime:
        """The wall-clock time now, in UTC."""
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to; safe to share between threads."""

    def __init__(self, at: datetime | None = None) -> None:
        if at is not None and at.tzinfo is None:
            raise ValueError(f"frozen clock needs an aware datetime, not {at!r}")
        self._now = (at or datetime.now(UTC)).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The time the clock was last set or advanced to."""
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move the clock forward by `delta` (never back: a negative delta is a `ValueError`);
        returns the new time."""
        if delta < timedelta(0):
            raise ValueError(f"the clock cannot go back: advance({delta!r})")
        with self._lock:
            self._now += delta
            return self._now

    def set(self, at: datetime) -> datetime:
        """Move the clock to `at`, an aware datetime, forward or back; returns it in UTC."""
        if at.tzinfo is None:
            raise ValueError(f"frozen clock needs an aware datetime, not {at!r}")
        with self._lock:
            self._now = at.astimezone(UTC)
            return self._now


_current: Clock = SystemClock()


def now() -> datetime:
    """The current time of the installed clock (the system's, or a test's frozen one)."""
    return _current.now()


def now_ms() -> int:
    """`now()` in integer milliseconds since the epoch, the unit of an event's `ts`."""
    return int(_current.now().timestamp() * 1000)


def install(new: Clock) -> Clock:
    """Make `new` the engine's clock; returns the clock it replaces."""
    global _current
    previous, _current = _current, new
    return previous


def is_frozen() -> bool:
    """Whether a test installed a `FrozenClock` (time then moves only when told to)."""
    return isinstance(_current, FrozenClock)
