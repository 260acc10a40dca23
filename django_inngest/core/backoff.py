"""Retry delays: Inngest's backoff table with jitter, and the clamp of `RetryAfterError`."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

#: Seconds to wait before retry k (k = failures so far); the last value repeats (SPEC §3.1).
INNGEST_TABLE: tuple[float, ...] = (15, 30, 60, 120, 300, 600, 1200, 2400, 3600, 7200)
DEFAULT_JITTER_SECONDS = 30.0
MIN_RETRY_AFTER = timedelta(seconds=1)
MAX_RETRY_AFTER = timedelta(hours=24)


def retry_delay(
    failures: int,
    table: Sequence[float] = INNGEST_TABLE,
    jitter_seconds: float = DEFAULT_JITTER_SECONDS,
    rng: random.Random | None = None,
) -> timedelta:
    """How long to wait after `failures` failed attempts (0-based) before the next one."""
    base = table[min(failures, len(table) - 1)]
    jitter = (rng or random).uniform(0, jitter_seconds) if jitter_seconds > 0 else 0.0
    return timedelta(seconds=base + jitter)


def clamp_retry_after(requested: datetime, now: datetime) -> datetime:
    """`RetryAfterError` times are kept within 1 s..24 h from now."""
    return min(max(requested, now + MIN_RETRY_AFTER), now + MAX_RETRY_AFTER)
