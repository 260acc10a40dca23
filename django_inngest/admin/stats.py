"""Figures of the dashboard: runs started per time bucket by status, and run durations per
function (p50 / p95) over a window.

Windows are selected on the primary key (ULIDs sort by creation time). PostgreSQL computes
percentiles with `percentile_cont`; other databases get the same interpolation in Python.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connections
from django.db.models import Aggregate, Count, DurationField, ExpressionWrapper, F, QuerySet
from django.db.models.functions import TruncMinute

from django_inngest.admin.listing import created_since
from django_inngest.models import FunctionRun, RunStatus
from django_inngest.store import alias

SAMPLE_LIMIT = 100_000
"""Without percentile_cont, durations of at most this many recent runs are read."""


def runs_since(start: datetime) -> QuerySet[FunctionRun]:
    """Runs created at or after `start`."""
    return created_since(FunctionRun.objects.using(alias()), "created_at", start)


@dataclass(frozen=True, kw_only=True)
class Buckets:
    """Runs enqueued per bucket of `size` from `start`, by status."""

    start: datetime
    size: timedelta
    count: int
    by_status: dict[str, list[int]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """All runs counted, every status and bucket together."""
        return sum(sum(counts) for counts in self.by_status.values())

    def stacked(self, index: int) -> int:
        """The height of bucket `index` in the stacked chart: its runs of every status."""
        return sum(counts[index] for counts in self.by_status.values())

    def time_of(self, index: int) -> datetime:
        """When bucket `index` starts."""
        return self.start + self.size * index


def runs_per_bucket(*, now: datetime, window: timedelta, size: timedelta) -> Buckets:
    """Counts grouped by minute in the database, then summed into buckets of `size`."""
    count = math.ceil(window / size)
    end = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = end - size * count
    by_status: dict[str, list[int]] = {}
    rows = (
        runs_since(start)
        .annotate(minute=TruncMinute("created_at"))
        .values("minute", "status")
        .annotate(runs=Count("pk"))
        .order_by()
    )
    for row in rows:
        index = int((row["minute"] - start) / size)
        if 0 <= index < count:
            counts = by_status.setdefault(row["status"], [0] * count)
            counts[index] += row["runs"]
    ordered = {status: by_status[status] for status in RunStatus.values if status in by_status}
    return Buckets(start=start, size=size, count=count, by_status=ordered)


@dataclass(frozen=True, kw_only=True)
class Durations:
    """How long the runs of one function that ended took, from enqueue to end: the median and 95th
    percentile."""

    function_id: str
    runs: int
    p50: timedelta
    p95: timedelta


class PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(fraction) WITHIN GROUP (ORDER BY expression)``."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"

    def __init__(self, expression: Any, *, fraction: float) -> None:
        super().__init__(expression, fraction=float(fraction), output_field=DurationField())


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks, as ``percentile_cont`` does."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def durations(*, now: datetime, window: timedelta) -> list[Durations]:
    """p50 and p95 of started-to-ended time of the runs enqueued in the window that ended."""
    ended = runs_since(now - window).filter(ended_at__isnull=False, started_at__isnull=False)
    took = ExpressionWrapper(F("ended_at") - F("started_at"), output_field=DurationField())
    if connections[alias()].vendor == "postgresql":
        rows = (
            ended.values("function_id")
            .annotate(
                runs=Count("pk"),
                p50=PercentileCont(took, fraction=0.5),
                p95=PercentileCont(took, fraction=0.95),
            )
            .order_by()
        )
        return sorted(
            (
                Durations(function_id=r["function_id"], runs=r["runs"], p50=r["p50"], p95=r["p95"])
                for r in rows
            ),
            key=lambda row: row.function_id,  # the same order whatever the database's collation
        )
    samples: dict[str, list[float]] = {}
    for function_id, started_at, ended_at in ended.order_by("-pk").values_list(
        "function_id", "started_at", "ended_at"
    )[:SAMPLE_LIMIT]:
        if started_at is not None and ended_at is not None:  # the query excludes NULLs
            samples.setdefault(function_id, []).append((ended_at - started_at).total_seconds())
    return [
        Durations(
            function_id=function_id,
            runs=len(values),
            p50=timedelta(seconds=percentile(values, 0.5)),
            p95=timedelta(seconds=percentile(values, 0.95)),
        )
        for function_id, values in sorted(samples.items())
    ]


def counts_by_function(*, now: datetime, window: timedelta) -> dict[str, dict[str, int]]:
    """Runs enqueued in the window, per function and status."""
    counts: dict[str, dict[str, int]] = {}
    for row in (
        runs_since(now - window)
        .values("function_id", "status")
        .annotate(runs=Count("pk"))
        .order_by()
    ):
        counts.setdefault(row["function_id"], {})[row["status"]] = row["runs"]
    return counts
