"""Cancellation by events (SPEC §3.10, behaviours C1-C5, X5)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.core.checks import run_checks

import django_inngest as inngest
from django_inngest.core.clock import FrozenClock
from django_inngest.models import Event, FunctionRun, Pause
from django_inngest.runtime import Worker
from django_inngest.testing import drain

CANCEL = [inngest.Cancel(event="t.cancel", if_exp="event.data.id == async.data.id")]


def sleeper(client: inngest.Inngest, after: list[str], **options: Any) -> None:
    @client.create_function(
        fn_id="sleeper",
        trigger=inngest.TriggerEvent(event="t"),
        cancel=options.get("cancel", CANCEL),
        on_failure=lambda ctx: after.append("on_failure"),
    )
    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.sleep("nap", timedelta(seconds=60))
        step.run("after", lambda: after.append("after"))


@pytest.mark.django_db
def test_a_matching_cancel_event_cancels_a_sleeping_run(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """C3."""
    after: list[str] = []
    sleeper(inngest_client, after)
    inngest_client.send_sync(inngest.Event(name="t", data={"id": 123}))
    drain()
    inngest_client.send_sync(inngest.Event(name="t.cancel", data={"id": 123}))
    drain()
    run = FunctionRun.objects.get(function_id="tests-sleeper")
    assert run.status == "CANCELLED"
    clock.advance(timedelta(minutes=2))
    drain()
    assert after == []
    assert Event.objects.get(name="inngest/function.cancelled").user_id == run.id
    assert not Pause.objects.exists()


@pytest.mark.django_db
def test_a_cancel_event_that_does_not_match_leaves_the_run_alone(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """C2."""
    after: list[str] = []
    sleeper(inngest_client, after)
    inngest_client.send_sync(inngest.Event(name="t", data={"id": 123}))
    drain()
    inngest_client.send_sync(inngest.Event(name="t.cancel", data={"id": 456}))
    clock.advance(timedelta(minutes=1))
    drain()
    assert FunctionRun.objects.get(function_id="tests-sleeper").status == "COMPLETED"
    assert after == ["after"]
    assert not Pause.objects.exists(), "listeners go when the run ends"


@pytest.mark.django_db
def test_a_cancel_event_sent_before_the_trigger_does_not_cancel(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """C4."""
    after: list[str] = []
    sleeper(inngest_client, after)
    inngest_client.send_sync(
        [inngest.Event(name="t.cancel", data={"id": 1}), inngest.Event(name="t", data={"id": 1})]
    )
    clock.advance(timedelta(minutes=1))
    drain()
    clock.advance(timedelta(minutes=1))
    drain()
    assert FunctionRun.objects.get(function_id="tests-sleeper").status == "COMPLETED"


@pytest.mark.django_db
def test_a_cancel_event_after_the_listener_timeout_does_not_cancel(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """C5."""
    after: list[str] = []
    sleeper(
        inngest_client,
        after,
        cancel=[inngest.Cancel(event="t.cancel", timeout=timedelta(seconds=2))],
    )
    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    clock.advance(timedelta(seconds=4))
    inngest_client.send_sync(inngest.Event(name="t.cancel"))
    drain()
    assert FunctionRun.objects.get(function_id="tests-sleeper").status == "SLEEPING"


@pytest.mark.django_db
def test_a_cancel_event_in_the_same_batch_as_the_trigger_but_later_cancels(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    after: list[str] = []
    sleeper(inngest_client, after)
    inngest_client.send_sync(
        [inngest.Event(name="t", data={"id": 1}), inngest.Event(name="t.cancel", data={"id": 1})]
    )
    drain()
    assert FunctionRun.objects.get(function_id="tests-sleeper").status == "CANCELLED"


@pytest.mark.django_db
def test_macros_in_cancellation_expressions_fail_the_checks(
    inngest_client: inngest.Inngest,
) -> None:
    """X5: has() passes in a trigger but not in Cancel.if_exp."""
    inngest_client.create_function(
        fn_id="strict",
        trigger=inngest.TriggerEvent(event="t", expression="has(event.data.email)"),
        cancel=[inngest.Cancel(event="c", if_exp="has(async.data.email)")],
    )(lambda ctx: None)
    messages = [m.msg for m in run_checks(tags=["django_inngest"])]
    assert len(messages) == 1
    assert "Cancel.if_exp='has(async.data.email)': has() is not allowed" in messages[0]


@pytest.mark.django_db(transaction=True)
def test_a_run_cancelled_by_event_during_its_body_ends_cancelled_although_the_body_completes(
    inngest_client: inngest.Inngest,
) -> None:
    """C1 with a real worker: the body (no steps) completes, the run stays Cancelled."""
    entered, release = threading.Event(), threading.Event()
    completed: list[str] = []

    @inngest_client.create_function(
        fn_id="body", trigger=inngest.TriggerEvent(event="t"), cancel=CANCEL
    )
    def body(ctx: inngest.ContextSync) -> str:
        entered.set()
        release.wait(10)
        completed.append("body")
        return "finished"

    inngest_client.send_sync(inngest.Event(name="t", data={"id": 123}))
    worker = Worker(poll_interval=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        assert entered.wait(10)
        inngest_client.send_sync(inngest.Event(name="t.cancel", data={"id": 123}))
        deadline = threading.Event()
        for _ in range(200):
            if FunctionRun.objects.get().status == "CANCELLED":
                break
            deadline.wait(0.05)
        release.set()
    finally:
        worker.stop()
        thread.join(10)
    assert completed == ["body"]
    assert FunctionRun.objects.get().status == "CANCELLED"
