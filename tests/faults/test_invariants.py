"""The invariant checker itself: it passes a healthy database and names each kind of breakage
(a checker that cannot fail would make every fault test worthless)."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest

import django_inngest as inngest
from django_inngest import store
from django_inngest.core import clock, ids
from django_inngest.models import Event, FunctionRun, QueueItem
from django_inngest.runtime.claimed import route
from django_inngest.testing import drain
from tests.faults.invariants import check, duplicates
from tests.testapp.functions import client
from tests.testapp.models import SideEffect

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.faults]
LEASE = {"lease_seconds": 2.0, "sweep_seconds": 1.0}


def completed_runs(count: int) -> list[FunctionRun]:
    client.send_sync([inngest.Event(name="faults/steps", data={"n": n}) for n in range(count)])
    drain()
    runs = list(FunctionRun.objects.filter(function_id="e2e-faults-steps"))
    assert [run.status for run in runs] == ["COMPLETED"] * count
    return runs


def test_a_healthy_database_breaks_no_invariant() -> None:
    completed_runs(3)
    assert check(**LEASE) == []
    assert duplicates() == (0, 9)


def test_an_event_never_matched_is_reported() -> None:
    [event_id] = client.send_sync(inngest.Event(name="faults/steps"))
    [broken] = check(**LEASE)
    assert event_id in broken
    assert "never matched" in broken
    assert check(**LEASE, settle=False) == []


def test_an_event_that_started_no_run_or_two_is_reported() -> None:
    [run, _] = completed_runs(2)
    FunctionRun.objects.filter(id=run.id).delete()
    [broken] = check(**LEASE)
    assert "is in 0 runs of e2e-faults-steps" in broken


def test_a_run_without_its_queue_item_is_reported_lost() -> None:
    [run] = completed_runs(1)  # its queue item is gone with its end
    FunctionRun.objects.filter(id=run.id).update(status="RUNNING", ended_at=None)
    [broken] = check(**LEASE)
    assert f"run {run.id} (RUNNING) has not ended and has no queue item: lost" == broken


def test_a_lease_expired_longer_than_lease_plus_sweep_ago_is_reported() -> None:
    client.send_sync(inngest.Event(name="faults/steps"))
    picked = store.pick_up(
        route,
        "dead-worker",
        limit=1,
        now=clock.now(),
        lease_seconds=2.0,
        fan_out_limit=10,
    )
    [claimed] = picked.claimed
    assert check(**LEASE) == []
    QueueItem.objects.filter(run_id=claimed.run_id).update(
        lease_expires_at=clock.now() - timedelta(seconds=3.5)
    )
    [broken] = check(**LEASE)
    assert f"run {claimed.run_id} (RUNNING) is held by dead-worker" in broken


def test_a_step_body_run_more_often_than_lease_losses_allow_is_reported() -> None:
    [run] = completed_runs(1)
    SideEffect.objects.create(run_id=run.id, step="s1", pid=os.getpid(), at=time.time())
    assert check(**LEASE, kills=1) == []
    [broken] = check(**LEASE, kills=0)
    assert f"step 's1' of run {run.id} ran 2 times (at most 1 allowed)" == broken
    assert duplicates() == (1, 3)


def test_an_ended_run_without_end_time_or_with_two_finished_events_is_reported() -> None:
    [run] = completed_runs(1)
    finished = Event.objects.get(name="inngest/function.finished")
    Event.objects.create(
        id=ids.ulid(),
        name=finished.name,
        data=finished.data,
        ts=finished.ts,
        received_at=finished.received_at,
        pending=False,
    )
    FunctionRun.objects.filter(id=run.id).update(ended_at=None)
    assert sorted(check(**LEASE)) == [
        f"run {run.id} emitted 2 inngest/function.finished",
        f"run {run.id} is COMPLETED without ended_at",
    ]


def test_a_failure_without_an_error_is_reported() -> None:
    [run] = completed_runs(1)
    FunctionRun.objects.filter(id=run.id).update(status="FAILED", output=None)
    [broken] = check(**LEASE)
    assert f"run {run.id} failed without an error message" in broken
