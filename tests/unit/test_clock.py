"""The controllable clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from django_inngest.core import clock
from django_inngest.testing import frozen_clock


def test_frozen_clock_stands_still_until_advanced() -> None:
    with frozen_clock(datetime(2026, 3, 1, tzinfo=UTC)) as frozen:
        assert clock.now() == datetime(2026, 3, 1, tzinfo=UTC)
        frozen.advance(timedelta(minutes=5))
        assert clock.now() == datetime(2026, 3, 1, 0, 5, tzinfo=UTC)
        frozen.set(datetime(2027, 1, 1, tzinfo=UTC))
        assert clock.now().year == 2027
    assert not clock.is_frozen()


def test_frozen_clock_is_seen_by_every_thread() -> None:
    seen: list[datetime] = []
    with frozen_clock(datetime(2026, 3, 1, tzinfo=UTC)):
        thread = threading.Thread(target=lambda: seen.append(clock.now()))
        thread.start()
        thread.join()
    assert seen == [datetime(2026, 3, 1, tzinfo=UTC)]


def test_frozen_clock_refuses_naive_datetimes_and_going_back() -> None:
    with pytest.raises(ValueError, match="aware"):
        clock.FrozenClock(datetime(2026, 1, 1))
    frozen = clock.FrozenClock()
    with pytest.raises(ValueError, match="cannot go back"):
        frozen.advance(timedelta(seconds=-1))


class MachineClock:
    """A machine's clock (not controlled by the test) that reads `at`."""

    controlled = False

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


T = datetime(2026, 3, 1, tzinfo=UTC)
AHEAD = timedelta(minutes=2)
TRIP = timedelta(milliseconds=100)


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[MachineClock]:
    """A machine clock 2 minutes ahead of the reference, installed, with no correction yet."""
    monkeypatch.setattr(clock, "_correction", timedelta(0))
    ahead = MachineClock(T + AHEAD)
    previous = clock.install(ahead)
    yield ahead
    clock.install(previous)


def test_a_machine_clock_is_corrected_by_the_reference_read_mid_round_trip(
    machine: MachineClock,
) -> None:
    sent = clock.own_now()
    assert clock.correct(T + TRIP / 2, sent, sent + TRIP) == -AHEAD
    assert clock.now() == T
    assert clock.own_now() == T + AHEAD
    assert clock.now_ms() == int(T.timestamp() * 1000)


def test_a_reading_within_the_round_trips_uncertainty_leaves_the_correction(
    machine: MachineClock,
) -> None:
    clock.correct(T + TRIP / 2, T + AHEAD, T + AHEAD + TRIP)
    noisy = TRIP / 2 + clock.TOLERANCE  # the reading may be anywhere in the trip
    assert clock.correct(T + TRIP / 2 + noisy, T + AHEAD, T + AHEAD + TRIP) == -AHEAD
    assert clock.correct(T + TRIP / 2 - noisy, T + AHEAD, T + AHEAD + TRIP) == -AHEAD


def test_a_reading_that_proves_the_correction_wrong_replaces_it(machine: MachineClock) -> None:
    clock.correct(T + TRIP / 2, T + AHEAD, T + AHEAD + TRIP)
    drift = TRIP / 2 + clock.TOLERANCE + timedelta(milliseconds=1)
    assert clock.correct(T + TRIP / 2 + drift, T + AHEAD, T + AHEAD + TRIP) == drift - AHEAD
    assert clock.now() == T + drift


def test_a_synchronised_clock_is_not_nudged_by_noise(machine: MachineClock) -> None:
    machine.at = T
    assert clock.correct(T + timedelta(milliseconds=3), T, T + timedelta(milliseconds=2)) == (
        timedelta(0)
    )
    assert clock.now() == T


def test_a_controlled_clock_is_never_corrected(machine: MachineClock) -> None:
    clock.correct(T + TRIP / 2, T + AHEAD, T + AHEAD + TRIP)
    with frozen_clock(T + AHEAD) as frozen:
        assert clock.correct(T, T + AHEAD, T + AHEAD) == timedelta(0)
        assert clock.now() == frozen.now() == T + AHEAD
    assert clock.now() == T, "the machine clock keeps its correction"


def test_an_offset_clock_is_corrected_unless_its_base_is_controlled(tmp_path: Path) -> None:
    from tests.testapp.clock import FileClock, OffsetClock

    assert not OffsetClock(clock.SystemClock(), 120).controlled
    assert OffsetClock(FileClock(tmp_path / "clock"), 120).controlled


def test_a_round_trip_that_ends_before_it_starts_is_refused(machine: MachineClock) -> None:
    with pytest.raises(ValueError, match="cannot end before it starts"):
        clock.correct(T, T + AHEAD, T)
