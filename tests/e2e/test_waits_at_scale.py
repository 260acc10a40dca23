"""Many runs waiting for their own event, resumed by real workers (DESIGN §5 Pauses)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from subprocess import Popen

import pytest
from django.db.models import Count

import django_inngest as inngest
from django_inngest.models import FunctionRun, Pause, RunStep
from tests.e2e.conftest import wait_until
from tests.testapp.functions import client

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
StartWorker = Callable[..., "Popen[bytes]"]


def test_a_thousand_waiting_runs_each_resume_once_with_their_own_event(
    start_worker: StartWorker,
) -> None:
    client.send_sync(
        [inngest.Event(name="e2e/order.created", data={"order_id": n}) for n in range(1000)]
    )
    workers = [start_worker("--concurrency", "10") for _ in range(2)]
    wait_until(lambda: FunctionRun.objects.filter(status="WAITING").count() == 1000, timeout=120)
    assert Pause.objects.filter(match_key__isnull=False).count() == 1000

    client.send_sync(
        [inngest.Event(name="e2e/order.paid", data={"order_id": n}) for n in range(1000)]
    )
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").count() == 1000, timeout=120)

    for run in FunctionRun.objects.select_related("event"):
        assert run.output == run.event.data["order_id"]  # type: ignore[union-attr]
    per_run = RunStep.objects.values("run_id").annotate(n=Count("id")).values_list("n", flat=True)
    assert set(per_run) == {1}
    assert RunStep.objects.filter(status="COMPLETED").count() == 1000
    assert not Pause.objects.exists()
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
