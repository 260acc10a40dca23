"""Retry delays (SPEC §3.1)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from django_inngest.core.backoff import clamp_retry_after, retry_delay


def test_the_default_table_waits_15s_then_doubles_with_up_to_30s_of_jitter() -> None:
    """E4: gaps between attempts 1→2→3 fall in [15 s, 45 s) and [30 s, 60 s)."""
    rng = random.Random(7)
    for _ in range(200):
        assert timedelta(seconds=15) <= retry_delay(0, rng=rng) < timedelta(seconds=45)
        assert timedelta(seconds=30) <= retry_delay(1, rng=rng) < timedelta(seconds=60)
    assert retry_delay(50, jitter_seconds=0) == timedelta(hours=2)


def test_a_custom_table_repeats_its_last_value() -> None:
    assert retry_delay(0, (0,), 0) == timedelta(0)
    assert retry_delay(9, (1, 2), 0) == timedelta(seconds=2)


def test_retry_after_is_clamped_between_one_second_and_a_day() -> None:
    """E9."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert clamp_retry_after(now + timedelta(hours=48), now) == now + timedelta(hours=24)
    assert clamp_retry_after(now + timedelta(milliseconds=10), now) == now + timedelta(seconds=1)
    assert clamp_retry_after(now + timedelta(minutes=3), now) == now + timedelta(minutes=3)
