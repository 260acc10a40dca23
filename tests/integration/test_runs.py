"""Runs end to end on the database with drain(): events, runs, steps, outputs (SPEC §2, §6)."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

import django_inngest as inngest
from django_inngest.core import ids
from django_inngest.models import Event, FunctionRun, QueueItem, RunStep
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db


def test_an_event_sent_in_a_rolled_back_transaction_starts_nothing(
    inngest_client: inngest.Inngest,
) -> None:
    @inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"))
    def f(ctx: inngest.ContextSync) -> None: ...

    def place_order_then_fail() -> None:
        with transaction.atomic():
            inngest_client.send_sync(inngest.Event(name="t"))
            raise RuntimeError("the caller's transaction fails")

    with pytest.raises(RuntimeError):
        place_order_then_fail()
    assert drain().runs_created == 0
    assert not Event.objects.exists()


def test_a_run_goes_from_queued_to_completed_with_its_output(
    inngest_client: inngest.Inngest,
) -> None:
    """L1 and S10: status, timestamps, output, triggering event ids."""

    @inngest_client.create_function(fn_id="hello", trigger=inngest.TriggerEvent(event="t"))
    def hello(ctx: inngest.ContextSync) -> dict[str, int]:
        return {"a": 1}

    [event_id] = inngest_client.send_sync(inngest.Event(name="t", data={"x": 1}))
    assert len(event_id) == 26
    assert drain().runs_created == 1
    run = FunctionRun.objects.get()
    assert run.function_id == "tests-hello"
    assert (run.status, run.output, run.event_ids, run.attempt) == (
        "COMPLETED",
        {"a": 1},
        [event_id],
        0,
    )
    assert run.created_at <= run.started_at <= run.ended_at  # type: ignore[operator]
    assert not QueueItem.objects.exists()
    finished = Event.objects.get(name="inngest/function.finished")
    assert finished.data["result"] == {"a": 1}
    assert finished.data["_inngest"] == {"status": "COMPLETED"}
    assert finished.data["run_id"] == run.id


def test_queued_runs_are_queued_until_a_worker_claims_them(inngest_client: inngest.Inngest) -> None:
    @inngest_client.create_function(fn_id="q", trigger=inngest.TriggerEvent(event="t"))
    def q(ctx: inngest.ContextSync) -> None: ...

    from django_inngest import store
    from django_inngest.core import clock
    from django_inngest.runtime.claimed import route

    inngest_client.send_sync(inngest.Event(name="t"))
    store.fan_out(route, now=clock.now())
    run = FunctionRun.objects.get()
    assert (run.status, run.started_at, run.ended_at) == ("QUEUED", None, None)


def test_each_step_is_recorded_with_its_id_index_and_output(
    inngest_client: inngest.Inngest,
) -> None:
    """S1 and S2 on the database."""
    calls: list[str] = []

    @inngest_client.create_function(
        fn_id="steps", trigger=inngest.TriggerEvent(event="t"), retries=0
    )
    def steps(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        a = step.run("a", lambda: calls.append("a") or 1)
        values = [step.run("foo", lambda i=i: calls.append(f"foo{i}") or i) for i in range(2)]
        return [a, *values]

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    run = FunctionRun.objects.get()
    assert (run.status, run.output, calls) == ("COMPLETED", [1, 0, 1], ["a", "foo0", "foo1"])
    rows = list(
        RunStep.objects.order_by("id").values_list(
            "step_id", "index", "hashed_id", "op", "status", "output", "attempts"
        )
    )
    assert rows == [
        ("a", 0, ids.hash_step_id("a"), "run", "COMPLETED", 1, 1),
        ("foo", 0, ids.hash_step_id("foo"), "run", "COMPLETED", 0, 1),
        ("foo", 1, ids.hash_step_id("foo:1"), "run", "COMPLETED", 1, 1),
    ]
    assert all(s.started_at and s.ended_at for s in RunStep.objects.all())


def test_two_triggers_start_separate_runs_with_their_own_event(
    inngest_client: inngest.Inngest,
) -> None:
    """K1."""

    @inngest_client.create_function(
        fn_id="multi", trigger=[inngest.TriggerEvent(event="a"), inngest.TriggerEvent(event="b")]
    )
    def multi(ctx: inngest.ContextSync) -> str:
        return ctx.event.name

    inngest_client.send_sync([inngest.Event(name="a"), inngest.Event(name="b")])
    drain()
    assert sorted(FunctionRun.objects.values_list("output", flat=True)) == ["a", "b"]


def test_one_event_fans_out_to_every_subscribed_function(inngest_client: inngest.Inngest) -> None:
    for fn_id in ("one", "two", "three"):
        inngest_client.create_function(fn_id=fn_id, trigger=inngest.TriggerEvent(event="t"))(
            lambda ctx: ctx.event.data["n"]
        )
    inngest_client.send_sync(inngest.Event(name="t", data={"n": 5}))
    summary = drain()
    assert (summary.runs_created, summary.completed) == (3, 3)
    assert set(FunctionRun.objects.values_list("function_id", "output")) == {
        ("tests-one", 5),
        ("tests-two", 5),
        ("tests-three", 5),
    }


def test_send_event_stores_the_events_once_even_when_the_run_replays(
    inngest_client: inngest.Inngest,
) -> None:
    """I7: two ids come back; after a replay the same ids return and nothing is sent again."""
    seen: list[list[str]] = []

    @inngest_client.create_function(fn_id="sender", trigger=inngest.TriggerEvent(event="t"))
    def sender(ctx: inngest.ContextSync, step: inngest.StepSync) -> list[str]:
        sent = step.send_event("send", [inngest.Event(name="x"), inngest.Event(name="y")])
        seen.append(sent)
        if len(seen) == 1:
            raise RuntimeError("replay after sending")
        return sent

    @inngest_client.create_function(fn_id="receiver", trigger=inngest.TriggerEvent(event="x"))
    def receiver(ctx: inngest.ContextSync) -> str:
        return ctx.event.id

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    assert seen[0] == seen[1] and len(seen[0]) == 2
    assert Event.objects.filter(name__in=["x", "y"]).count() == 2
    assert FunctionRun.objects.get(function_id="tests-receiver").output == seen[0][0]


def test_async_handlers_run_with_orm_calls_in_sync_step_bodies(
    inngest_client: inngest.Inngest,
) -> None:
    @inngest_client.create_function(fn_id="async", trigger=inngest.TriggerEvent(event="t"))
    async def handler(ctx: inngest.Context) -> int:
        count = await ctx.step.run("count", lambda: Event.objects.count())
        more = await ctx.step.run("double", _double, count)
        return more

    async def _double(value: int) -> int:
        return value * 2

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    assert FunctionRun.objects.get(function_id="tests-async").output == 2


def test_a_run_of_an_unknown_function_fails_with_a_clear_error(
    inngest_client: inngest.Inngest,
) -> None:
    @inngest_client.create_function(fn_id="gone", trigger=inngest.TriggerEvent(event="t"))
    def gone(ctx: inngest.ContextSync) -> None: ...

    from django_inngest import store
    from django_inngest.core import clock
    from django_inngest.registry import registry
    from django_inngest.runtime.claimed import route

    inngest_client.send_sync(inngest.Event(name="t"))
    store.fan_out(route, now=clock.now())
    with registry.isolated():
        drain()
    run = FunctionRun.objects.get()
    assert run.status == "FAILED"
    assert run.output["code"] == "function_not_found"
    assert "'tests-gone' is not registered" in run.output["message"]


def test_returning_a_value_that_is_not_json_fails_the_run(inngest_client: inngest.Inngest) -> None:
    @inngest_client.create_function(
        fn_id="bad-return", trigger=inngest.TriggerEvent(event="t"), retries=2
    )
    def bad(ctx: inngest.ContextSync) -> object:
        return object()

    inngest_client.send_sync(inngest.Event(name="t"))
    summary = drain()
    run = FunctionRun.objects.get(function_id="tests-bad-return")
    assert (run.status, summary.invocations) == ("FAILED", 1)
    assert run.output["code"] == "output_unserializable"
    assert "tests-bad-return" in run.output["message"]
