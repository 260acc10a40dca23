"""Claiming with runs parked behind a saturated concurrency key (issue: flow control).

Puts N runs of a function with `Concurrency(limit=1)` behind one executing run, then times the
engine's claim of runs of another function (10 at a time), and the claim that parks one more
run of the saturated function. The claim must not slow down as N grows.

    python -m bench.claim_backlog            # PostgreSQL, database bench_claims
    DATABASE_URL=sqlite:////tmp/c.sqlite3 python -m bench.claim_backlog
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.setup import describe, fresh_database

SIZES = (0, 1_000, 10_000)
SAMPLES = 30
HERE = Path(__file__).resolve().parent
KEY = "f" * 40


def add_runs(function_id: str, count: int, *, parked: bool = False, leased: bool = False) -> None:
    from django_inngest.core import ids
    from django_inngest.models import FunctionRun, QueueItem

    now = datetime.now(UTC) - timedelta(seconds=1)
    for chunk in range(0, count, 5_000):
        runs = [
            FunctionRun(id=ids.ulid(), function_id=function_id, status="QUEUED", created_at=now)
            for _ in range(min(5_000, count - chunk))
        ]
        FunctionRun.objects.bulk_create(runs)
        QueueItem.objects.bulk_create(
            [
                QueueItem(
                    run=run,
                    available_at=now,
                    score=now,
                    ckey1=KEY if function_id == "bench-hog" else None,
                    climit1=1 if function_id == "bench-hog" else None,
                    parked_on=KEY if parked else None,
                    lease_owner="elsewhere" if leased else None,
                    lease_expires_at=now + timedelta(hours=1) if leased else None,
                )
                for run in runs
            ]
        )


def time_claim(expected: int) -> float:
    from django_inngest import store
    from django_inngest.models import QueueItem

    started = time.perf_counter()
    claimed = store.claim("bench", limit=10, now=datetime.now(UTC), lease_seconds=30)
    elapsed = (time.perf_counter() - started) * 1000
    assert len(claimed) == expected, (len(claimed), expected)
    QueueItem.objects.filter(lease_owner="bench").delete()
    return elapsed


def main() -> None:
    fresh_database("postgres://postgres@127.0.0.1:5432/bench_claims")
    from django.db import connection

    from django_inngest.models import QueueItem

    add_runs("bench-hog", 1, leased=True)
    rows, parked = [], 0
    for size in SIZES:
        add_runs("bench-hog", size - parked, parked=True)
        parked = size
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        other = []
        for _ in range(SAMPLES):
            add_runs("bench-other", 10)
            other.append(time_claim(10))
        parking = []
        for _ in range(SAMPLES):
            add_runs("bench-hog", 1)
            parking.append(time_claim(0))
        parked += SAMPLES
        assert QueueItem.objects.filter(parked_on=KEY).count() == parked
        rows.append((size, statistics.median(other), statistics.median(parking)))
        print(f"{size:>6} parked: claim of 10 others {rows[-1][1]:.2f} ms", file=sys.stderr)
    lines = [
        "# Claiming beside runs parked behind a concurrency limit",
        "",
        f"{describe()}. One run of a `Concurrency(limit=1)` function executes elsewhere; N more "
        f"wait, parked. Times are medians of {SAMPLES} claims.",
        "",
        "| runs parked | claim 10 runs of another function, ms | claim that parks one more run, ms |",
        "|---:|---:|---:|",
        *[f"| {size:,} | {other:.2f} | {parking:.2f} |" for size, other, parking in rows],
        "",
    ]
    output = HERE / "results" / f"claim_backlog_{connection.vendor}.md"
    output.parent.mkdir(exist_ok=True)
    output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
