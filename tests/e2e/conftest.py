"""Real worker processes against the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def start_worker(transactional_db: None) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `manage.py inngest_worker` processes on the test database; stop them at the end."""
    processes: list[subprocess.Popen[bytes]] = []
    files = []
    logs = ROOT / "tests" / "artifacts"
    logs.mkdir(exist_ok=True)

    def start(*args: str, **settings: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
            "PYTHONPATH": str(ROOT),
            **settings,
        }
        log = open(logs / f"worker-{len(processes)}-{os.getpid()}.log", "wb")  # noqa: SIM115
        files.append(log)
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "inngest_worker", *args],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(10)
    for log in files:
        log.close()
    connection.close()


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")
