"""PostgreSQL LISTEN through `INNGEST["LISTEN_DATABASE"]`, and the fallback to polling when
a worker's LISTEN connection never hears its own notification (as behind PgBouncer in
transaction mode)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen

import psycopg
import pytest
from django.db import connection

import django_inngest as inngest
from django_inngest.models import FunctionRun
from tests.e2e.conftest import ROOT, database_url, wait_until
from tests.testapp.functions import client

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
StartWorker = Callable[..., "Popen[bytes]"]
#: A database of this test's own: LISTEN there hears nothing sent to the test database.
ELSEWHERE = "di_fleet_listen_elsewhere"


def log_of(index: int) -> Callable[[], str]:
    """The log of the index-th worker the test started (see `start_worker`)."""
    path = ROOT / "tests" / "artifacts" / f"worker-{index}-{os.getpid()}.log"
    return lambda: Path(path).read_text(errors="replace") if path.exists() else ""


def completes_within(seconds: float) -> float:
    started = time.monotonic()
    before = FunctionRun.objects.filter(status="COMPLETED").count()
    client.send_sync(inngest.Event(name="e2e/echo", data={"n": before}))
    wait_until(
        lambda: FunctionRun.objects.filter(status="COMPLETED").count() > before, timeout=seconds
    )
    return time.monotonic() - started


def test_a_worker_listens_through_the_listen_database_alias(start_worker: StartWorker) -> None:
    worker = start_worker(LISTEN_DATABASE_URL=database_url())
    log = log_of(0)
    wait_until(lambda: "LISTEN works database=listen" in log(), timeout=60)
    assert completes_within(5.0) < 5.0  # woken by NOTIFY: the fallback poll is 10 s
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0


def test_a_worker_whose_listen_hears_nothing_polls_and_says_so_once(
    start_worker: StartWorker,
) -> None:
    settings = connection.settings_dict
    with psycopg.connect(
        dbname=settings["NAME"],
        user=settings["USER"],
        host=settings["HOST"],
        port=settings["PORT"] or 5432,
        password=settings["PASSWORD"] or None,
        autocommit=True,
    ) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [ELSEWHERE])
        if exists.fetchone() is None:
            admin.execute(f"CREATE DATABASE {ELSEWHERE}")
    elsewhere = database_url().rsplit("/", 1)[0] + f"/{ELSEWHERE}"
    worker = start_worker(LISTEN_DATABASE_URL=elsewhere)
    log = log_of(0)
    wait_until(lambda: "received none of this worker's notifications" in log(), timeout=60)
    for _ in range(3):
        assert completes_within(15.0) < 5.0  # polled every 2 s, not every 10 s
    assert log().count("received none of this worker's notifications") == 1
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
