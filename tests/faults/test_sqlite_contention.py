"""SQLite under contention (DESIGN §9): 4 worker processes on one file while 2 other processes
send; no `database is locked` reaches a run or a sender, and nothing is lost.

The issue asks for 5,000 runs; CI runs FAULTS_SQLITE_RUNS (default 1,000) to keep its time.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Count

from django_inngest.models import FunctionRun, RunStep
from tests.e2e.conftest import ROOT, database_url, wait_until
from tests.faults.conftest import LEASE_SECONDS, SWEEP_SECONDS, Killer
from tests.faults.invariants import assert_invariants

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
RUNS = int(os.environ.get("FAULTS_SQLITE_RUNS", "1000"))


def test_four_workers_and_two_senders_on_one_file_lose_nothing_and_never_see_locked(
    killer: Killer, tmp_path: Path
) -> None:
    if connection.vendor != "sqlite":
        pytest.skip("SQLite's single writer; PostgreSQL's contention is the soak's")
    workers = [killer.start() for _ in range(4)]
    env = {**os.environ, "DATABASE_URL": database_url(), "PYTHONPATH": str(ROOT)}
    senders = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.faults.sender", str(RUNS // 2), "10", tag],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for tag in ("a", "b")
    ]
    for sender in senders:
        out, err = sender.communicate(timeout=600)
        assert sender.returncode == 0, err.decode()
        assert out.decode().strip() == f"sent {RUNS // 2} failed 0"
        assert b"locked" not in err
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").count() == RUNS, timeout=600)
    assert FunctionRun.objects.count() == RUNS
    assert set(FunctionRun.objects.values_list("attempt", flat=True)) == {0}
    assert not RunStep.objects.exclude(history=[]).exists(), "a step attempt failed"
    per_run = RunStep.objects.values("run_id").annotate(n=Count("id"))
    assert {row["n"] for row in per_run} == {3}
    assert_invariants(lease_seconds=LEASE_SECONDS, sweep_seconds=SWEEP_SECONDS)
    for worker in workers:
        worker.terminate()
        worker.wait(30)
    logs = [ROOT / "tests" / "artifacts" / f"worker-{n}-{os.getpid()}.log" for n in range(4)]
    locked = [log.name for log in logs if "database is locked" in log.read_text(errors="replace")]
    assert not locked, f"'database is locked' in {locked}"
