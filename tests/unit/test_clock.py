"""The controllable clock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

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
