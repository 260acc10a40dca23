"""PostgreSQL reliability with real worker processes: a SIGKILLed worker loses no run, idle
workers leave the database alone, dropped connections are survived (DESIGN §5, §9)."""

from __future__ import annotations

import signal
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from subprocess import Popen

import pytest
from django.db import connection
from django.db.models import Count, Max, Min

import django_inngest as inngest
from django_inngest.models import FunctionRun, QueueItem, RunStep
from tests.e2e.conftest import wait_until
from tests.testapp.functions import client

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
StartWorker = Callable[..., "Popen[bytes]"]

LEASE, SWEEP = 4.0, 1.0
FAST_LEASES = {
    "INNGEST_LEASE_SECONDS": str(LEASE),
    "INNGEST_HEARTBEAT_SECONDS": "1",
    "INNGEST_SWEEP_SECONDS": str(SWEEP),
}


def test_a_killed_worker_loses_no_run_and_its_runs_resume_within_lease_plus_sweep(
    start_worker: StartWorker,
) -> None:
    client.send_sync([inngest.Event(name="e2e/five", data={"n": n, "ms": 2}) for n in range(2000)])
    workers = [
        start_worker("--concurrency", "10", "--worker-id", f"w{i}", **FAST_LEASES) for i in range(3)
    ]
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").count() >= 300, timeout=120)
    workers[0].send_signal(signal.SIGKILL)
    killed_at = datetime.now(UTC)
    workers[0].wait(10)
    held = set(QueueItem.objects.filter(lease_owner="w0").values_list("run_id", flat=True))
    assert held, "the killed worker held no run; the test proves nothing"

    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").count() == 2000, timeout=240)

    assert RunStep.objects.count() == 2000 * 5
    per_run = RunStep.objects.values("run_id").annotate(n=Count("id")).values_list("n", flat=True)
    assert set(per_run) == {5}
    assert not RunStep.objects.exclude(status="COMPLETED").exists()
    assert set(FunctionRun.objects.values_list("output", flat=True)) == {10}
    # The runs the dead worker held were picked up again within lease + sweep (+ scheduling slack).
    resumed = (
        RunStep.objects.filter(run_id__in=held, started_at__gt=killed_at)
        .values("run_id")
        .annotate(first=Min("started_at"))
    )
    waits = [row["first"] - killed_at for row in resumed]
    runs_ended = FunctionRun.objects.filter(id__in=held).aggregate(last=Max("ended_at"))["last"]
    assert runs_ended is not None
    assert max(waits, default=runs_ended - killed_at) <= timedelta(seconds=LEASE + SWEEP + 2)
    for worker in workers[1:]:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0


def _transactions() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(cursor.fetchone()[0])


def test_an_idle_worker_makes_at_most_about_one_query_per_second(start_worker: StartWorker) -> None:
    """Counted by PostgreSQL for the whole test database, over three windows: the median
    leaves out a window that autovacuum happened to visit."""
    worker = start_worker()
    time.sleep(12)  # start-up, and one stats flush interval
    rates = []
    for _ in range(3):
        before, started = _transactions(), time.monotonic()
        time.sleep(15)
        after, elapsed = _transactions(), time.monotonic() - started
        rates.append((after - before - 1) / elapsed)  # minus our own measurement
    assert statistics.median(rates) <= 1.0, f"transactions per second while idle: {rates}"
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def test_a_worker_survives_its_database_connections_being_dropped(
    start_worker: StartWorker,
) -> None:
    worker = start_worker("--poll-interval", "0.5")
    client.send_sync(inngest.Event(name="e2e/echo", data={"n": 1}))
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").count() == 1, timeout=30)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] >= 1
    client.send_sync(inngest.Event(name="e2e/echo", data={"n": 2}))
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").count() == 2, timeout=60)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def test_idle_workers_told_of_each_event_start_exactly_one_run_for_it(
    start_worker: StartWorker,
) -> None:
    """Every notification reaches both workers; each tries to take the event it describes in
    one statement, and the one that loses writes nothing."""
    workers = [start_worker("--concurrency", "5") for _ in range(2)]
    client.send_sync(inngest.Event(name="e2e/echo", data={"n": -1}))
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").exists(), timeout=30)
    time.sleep(1.0)  # both workers listening
    for n in range(40):
        client.send_sync(inngest.Event(name="e2e/echo", data={"n": n}))
        time.sleep(0.01)
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").count() == 41, timeout=60)
    time.sleep(0.5)  # a duplicate would show up by now
    runs = FunctionRun.objects.all()
    assert sorted(run.output["n"] for run in runs) == list(range(-1, 40))
    per_event = runs.values("event_id").annotate(n=Count("id")).values_list("n", flat=True)
    assert set(per_event) == {1}
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
