"""The engine's failures are not the user's (DESIGN §11): real worker processes whose database
connections are dropped lose no run and charge no attempt; a run that kills its worker every
time ends FAILED with `WorkerLostError` after MAX_LEASE_LOSSES losses instead of looping."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from subprocess import Popen

import pytest
from django.db import connection
from django.db.models import Count

import django_inngest as inngest
from django_inngest.models import FunctionRun, RunStep
from tests.e2e.conftest import wait_until
from tests.testapp.functions import client

pytestmark = [pytest.mark.e2e]
StartWorker = Callable[..., "Popen[bytes]"]

#: Runs (of five steps each) of the dropped-connection test; INFRA_E2E_RUNS scales it down on
#: a machine too loaded to run a thousand in time.
RUNS = int(os.environ.get("INFRA_E2E_RUNS", "1000"))
DROPS = 5


def _drop_worker_connections() -> int:
    """Terminate every connection to the test database but this test's own."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cursor.fetchone()[0])


def _completed() -> int:
    return FunctionRun.objects.filter(status="COMPLETED").count()


@pytest.mark.postgres
def test_dropping_every_worker_connection_five_times_fails_no_run_without_retries(
    start_worker: StartWorker,
) -> None:
    """retries=0: one charged attempt would end a run FAILED."""
    client.send_sync(
        [inngest.Event(name="e2e/five.once", data={"n": n, "ms": 1}) for n in range(RUNS)]
    )
    workers = [
        start_worker("--concurrency", "10", "--worker-id", f"w{i}", "--poll-interval", "1")
        for i in range(2)
    ]
    dropped = []
    for drop in range(DROPS):
        # Spread the drops over the whole test, each while runs are in the middle of steps.
        target = RUNS * (drop + 1) // (DROPS + 2)
        wait_until(lambda target=target: _completed() >= target, timeout=240)  # type: ignore[misc]
        dropped.append(_drop_worker_connections())
        assert dropped[-1] >= 2, f"drop {drop}: only {dropped[-1]} connections were terminated"
    wait_until(
        lambda: FunctionRun.objects.exclude(status__in=["QUEUED", "RUNNING"]).count() == RUNS,
        timeout=600,
    )

    assert list(FunctionRun.objects.filter(status="FAILED").values_list("output", flat=True)) == []
    assert _completed() == RUNS
    assert set(FunctionRun.objects.values_list("output", flat=True)) == {10}
    per_run = RunStep.objects.values("run_id").annotate(n=Count("id")).values_list("n", flat=True)
    assert set(per_run) == {5}
    assert not RunStep.objects.exclude(status="COMPLETED", attempts=1).exists()
    for worker in workers:
        assert worker.poll() is None, "a worker exited"
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    print(f"runs={RUNS} steps={RUNS * 5} connections terminated per drop={dropped}")


LEASE, SWEEP = 2.0, 0.5
FAST_LEASES = {
    "INNGEST_LEASE_SECONDS": str(LEASE),
    "INNGEST_HEARTBEAT_SECONDS": "0.5",
    "INNGEST_SWEEP_SECONDS": str(SWEEP),
}


def test_a_run_that_kills_its_worker_fails_with_worker_lost_after_five_losses(
    start_worker: StartWorker,
) -> None:
    """The other runs complete meanwhile; killed workers are restarted as a supervisor would."""
    client.send_sync(inngest.Event(name="e2e/kill-worker", data={}))
    client.send_sync([inngest.Event(name="e2e/five", data={"n": n, "ms": 5}) for n in range(100)])
    workers = [start_worker("--concurrency", "5", **FAST_LEASES) for _ in range(2)]
    kills = 0
    poisoned = FunctionRun.objects.filter(function_id="e2e-kills-its-worker")
    deadline = time.monotonic() + 240
    while not poisoned.exclude(status__in=["QUEUED", "RUNNING"]).exists():
        assert time.monotonic() < deadline, f"the poisonous run still runs after {kills} kills"
        for index, worker in enumerate(workers):
            if worker.poll() is not None:
                assert worker.returncode == -signal.SIGKILL
                kills += 1
                workers[index] = start_worker("--concurrency", "5", **FAST_LEASES)
        time.sleep(0.05)
    wait_until(lambda: _completed() == 100, timeout=120)

    run = poisoned.get()
    assert run.status == "FAILED"
    assert run.output["name"] == "WorkerLostError"
    assert "5 times" in run.output["message"]
    assert "'prepare'" in run.output["message"]
    assert kills == 5
    assert RunStep.objects.filter(run=run).count() == 1  # "prepare", kept; "crash" never ended
    assert all(worker.poll() is None for worker in workers), "a worker died with no poison left"
