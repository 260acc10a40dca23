"""Deploys with real worker processes: routing follows the newest app sync, not the process
that matches an event; a worker claims only runs of the functions it serves (DESIGN §11)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from subprocess import Popen

import pytest

import django_inngest as inngest
from django_inngest.models import AppSync, Event, FunctionRun, WorkerRecord
from tests.e2e.conftest import wait_until
from tests.testapp.functions import client

pytestmark = [pytest.mark.e2e]
StartWorker = Callable[..., "Popen[bytes]"]
F, G = "e2e-fleet-f", "e2e-fleet-g"
WITH_G = {"TESTAPP_FLEET_G": "1"}


def _synced_by(worker: Popen[bytes]) -> Callable[[], bool]:
    """Whether `worker` has recorded its row, after syncing its apps."""
    return lambda: WorkerRecord.objects.filter(pid=worker.pid).exists()


def _runs(function_id: str, status: str | None = None) -> int:
    runs = FunctionRun.objects.filter(function_id=function_id)
    return (runs.filter(status=status) if status else runs).count()


def _send(name: str, count: int, **data: object) -> None:
    client.send_sync([inngest.Event(name=name, data={"n": n, **data}) for n in range(count)])


def test_a_new_function_runs_only_on_workers_that_have_it_and_waits_for_them(
    start_worker: StartWorker,
) -> None:
    """A serves {F}; B serves {F, G} and started last: G's runs are all B's, whoever matches
    its events; with B gone, G's new runs wait QUEUED and complete when B is back."""
    a = start_worker("--concurrency", "4")
    wait_until(_synced_by(a), timeout=60)
    b = start_worker("--concurrency", "4", **WITH_G)
    wait_until(_synced_by(b), timeout=60)
    for _ in range(4):  # in turns, while both run
        _send("e2e/fleet.g", 50)
        _send("e2e/fleet.f", 50)
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").count() == 400, timeout=180)
    assert (_runs(F), _runs(G)) == (200, 200)
    g_pids = {
        run["pid"]
        for run in FunctionRun.objects.filter(function_id=G).values_list("output", flat=True)
    }
    assert g_pids == {b.pid}

    b.send_signal(signal.SIGTERM)
    assert b.wait(30) == 0
    _send("e2e/fleet.g", 50)
    wait_until(lambda: not Event.objects.filter(pending=True).exists(), timeout=60)
    wait_until(lambda: _runs(G, "QUEUED") == 50, timeout=30)
    time.sleep(1.0)  # A had time to take them, if it would
    assert _runs(G, "QUEUED") == 50
    assert not FunctionRun.objects.filter(status__in=["FAILED", "RUNNING"]).exists()

    again = start_worker("--concurrency", "4", **WITH_G)
    wait_until(lambda: _runs(G, "COMPLETED") == 250, timeout=120)
    assert _runs(G) == 250
    assert {
        run["pid"]
        for run in FunctionRun.objects.filter(function_id=G).values_list("output", flat=True)
    } == {b.pid, again.pid}
    for worker in (a, again):
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    assert not WorkerRecord.objects.exists()  # a graceful stop deletes the worker's row


def test_a_rollback_stops_new_runs_and_old_workers_finish_or_orphan_the_rest(
    start_worker: StartWorker,
) -> None:
    """B' without G starts last: new G events start nothing; G's queued runs are finished by
    B while it lives, and fail with FunctionNotFound once it has been gone for the grace."""
    fast = {"INNGEST_ORPHAN_GRACE_SECONDS": "2", "INNGEST_SWEEP_SECONDS": "0.5"}
    b = start_worker("--concurrency", "1", **WITH_G, **fast)
    wait_until(_synced_by(b), timeout=60)
    _send("e2e/fleet.g", 8, seconds=2)  # 16 s of work for B, whatever B' takes to start
    wait_until(lambda: _runs(G) == 8, timeout=60)

    rolled_back = start_worker("--concurrency", "4", **fast)
    wait_until(_synced_by(rolled_back), timeout=60)
    assert AppSync.objects.filter(app_id="e2e").latest("id").synced_by.split(":")[1] == str(
        rolled_back.pid
    )
    _send("e2e/fleet.g", 5)
    wait_until(lambda: not Event.objects.filter(pending=True).exists(), timeout=60)
    assert _runs(G) == 8  # the new events started nothing

    finished_before = _runs(G, "COMPLETED")
    wait_until(lambda: _runs(G, "COMPLETED") >= finished_before + 1, timeout=60)
    assert _runs(G, "FAILED") == 0  # B, alive, finishes G's runs
    b.send_signal(signal.SIGTERM)
    assert b.wait(30) == 0
    left = 8 - _runs(G, "COMPLETED")
    assert left >= 1, "B finished everything before it stopped; make G slower"
    wait_until(lambda: _runs(G, "FAILED") == left, timeout=60)
    failed = FunctionRun.objects.filter(function_id=G, status="FAILED")
    assert {run.output["name"] for run in failed} == {"FunctionNotFound"}
    assert {
        run["pid"]
        for run in FunctionRun.objects.filter(function_id=G, status="COMPLETED").values_list(
            "output", flat=True
        )
    } == {b.pid}
