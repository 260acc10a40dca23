"""Worker processes: several share the work, SIGTERM is graceful, a second signal is not,
burst mode exits (DESIGN §5, §7, §9)."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from subprocess import Popen

import pytest
from django.db import connection
from django.db.models import Count

import django_inngest as inngest
from django_inngest.models import Event as StoredEvent
from django_inngest.models import FunctionRun, RunStep
from tests.e2e.conftest import wait_until
from tests.testapp.functions import client

pytestmark = [pytest.mark.e2e]
StartWorker = Callable[..., "Popen[bytes]"]


def test_two_workers_complete_every_run_with_one_result_per_step(start_worker: StartWorker) -> None:
    client.send_sync([inngest.Event(name="e2e/five", data={"n": n}) for n in range(300)])
    workers = [start_worker("--concurrency", "5") for _ in range(2)]
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").count() == 300, timeout=120)
    assert set(FunctionRun.objects.values_list("output", flat=True)) == {10}
    per_run = RunStep.objects.values("run_id").annotate(n=Count("id")).values_list("n", flat=True)
    assert list(set(per_run)) == [5]
    assert RunStep.objects.count() == 1500
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0


def test_sigterm_lets_the_current_run_finish_then_exits_cleanly(start_worker: StartWorker) -> None:
    worker = start_worker()
    client.send_sync(inngest.Event(name="e2e/slow", data={"seconds": 1.5}))
    wait_until(lambda: FunctionRun.objects.filter(status="RUNNING").exists(), timeout=30)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    run = FunctionRun.objects.get()
    assert (run.status, run.output) == ("COMPLETED", "finished")


def test_a_second_signal_exits_at_once_and_the_run_is_left_for_another_worker(
    start_worker: StartWorker,
) -> None:
    worker = start_worker()
    client.send_sync(inngest.Event(name="e2e/slow", data={"seconds": 60}))
    wait_until(lambda: FunctionRun.objects.filter(status="RUNNING").exists(), timeout=30)
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(10) != 0
    assert time.monotonic() - started < 5
    assert FunctionRun.objects.get().status == "RUNNING"


def test_burst_mode_processes_what_is_due_and_exits(start_worker: StartWorker) -> None:
    client.send_sync([inngest.Event(name="e2e/echo", data={"n": n}) for n in range(5)])
    worker = start_worker("--burst")
    assert worker.wait(60) == 0
    assert sorted(r["n"] for r in FunctionRun.objects.values_list("output", flat=True)) == list(
        range(5)
    )


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's file notifications")
def test_an_idle_sqlite_worker_is_woken_by_the_file_system_not_by_its_poll(
    start_worker: StartWorker,
) -> None:
    """With a 60 s poll, only the notification that the database file changed can start the
    second run within seconds."""
    start_worker(INNGEST_POLL_INTERVAL="60")
    client.send_sync(inngest.Event(name="e2e/echo", data={"n": 1}))
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").count() == 1, timeout=60)
    time.sleep(0.5)  # the worker has gone back to its idle wait
    client.send_sync(inngest.Event(name="e2e/echo", data={"n": 2}))
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").count() == 2, timeout=20)


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's file notifications")
def test_sends_while_an_idle_sqlite_worker_watches_the_files_are_all_kept(
    start_worker: StartWorker,
) -> None:
    """The watcher must never disturb SQLite's own locks (a descriptor of the database's files
    closed in the worker's process drops them), or a sender's commit can be lost."""
    start_worker()
    client.send_sync(inngest.Event(name="e2e/echo", data={"n": -1}))
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").exists(), timeout=60)
    for n in range(150):
        client.send_sync(inngest.Event(name="e2e/echo", data={"n": n}))
        time.sleep(random.uniform(0.0, 0.02))
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").count() == 151, timeout=120)
    assert StoredEvent.objects.filter(name="e2e/echo").count() == 151
