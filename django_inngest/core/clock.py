"""The engine's one clock: every "now" of django-inngest is `clock.now()`.

Tests replace it process-wide (every thread) with a `FrozenClock` through
`django_inngest.testing.frozen_clock()`. Leases between workers use the database's clock instead,
and a worker corrects the system clock by its measured offset from the database's (`correct`),
so times it compares with other workers' (sleeps, retries, timers) agree with theirs.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """What the engine asks of a clock: the current time, timezone-aware."""

    @property
    def controlled(self) -> bool:
        """Whether a test drives this clock: its time is never corrected."""
        ...

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    """Wall-clock time, timezone-aware UTC."""

    controlled = False

    def now(self) -> datetime:
        """The wall-clock time now, in UTC."""
        return datetime.now(UTC)


class FrozenClock:
    """A clock that only moves when told to; safe to share between threads."""

    controlled = True

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
_correction = timedelta(0)

#: Offsets the correction does not follow: the jitter of a measurement is not a skew.
TOLERANCE = timedelta(milliseconds=20)


def now() -> datetime:
    """The current time of the installed clock (the system's, or a test's frozen one), corrected
    by the database's clock when the worker measured an offset (see `correct`)."""
    current = _current
    if current.controlled:
        return current.now()
    return current.now() + _correction


def now_ms() -> int:
    """`now()` in integer milliseconds since the epoch, the unit of an event's `ts`."""
    return int(now().timestamp() * 1000)


def own_now() -> datetime:
    """The installed clock's time, uncorrected: what `correct` compares with the reference."""
    return _current.now()


def correct(reference: datetime, sent: datetime, received: datetime) -> timedelta:
    """Note a reading of the reference clock (the database's), taken between `sent` and
    `received` (two `own_now()` readings); returns the correction `now()` applies from then on.

    The reading was taken at an unknown moment of the round trip, so the offset is known within
    half of it: the correction changes only when the reading proves it wrong (by more than that
    and `TOLERANCE`), so a synchronised clock is never nudged back and forth by noise. A
    controlled clock is never corrected."""
    global _correction
    if _current.controlled:
        return timedelta(0)
    if received < sent:
        raise ValueError(f"a round trip cannot end before it starts: {sent!r} to {received!r}")
    half_trip = (received - sent) / 2
    offset = reference - (sent + half_trip)
    if abs(offset - _correction) > half_trip + TOLERANCE:
        _correction = offset
    return _correction


def install(new: Clock) -> Clock:
    """Make `new` the engine's clock; returns the clock it replaces."""
    global _current
    previous, _current = _current, new
    return previous


def is_frozen() -> bool:
    """Whether a test installed a `FrozenClock` (time then moves only when told to)."""
    return isinstance(_current, FrozenClock)
