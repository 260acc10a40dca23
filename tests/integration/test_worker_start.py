"""A worker that cannot load its cron schedules says so with one traceback, then one line per
retry at growing intervals, and starts its scheduler once the database answers (issue 18)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

import pytest
from django.db import OperationalError

import django_inngest as inngest
from django_inngest.runtime import Worker
from django_inngest.runtime import housekeeping as worker_module
from django_inngest.runtime.scheduler import CronScheduler

pytestmark = pytest.mark.django_db(transaction=True)


def test_cron_schedules_that_cannot_load_are_retried_with_one_traceback(
    inngest_client: inngest.Inngest,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    @inngest_client.create_function(fn_id="hourly", trigger=inngest.TriggerCron(cron="0 * * * *"))
    def hourly(ctx: inngest.ContextSync) -> None:
        return None

    failures = iter([True, True, True])
    start = CronScheduler.start

    def flaky_start(self: CronScheduler, now: datetime) -> Any:
        if next(failures, False):
            raise OperationalError("server closed the connection unexpectedly")
        return start(self, now)

    monkeypatch.setattr(CronScheduler, "start", flaky_start)
    monkeypatch.setattr(worker_module, "CRON_RETRY_SECONDS", (0.05, 0.1))
    worker = Worker(poll_interval=0.05)
    thread = threading.Thread(target=worker.run)
    with caplog.at_level(logging.INFO, logger="django_inngest.worker"):
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not any(
                r.getMessage().startswith("cron scheduler started") for r in caplog.records
            ):
                time.sleep(0.05)
        finally:
            worker.stop()
            thread.join(30)
    retries = [r for r in caplog.records if r.getMessage().startswith("cannot load cron")]
    assert [bool(r.exc_info) for r in retries] == [True, False, False]
    assert retries[0].getMessage() == (
        "cannot load cron schedules (server closed the connection unexpectedly); "
        "will try again in 0s"
    )
    assert any(r.getMessage().endswith("schedules=1") for r in caplog.records)
