"""on_failure, system events and event-id de-duplication (SPEC §3.9, §3.13; E14-E17, F12)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync

import django_inngest as inngest
from django_inngest.core.clock import FrozenClock
from django_inngest.core.errors import InvalidEventError
from django_inngest.models import Event, FunctionRun
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db


class MyError(Exception):
    pass


def test_on_failure_runs_once_in_its_own_run_with_the_failure_event(
    inngest_client: inngest.Inngest,
) -> None:
    """E14."""
    seen: list[Any] = []

    def on_failure(ctx: inngest.ContextSync) -> None:
        seen.append((ctx.event, ctx.events, ctx.attempt, ctx.run_id))

    @inngest_client.create_function(
        fn_id="fails", trigger=inngest.TriggerEvent(event="t"), retries=0, on_failure=on_failure
    )
    def fails(ctx: inngest.ContextSync) -> None:
        raise MyError("intentional failure")

    inngest_client.send_sync(inngest.Event(name="t", data={"foo": 1}))
    drain()
    failed_run = FunctionRun.objects.get(function_id="tests-fails")
    assert failed_run.status == "FAILED"
    [(event, events, attempt, run_id)] = seen
    assert run_id != failed_run.id
    assert event.name == "inngest/function.failed"
    assert event.id == failed_run.id
    assert event.data["function_id"] == "tests-fails"
    assert event.data["run_id"] == failed_run.id
    assert event.data["event"]["data"] == {"foo": 1}
    assert event.data["event"]["id"] != "" and event.data["event"]["ts"] > 0
    assert event.data["error"]["message"] == "intentional failure"
    assert event.data["error"]["name"] == "MyError"
    assert isinstance(event.data["error"]["stack"], str)
    assert (attempt, events) == (0, [event])
    assert FunctionRun.objects.get(function_id="tests-fails-failure").status == "COMPLETED"


def test_on_failure_is_not_called_for_completed_runs_and_is_not_retried(
    inngest_client: inngest.Inngest,
) -> None:
    """E15."""
    calls: list[str] = []

    def on_failure(ctx: inngest.ContextSync) -> None:
        calls.append(ctx.event.data["run_id"])
        raise RuntimeError("the failure handler fails too")

    @inngest_client.create_function(
        fn_id="maybe", trigger=inngest.TriggerEvent(event="t"), retries=0, on_failure=on_failure
    )
    def maybe(ctx: inngest.ContextSync) -> str:
        if ctx.event.data["fail"]:
            raise MyError("no")
        return "ok"

    inngest_client.send_sync(
        [
            inngest.Event(name="t", data={"fail": False}),
            inngest.Event(name="t", data={"fail": True}),
        ]
    )
    drain()
    assert len(calls) == 1
    failure_run = FunctionRun.objects.get(function_id="tests-maybe-failure")
    assert (failure_run.status, failure_run.attempt) == ("FAILED", 0)
    # runs started by inngest/function.* events emit no further system events
    assert Event.objects.filter(name="inngest/function.failed").count() == 1


def test_user_functions_can_listen_to_failures_of_another_function(
    inngest_client: inngest.Inngest,
) -> None:
    """E17."""

    @inngest_client.create_function(fn_id="fn", trigger=inngest.TriggerEvent(event="t"), retries=0)
    def fn(ctx: inngest.ContextSync) -> None:
        raise MyError("x")

    @inngest_client.create_function(
        fn_id="other", trigger=inngest.TriggerEvent(event="t"), retries=0
    )
    def other(ctx: inngest.ContextSync) -> None:
        raise MyError("y")

    @inngest_client.create_function(
        fn_id="watch",
        trigger=inngest.TriggerEvent(
            event="inngest/function.failed", expression="event.data.function_id == 'tests-fn'"
        ),
    )
    def watch(ctx: inngest.ContextSync) -> str:
        return ctx.event.id

    inngest_client.send_sync([inngest.Event(name="t"), inngest.Event(name="t")])
    drain()
    failed_ids = set(
        FunctionRun.objects.filter(function_id="tests-fn").values_list("id", flat=True)
    )
    watched = FunctionRun.objects.filter(function_id="tests-watch")
    assert watched.count() == 2
    assert set(watched.values_list("output", flat=True)) == failed_ids


def test_every_ended_run_emits_function_finished(inngest_client: inngest.Inngest) -> None:
    @inngest_client.create_function(
        fn_id="ends", trigger=inngest.TriggerEvent(event="t"), retries=0
    )
    def ends(ctx: inngest.ContextSync) -> str:
        if ctx.event.data["fail"]:
            raise MyError("bad")
        return "good"

    inngest_client.send_sync([inngest.Event(name="t", data={"fail": f}) for f in (False, True)])
    drain()
    finished = {
        e.data["_inngest"]["status"]: e.data
        for e in Event.objects.filter(name="inngest/function.finished")
    }
    assert finished["COMPLETED"]["result"] == "good"
    assert finished["FAILED"]["error"]["message"] == "bad"


def test_an_event_id_starts_each_function_once_per_24_hours(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F12."""
    for fn_id in ("a", "b"):
        inngest_client.create_function(fn_id=fn_id, trigger=inngest.TriggerEvent(event="checkout"))(
            lambda ctx: None
        )
    first = inngest_client.send_sync(inngest.Event(name="checkout", id="checkout-1"))
    second = inngest_client.send_sync(inngest.Event(name="checkout", id="checkout-1"))
    assert first != second
    drain()
    assert Event.objects.filter(user_id="checkout-1").count() == 2
    assert sorted(FunctionRun.objects.values_list("function_id", flat=True)) == [
        "tests-a",
        "tests-b",
    ]

    clock.advance(timedelta(hours=23))
    inngest_client.send_sync(inngest.Event(name="checkout", id="checkout-1"))
    assert drain().runs_created == 0
    clock.advance(timedelta(hours=1))
    inngest_client.send_sync(inngest.Event(name="checkout", id="checkout-1"))
    assert drain().runs_created == 2


def test_the_handler_sees_the_senders_event_id(inngest_client: inngest.Inngest) -> None:
    @inngest_client.create_function(fn_id="ids", trigger=inngest.TriggerEvent(event="t"))
    def ids_(ctx: inngest.ContextSync) -> str:
        return ctx.event.id

    [stored] = inngest_client.send_sync(inngest.Event(name="t", id="mine"))
    drain()
    assert FunctionRun.objects.get().output == "mine"
    assert Event.objects.get(id=stored).user_id == "mine"


def test_invalid_events_are_refused_and_nothing_of_the_batch_is_written(
    inngest_client: inngest.Inngest, settings: Any
) -> None:
    settings.INNGEST = {**settings.INNGEST, "MAX_EVENT_BYTES": 200}
    with pytest.raises(InvalidEventError, match="event 1: event name 'inngest/x' is reserved"):
        inngest_client.send_sync([inngest.Event(name="ok"), inngest.Event(name="inngest/x")])
    with pytest.raises(InvalidEventError, match="over the limit of 200 bytes"):
        inngest_client.send_sync(
            [inngest.Event(name="ok"), inngest.Event(name="big", data={"x": "y" * 300})]
        )
    assert not Event.objects.exists()


def test_send_from_async_code(inngest_client: inngest.Inngest) -> None:
    """The async `send` stores events like `send_sync`, in the caller's transaction."""
    ids = async_to_sync(inngest_client.send)(inngest.Event(name="t"))
    assert len(ids) == 1
    assert Event.objects.filter(id=ids[0]).exists()
