"""Cron in real worker processes (DESIGN §5): racing workers fire each tick exactly once, and a
deploy that changes a schedule stops the old one in workers still running the old code.

Workers read the engine's time from a file the test moves (`tests.testapp.clock`), and declare
the function `e2e-cron` with the schedule given in TESTAPP_CRON.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from subprocess import Popen

import pytest
from django.db import connection

from django_inngest.core.schedule import rfc3339
from django_inngest.models import CronSchedule, CronTick, FunctionRun
from tests.e2e.conftest import ROOT, wait_until
from tests.testapp.clock import set_file_clock

pytestmark = [pytest.mark.e2e]
StartWorker = Callable[..., "Popen[bytes]"]

FIRST_TICK = datetime(2030, 1, 1, 0, 1, tzinfo=UTC)


def worker_log(index: int) -> Path:
    """The log `start_worker` writes for the `index`-th worker this test started."""
    return ROOT / "tests" / "artifacts" / f"worker-{index}-{os.getpid()}.log"


def wait_for_log(index: int, text: str) -> None:
    wait_until(lambda: text in worker_log(index).read_text(errors="replace"), timeout=30)


def start_cron_workers(
    start_worker: StartWorker, clock_file: Path, cron: str, count: int, first_index: int = 0
) -> list[Popen[bytes]]:
    indexes = range(first_index, first_index + count)
    workers = [
        start_worker(
            *("--worker-id", f"w{index}", "--concurrency", "4", "--poll-interval", "0.05"),
            TESTAPP_CLOCK_FILE=str(clock_file),
            TESTAPP_CRON=cron,
        )
        for index in indexes
    ]
    for index in indexes:
        wait_for_log(index, "cron scheduler started")
        assert "schedules=1" in worker_log(index).read_text()
    return workers


def test_racing_workers_start_exactly_one_run_for_each_of_sixty_ticks(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    """Four workers on PostgreSQL, two on SQLite; the clock moves one minute at a time."""
    count = 4 if connection.vendor == "postgresql" else 2
    clock_file = tmp_path / "clock"
    set_file_clock(clock_file, FIRST_TICK - timedelta(seconds=30))
    workers = start_cron_workers(start_worker, clock_file, "* * * * *", count)
    expected = [rfc3339(FIRST_TICK + timedelta(minutes=n)) for n in range(60)]
    for n in range(60):
        set_file_clock(clock_file, FIRST_TICK + timedelta(minutes=n))
        wait_until(lambda n=n: CronTick.objects.count() == n + 1, timeout=10)  # type: ignore[misc]
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").count() == 60, timeout=30)
    assert FunctionRun.objects.count() == 60
    assert sorted(FunctionRun.objects.values_list("event__user_id", flat=True)) == expected
    assert sorted(FunctionRun.objects.values_list("output", flat=True)) == expected
    assert CronTick.objects.values("fired_by").distinct().count() > 1, "the workers never raced"
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0


def test_a_running_worker_stops_firing_a_schedule_a_newly_started_worker_replaced(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    clock_file = tmp_path / "clock"
    set_file_clock(clock_file, FIRST_TICK - timedelta(seconds=30))
    start_cron_workers(start_worker, clock_file, "* * * * *", 1)
    set_file_clock(clock_file, FIRST_TICK)
    wait_until(lambda: CronTick.objects.count() == 1, timeout=10)

    set_file_clock(clock_file, FIRST_TICK + timedelta(seconds=30))
    start_cron_workers(start_worker, clock_file, "*/2 * * * *", 1, first_index=1)  # the deploy
    assert list(CronSchedule.objects.values_list("cron", flat=True)) == ["*/2 * * * *"]

    set_file_clock(clock_file, FIRST_TICK + timedelta(minutes=1))
    wait_for_log(0, "cron schedule removed by a newer deploy")
    wait_until(lambda: CronTick.objects.count() == 2, timeout=10)
    set_file_clock(clock_file, FIRST_TICK + timedelta(minutes=3))
    wait_until(lambda: CronTick.objects.count() == 3, timeout=10)
    ticks = CronTick.objects.order_by("scheduled_at").values_list(
        "scheduled_at", "cron", "fired_by"
    )
    assert [(rfc3339(at), cron, by) for at, cron, by in ticks] == [
        (rfc3339(FIRST_TICK), "* * * * *", "w0"),
        (rfc3339(FIRST_TICK + timedelta(minutes=1)), "*/2 * * * *", "w1"),
        (rfc3339(FIRST_TICK + timedelta(minutes=3)), "*/2 * * * *", "w1"),
    ]
