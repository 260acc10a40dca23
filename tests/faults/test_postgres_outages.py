"""PostgreSQL goes away while runs are in flight (`tests.faults.pg_restart`, on a scratch
cluster of its own): the server restarts, later every worker connection is terminated; the
workers reconnect by themselves and every run completes with the invariants intact."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.e2e.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.postgres]


@pytest.mark.skipif(
    shutil.which("initdb") is None or shutil.which("pg_ctl") is None,
    reason="needs initdb and pg_ctl for a scratch cluster (never the shared server)",
)
def test_a_server_restart_and_dropped_connections_lose_no_run() -> None:
    finished = subprocess.run(
        [sys.executable, "-m", "tests.faults.pg_restart", "--runs", "300", "--timeout", "240"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=480,
    )
    report = finished.stdout + finished.stderr
    assert finished.returncode == 0, report
    assert "runs completed: 300/300" in report
    assert "workers that exited: []" in report
