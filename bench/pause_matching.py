"""How long matching one incoming event takes with many runs waiting (issue: waits by index).

Fills a fresh database with N runs, each waiting (`step.wait_for_event`) for its own order id
in the indexed form `event.data.order_id == async.data.order_id`, then times the engine's
fan-out of single matching events (each resumes exactly one run) and of a non-matching one.

    python -m bench.pause_matching            # PostgreSQL, database bench_pauses
    DATABASE_URL=sqlite:////tmp/p.sqlite3 python -m bench.pause_matching

Writes a markdown table to bench/results/pause_matching.md.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

SIZES = (1_000, 10_000, 100_000)
SAMPLES = 50
HERE = Path(__file__).resolve().parent

from bench.setup import describe, fresh_database  # noqa: E402


def add_waiting_runs(start: int, stop: int) -> None:
    """Runs `start..stop-1`, each with a pause for its own order id, written in bulk."""
    from django_inngest.core import ids
    from django_inngest.core.expressions import compile_expression
    from django_inngest.models import FunctionRun, Pause

    expression = "event.data.order_id == async.data.order_id"
    compiled = compile_expression(expression)
    now = datetime.now(UTC)
    for chunk in range(start, stop, 5_000):
        runs, pauses = [], []
        for n in range(chunk, min(stop, chunk + 5_000)):
            trigger = {
                "name": "order.created",
                "data": {"order_id": n},
                "id": f"e{n}",
                "ts": 0,
                "user": {},
            }
            run = FunctionRun(
                id=ids.ulid(), function_id="bench-await", status="WAITING", created_at=now
            )
            runs.append(run)
            pauses.append(
                Pause(
                    kind="wait",
                    run=run,
                    hashed_id=ids.hash_step_id("paid"),
                    event_name="order.paid",
                    expression=expression,
                    match_key=compiled.index_key(trigger),
                    trigger_event=trigger,
                    after_receipt=0,
                    expires_at=now + timedelta(days=1),
                )
            )
        FunctionRun.objects.bulk_create(runs)
        Pause.objects.bulk_create(pauses)


def time_event(order_id: int) -> float:
    from django_inngest import store
    from django_inngest.client import Inngest

    Inngest(app_id="bench").send_sync(_paid(order_id))
    started = time.perf_counter()
    store.fan_out(lambda event, event_id: [], now=datetime.now(UTC))
    return (time.perf_counter() - started) * 1000


def _paid(order_id: int) -> object:
    import django_inngest as inngest

    return inngest.Event(name="order.paid", data={"order_id": order_id})


def main() -> None:
    fresh_database("postgres://postgres@127.0.0.1:5432/bench_pauses")
    from django.db import connection

    from django_inngest.models import Pause

    rows = []
    filled = consumed = 0
    for size in SIZES:
        add_waiting_runs(filled, size)
        fresh, filled = filled, size
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        step = max(1, (size - fresh) // SAMPLES)
        matching = [time_event(order_id) for order_id in range(fresh, size, step)[:SAMPLES]]
        missing = [time_event(size * 10 + n) for n in range(SAMPLES)]
        consumed += len(matching)
        assert Pause.objects.count() == size - consumed, "each matching event resumes one run"
        rows.append((size, statistics.median(matching), max(matching), statistics.median(missing)))
        print(
            f"{size:>8} pending waits: {statistics.median(matching):.2f} ms per matching event",
            file=sys.stderr,
        )

    lines = [
        "# Matching an incoming event against pending waits",
        "",
        f"{describe()}. Each matching event resumes one run waiting in the indexed form "
        "`event.data.order_id == async.data.order_id`; the time is the engine's whole fan-out "
        f"transaction for that event (median of {SAMPLES}).",
        "",
        "| pending waits | matching event, median ms | matching event, max ms | non-matching event, median ms |",
        "|---:|---:|---:|---:|",
        *[
            f"| {size:,} | {median:.2f} | {worst:.2f} | {missing:.2f} |"
            for size, median, worst, missing in rows
        ],
        "",
    ]
    output = HERE / "results" / f"pause_matching_{connection.vendor}.md"
    output.parent.mkdir(exist_ok=True)
    output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
