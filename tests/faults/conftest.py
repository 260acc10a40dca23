"""Fixtures of the fault suite: worker processes with short leases, parked at kill points."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import pytest

from django_inngest.models import FunctionRun
from tests.e2e.conftest import start_worker, wait_until
from tests.faults.invariants import assert_invariants

__all__ = ["FAST", "Killer", "killer", "start_worker"]

LEASE_SECONDS = 3.0
SWEEP_SECONDS = 0.5
#: Short leases and sweeps, so a killed worker's runs come back within seconds.
FAST = {
    "INNGEST_LEASE_SECONDS": str(LEASE_SECONDS),
    "INNGEST_HEARTBEAT_SECONDS": "0.5",
    "INNGEST_SWEEP_SECONDS": str(SWEEP_SECONDS),
}
WORKER_ARGS = ("--concurrency", "4", "--poll-interval", "0.05")
StartWorker = Callable[..., "Popen[bytes]"]


@dataclass
class Killer:
    """Starts workers parked at a kill point, kills them there, and starts their successors."""

    start_worker: StartWorker
    directory: Path
    kills: int = 0

    def start(self, **settings: str) -> Popen[bytes]:
        return self.start_worker(*WORKER_ARGS, **FAST, **settings)

    def park_at(self, point: str, **settings: str) -> Popen[bytes]:
        """A worker that parks at `point`; returns once it has."""
        marker = self.directory / f"parked-{point}-{self.kills}"
        worker = self.start(
            INNGEST_TEST_PARK_AT=point, INNGEST_TEST_PARK_MARKER=str(marker), **settings
        )

        def parked() -> bool:
            assert worker.poll() is None, f"the worker exited ({worker.returncode}) unparked"
            return marker.exists()

        wait_until(parked, timeout=60)
        assert marker.read_text() == point
        return worker

    def kill(self, worker: Popen[bytes]) -> None:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        self.kills += 1

    def kill_at(self, point: str, **settings: str) -> None:
        self.kill(self.park_at(point, **settings))

    def settle(self, runs: int, timeout: float = 90) -> list[FunctionRun]:
        """Wait until `runs` runs exist and all have ended; check the invariants."""

        def ended() -> bool:
            found = FunctionRun.objects.all()
            return found.count() >= runs and not found.active().exists()

        wait_until(ended, timeout=timeout)
        assert_invariants(
            lease_seconds=LEASE_SECONDS, sweep_seconds=SWEEP_SECONDS, kills=self.kills
        )
        return list(FunctionRun.objects.order_by("id"))


@pytest.fixture
def killer(start_worker: StartWorker, tmp_path: Path) -> Killer:
    return Killer(start_worker=start_worker, directory=tmp_path)
