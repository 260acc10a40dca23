"""pick_up: an idle worker matches an event and starts its run in the same transaction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

import django_inngest as inngest
from django_inngest import store
from django_inngest.core import clock
from django_inngest.models import FunctionRun, QueueItem
from django_inngest.worker import planner, route

pytestmark = pytest.mark.django_db


def pick_up(worker_id: str, limit: int = 10) -> store.PickUp:
    return store.pick_up(
        route,
        worker_id,
        limit=limit,
        now=clock.now(),
        lease_seconds=30,
        fan_out_limit=200,
        planner=planner,
    )


def function(client: inngest.Inngest, fn_id: str, event: str, **options: object) -> None:
    client.create_function(fn_id=fn_id, trigger=inngest.TriggerEvent(event=event), **options)(
        lambda ctx: None
    )


def test_the_run_an_idle_worker_creates_is_leased_to_it_with_its_event(
    inngest_client: inngest.Inngest,
) -> None:
    function(inngest_client, "f", "t")
    inngest_client.send_sync(inngest.Event(name="t", data={"k": 1}))
    picked = pick_up("me")
    run = FunctionRun.objects.get()
    assert [(c.run_id, c.function_id, c.memos) for c in picked.claimed] == [(run.id, "tests-f", {})]
    assert picked.claimed[0].events[0].data == {"k": 1}
    assert run.status == "RUNNING" and run.started_at is not None
    item = QueueItem.objects.get(run_id=run.id)
    assert item.lease_owner == "me" and item.lease_expires_at is not None
    assert pick_up("other").claimed == []


def test_runs_already_due_go_first_and_the_new_run_waits_for_a_claim(
    inngest_client: inngest.Inngest,
) -> None:
    function(inngest_client, "f", "t")
    inngest_client.send_sync(inngest.Event(name="t", data={"k": "old"}))
    store.fan_out(route, now=clock.now())
    old = FunctionRun.objects.get().id
    inngest_client.send_sync(inngest.Event(name="t", data={"k": "new"}))
    picked = pick_up("me", limit=1)
    assert [c.run_id for c in picked.claimed] == [old]
    new = FunctionRun.objects.exclude(id=old).get()
    assert new.status == "QUEUED"
    assert QueueItem.objects.get(run_id=new.id).lease_owner is None


def test_a_run_under_a_concurrency_limit_is_claimed_through_its_key_not_leased_as_created(
    inngest_client: inngest.Inngest,
) -> None:
    function(inngest_client, "f", "t", concurrency=[inngest.Concurrency(limit=1)])
    inngest_client.send_sync([inngest.Event(name="t"), inngest.Event(name="t")])
    picked = pick_up("me")
    assert len(picked.claimed) == 1
    assert sorted(FunctionRun.objects.values_list("status", flat=True)) == ["QUEUED", "RUNNING"]
    assert QueueItem.objects.filter(parked_on__isnull=False).count() == 1


def test_a_leased_run_with_a_finish_timeout_gets_its_timer_and_no_start_timer(
    inngest_client: inngest.Inngest,
) -> None:
    function(
        inngest_client,
        "f",
        "t",
        timeouts=inngest.Timeouts(start=timedelta(minutes=1), finish=timedelta(minutes=5)),
    )
    inngest_client.send_sync(inngest.Event(name="t"))
    assert len(pick_up("me").claimed) == 1
    kinds = sorted(QueueItem.objects.values_list("kind", flat=True))
    assert kinds == [QueueItem.Kind.FINISH_TIMEOUT, QueueItem.Kind.RUN]


def test_only_as_many_runs_as_free_slots_are_leased_and_the_rest_stay_queued(
    inngest_client: inngest.Inngest,
) -> None:
    function(inngest_client, "f", "t")
    inngest_client.send_sync([inngest.Event(name="t") for _ in range(3)])
    assert len(pick_up("me", limit=2).claimed) == 2
    assert sorted(FunctionRun.objects.values_list("status", flat=True)) == [
        "QUEUED",
        "RUNNING",
        "RUNNING",
    ]


def test_an_idle_worker_picks_up_an_event_without_a_claim(
    inngest_client: inngest.Inngest,
) -> None:
    """Read the events; write the run, its queue item (already leased) and mark the event, in
    one statement on PostgreSQL and three on SQLite."""
    function(inngest_client, "f", "t")
    inngest_client.send_sync(inngest.Event(name="t"))
    with CaptureQueriesContext(connections[store.alias()]) as captured:
        assert len(pick_up("me").claimed) == 1
    statements = [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == (2 if store.is_postgresql() else 4), statements
