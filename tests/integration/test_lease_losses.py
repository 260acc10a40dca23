"""Crash loops end: a run whose lease is lost MAX_LEASE_LOSSES times without a new step result
ends FAILED with `WorkerLostError`; progress starts the count again; a worker is given at most
one run that lost its lease before, to run alone (DESIGN §11)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from django.core import checks
from django.test import Client

import django_inngest as inngest
from django_inngest import store
from django_inngest.core import clock, ids
from django_inngest.core.engine import StepRecord
from django_inngest.models import FunctionRun, QueueItem, RunStep
from django_inngest.runtime.claimed import route
from django_inngest.runtime.outcomes import sweep_leases
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db


def queued_runs(client: inngest.Inngest, count: int = 1) -> list[str]:
    @client.create_function(
        fn_id="f",
        trigger=inngest.TriggerEvent(event="t"),
        on_failure=lambda ctx: ctx.event.data["error"]["name"],
    )
    def f(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        step.run("first", lambda: 1)
        step.run("second", lambda: 2)
        return "done"

    client.send_sync([inngest.Event(name="t") for _ in range(count)])
    store.fan_out(route, now=clock.now())
    return list(FunctionRun.objects.order_by("id").values_list("id", flat=True))


def claim(worker_id: str, limit: int = 10) -> list[str]:
    claimed = store.claim(worker_id, limit=limit, now=clock.now(), lease_seconds=30)
    return [run.run_id for run in claimed]


def lose_worker(worker_id: str) -> int:
    """The worker holding the runs died: its leases expire, another worker's sweep finds them."""
    assert claim(worker_id), "nothing to lose"
    QueueItem.objects.filter(lease_owner=worker_id).update(
        lease_expires_at=datetime(2000, 1, 1, tzinfo=UTC)
    )
    return sweep_leases("sweeper")


def complete_step(run_id: str, worker_id: str, step_id: str) -> None:
    store.save_step(
        run_id,
        worker_id,
        StepRecord(
            hashed_id=ids.hash_step_id(step_id),
            step_id=step_id,
            index=0,
            op="run",
            status="COMPLETED",
            output=1,
            started_at=clock.now(),
            ended_at=clock.now(),
        ),
    )


def test_a_run_lost_five_times_without_progress_fails_with_worker_lost_and_starts_on_failure(
    inngest_client: inngest.Inngest,
) -> None:
    [run_id] = queued_runs(inngest_client)
    for loss in range(1, 5):
        assert lose_worker(f"w{loss}") == 1
        assert QueueItem.objects.get(run_id=run_id).lease_losses == loss
        assert FunctionRun.objects.get(id=run_id).status == "QUEUED"
    lose_worker("w5")
    run = FunctionRun.objects.get(id=run_id)
    assert run.status == "FAILED"
    assert run.output == {
        "code": "worker_lost",
        "message": "the worker running this run was lost 5 times without the run making "
        "progress, each time before its first step completed; the code that follows may be "
        "killing the worker process (out of memory, a crash) or stopping its heartbeats",
        "name": "WorkerLostError",
        "stack": None,
    }
    assert not QueueItem.objects.filter(run_id=run_id).exists()
    drain()
    handler = FunctionRun.objects.get(function_id="tests-f-failure")
    assert (handler.status, handler.output) == ("COMPLETED", "WorkerLostError")


def test_a_step_result_between_losses_starts_the_count_again(
    inngest_client: inngest.Inngest,
) -> None:
    [run_id] = queued_runs(inngest_client)
    for loss in range(4):
        lose_worker(f"w{loss}")
    claim("w4")
    complete_step(run_id, "w4", "first")
    QueueItem.objects.filter(lease_owner="w4").update(
        lease_expires_at=datetime(2000, 1, 1, tzinfo=UTC)
    )
    sweep_leases("sweeper")
    assert QueueItem.objects.get(run_id=run_id).lease_losses == 1
    for loss in range(2, 5):
        lose_worker(f"v{loss}")
    assert FunctionRun.objects.get(id=run_id).status == "QUEUED"
    lose_worker("v5")
    run = FunctionRun.objects.get(id=run_id)
    assert (run.status, run.output["name"]) == ("FAILED", "WorkerLostError")
    assert "each time after step 'first', its last completed step" in run.output["message"]


def test_max_lease_losses_is_a_setting(inngest_client: inngest.Inngest, settings: Any) -> None:
    settings.INNGEST = {**settings.INNGEST, "MAX_LEASE_LOSSES": 1}
    [run_id] = queued_runs(inngest_client)
    lose_worker("w")
    assert FunctionRun.objects.get(id=run_id).status == "FAILED"


def test_a_claim_gives_a_worker_at_most_one_run_that_lost_its_lease_before(
    inngest_client: inngest.Inngest,
) -> None:
    """The worker runs it alone; the others are left in the queue for other workers."""
    runs = queued_runs(inngest_client, 3)
    assert lose_worker("crashed") == 3
    taken = store.claim("a", limit=10, now=clock.now(), lease_seconds=30)
    assert [(run.run_id, run.lease_losses) for run in taken] == [(runs[0], 1)]
    assert claim("b") == [runs[1]]
    assert claim("c") == [runs[2]]


def test_finishing_a_run_normally_is_unaffected_by_its_earlier_losses(
    inngest_client: inngest.Inngest,
) -> None:
    [run_id] = queued_runs(inngest_client)
    for loss in range(4):
        lose_worker(f"w{loss}")
    drain()
    run = FunctionRun.objects.get(id=run_id)
    assert (run.status, run.output) == ("COMPLETED", "done")


@pytest.mark.parametrize("value", [0, -1, "5", True, 2.5])
def test_a_bad_max_lease_losses_fails_the_system_check_naming_the_value(
    settings: Any, value: object
) -> None:
    settings.INNGEST = {**settings.INNGEST, "MAX_LEASE_LOSSES": value}
    errors = [
        message
        for message in checks.run_checks(tags=["django_inngest"])
        if message.id == "django_inngest.E001"
    ]
    assert len(errors) == 1
    assert f"INNGEST['MAX_LEASE_LOSSES']={value!r}" in errors[0].msg


def test_the_admin_shows_a_lost_run_like_any_failure_with_rerun_and_retry_from_its_last_step(
    inngest_client: inngest.Inngest, admin_client: Client
) -> None:
    [run_id] = queued_runs(inngest_client)
    claim("w0")
    complete_step(run_id, "w0", "first")
    QueueItem.objects.update(lease_expires_at=datetime(2000, 1, 1, tzinfo=UTC))
    sweep_leases("sweeper")
    for loss in range(1, 5):
        lose_worker(f"w{loss}")
    url = f"/admin/django_inngest/functionrun/{run_id}/"
    html = admin_client.get(f"{url}change/").content.decode()
    assert "WorkerLostError" in html
    assert 'id="rerun-run"' in html
    assert "Retry from step “first”" in html

    admin_client.post(f"{url}retry/")
    retried = FunctionRun.objects.get(original_run_id=run_id)
    assert list(RunStep.objects.filter(run=retried).values_list("step_id", flat=True)) == []
    drain()
    retried.refresh_from_db()
    assert (retried.status, retried.output) == ("COMPLETED", "done")
