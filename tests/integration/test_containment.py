"""Containment (DESIGN §11 "Data never stops the engine"): an error while routing or planning
one event for one function skips that function for that event, records why (shown on the
event's admin page, logged at WARNING), and every other function and event goes on.

The poison here is an event whose data makes an expression spend its whole cost budget: a
list of 3,000 items that `EXPENSIVE` walks in two nested `exists` (9 million steps, stopped
after a few thousand), an `EvaluationLimitError`. Plain CEL errors (a type mismatch) stay "no
match", as Inngest reads them. A failure injected into the planner stands for any other error
that planning one pair may meet.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client

import django_inngest as inngest
from django_inngest.core import clock as engine_clock
from django_inngest.core import ids
from django_inngest.core.clock import FrozenClock
from django_inngest.models import Event, EventSkip, FunctionRun, Pause
from django_inngest.runtime import fleet
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db

POISON = {"n": 0, "items": list(range(3000))}
EXPENSIVE = "{side}.data.items.exists(x, {side}.data.items.exists(y, x + y < 0))"
#: True at once for n == 1 (a good event); the budget is spent for the poison.
GUARDED = f"event.data.n == 1 || {EXPENSIVE.format(side='event')}"


def insert_event(name: str, data: dict[str, Any]) -> str:
    """Store an event as it is, past the checks of `send_sync` (data that got in before)."""
    event_id = ids.ulid()
    Event.objects.create(
        id=event_id,
        name=name,
        data=data,
        ts=engine_clock.now_ms(),
        received_at=engine_clock.now(),
    )
    return event_id


def functions_ran(event_id: str) -> set[str]:
    return set(FunctionRun.objects.filter(event_id=event_id).values_list("function_id", flat=True))


def test_a_trigger_expression_that_raises_skips_only_its_function_for_that_event(
    inngest_client: inngest.Inngest, caplog: pytest.LogCaptureFixture
) -> None:
    inngest_client.create_function(
        fn_id="picky", trigger=inngest.TriggerEvent(event="t", expression=GUARDED)
    )(lambda ctx: "picky")
    inngest_client.create_function(fn_id="plain", trigger=inngest.TriggerEvent(event="t"))(
        lambda ctx: "plain"
    )
    poison = insert_event("t", POISON)
    [good] = inngest_client.send_sync(inngest.Event(name="t", data={"n": 1}))
    with caplog.at_level(logging.WARNING, logger="django_inngest"):
        summary = drain()
    assert summary.events == 2
    assert functions_ran(poison) == {"tests-plain"}
    assert functions_ran(good) == {"tests-plain", "tests-picky"}
    assert set(FunctionRun.objects.values_list("status", flat=True)) == {"COMPLETED"}
    [skip] = EventSkip.objects.all()
    assert (skip.event_id, skip.function_id, skip.run_id) == (poison, "tests-picky", "")
    assert "cost budget" in skip.reason
    assert "trigger" in skip.reason
    assert not Event.objects.filter(pending=True).exists()
    [record] = [r for r in caplog.records if "skipped" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert f"event_id={poison}" in record.getMessage()
    assert "fn=tests-picky" in record.getMessage()


@pytest.mark.parametrize(
    "option",
    [
        {"concurrency": [inngest.Concurrency(limit=2, key=GUARDED)]},
        {"throttle": inngest.Throttle(limit=5, period=timedelta(seconds=1), key=GUARDED)},
        {"rate_limit": inngest.RateLimit(limit=5, period=timedelta(hours=1), key=GUARDED)},
        {"idempotency": GUARDED},
        {"debounce": inngest.Debounce(period=timedelta(seconds=5), key=GUARDED)},
        {"singleton": inngest.Singleton(key=GUARDED, mode="skip")},
        {"priority": inngest.Priority(run=f"({GUARDED}) ? 10 : 0")},
        {"batch_events": inngest.Batch(max_size=2, timeout=timedelta(seconds=5), key=GUARDED)},
    ],
    ids=lambda option: next(iter(option)),
)
def test_a_flow_control_key_that_raises_skips_only_its_function_for_that_event(
    inngest_client: inngest.Inngest, clock: FrozenClock, option: dict[str, Any]
) -> None:
    inngest_client.create_function(
        fn_id="keyed", trigger=inngest.TriggerEvent(event="t"), **option
    )(lambda ctx: "keyed")
    inngest_client.create_function(fn_id="plain", trigger=inngest.TriggerEvent(event="t"))(
        lambda ctx: "plain"
    )
    poison = insert_event("t", POISON)
    [good] = inngest_client.send_sync(inngest.Event(name="t", data={"n": 1}))
    drain()
    clock.advance(timedelta(seconds=10))  # debounces and batches fire
    drain()
    assert functions_ran(poison) == {"tests-plain"}
    assert "tests-keyed" in set(FunctionRun.objects.values_list("function_id", flat=True))
    assert good not in {skip.event_id for skip in EventSkip.objects.all()}
    [skip] = EventSkip.objects.all()
    assert (skip.event_id, skip.function_id) == (poison, "tests-keyed")
    assert not FunctionRun.objects.exclude(status="COMPLETED").exists()


def test_any_error_while_planning_one_function_is_contained(
    inngest_client: inngest.Inngest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the error (here one injected into the planner), only its pair is skipped."""
    inngest_client.create_function(fn_id="fragile", trigger=inngest.TriggerEvent(event="t"))(
        lambda ctx: "fragile"
    )
    inngest_client.create_function(fn_id="plain", trigger=inngest.TriggerEvent(event="t"))(
        lambda ctx: "plain"
    )
    real_plan_run = fleet.plan_run

    def plan_run(function: Any, event: Any, event_id: str, **options: Any) -> Any:
        if function.id == "tests-fragile" and event["data"].get("poison"):
            raise RuntimeError("planning failed")
        return real_plan_run(function, event, event_id, **options)

    monkeypatch.setattr(fleet, "plan_run", plan_run)
    [poison, good] = inngest_client.send_sync(
        [inngest.Event(name="t", data={"poison": True}), inngest.Event(name="t")]
    )
    drain()
    assert functions_ran(poison) == {"tests-plain"}
    assert functions_ran(good) == {"tests-plain", "tests-fragile"}
    [skip] = EventSkip.objects.all()
    assert skip.reason == "planning the run failed: RuntimeError: planning failed"


def test_a_wait_whose_expression_raises_on_an_event_skips_only_that_wait(
    inngest_client: inngest.Inngest, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The poisoned wait stays waiting and a later good event ends it; the other wait ends."""

    @inngest_client.create_function(fn_id="waiter", trigger=inngest.TriggerEvent(event="t"))
    def waiter(ctx: inngest.ContextSync) -> Any:
        found = ctx.step.wait_for_event(
            "wait", event="t.done", if_exp=ctx.event.data["if"], timeout=timedelta(hours=1)
        )
        return found.data["k"] if found else None

    inngest_client.send_sync(
        [
            inngest.Event(
                name="t", data={"if": f"async.data.n == 1 || {EXPENSIVE.format(side='async')}"}
            ),
            inngest.Event(name="t", data={"if": "async.data.k == 'go'"}),
        ]
    )
    drain()
    assert Pause.objects.count() == 2
    clock.advance(timedelta(seconds=1))
    poison = insert_event("t.done", {**POISON, "k": "go"})
    with caplog.at_level(logging.WARNING, logger="django_inngest"):
        drain()
    outputs = dict(
        FunctionRun.objects.filter(function_id="tests-waiter").values_list("status", "output")
    )
    assert outputs == {"WAITING": None, "COMPLETED": "go"}
    [skip] = EventSkip.objects.all()
    waiting = FunctionRun.objects.get(status="WAITING")
    assert (skip.event_id, skip.function_id, skip.run_id) == (poison, "tests-waiter", waiting.id)
    assert "cost budget" in skip.reason
    assert any(f"run_id={waiting.id}" in r.getMessage() for r in caplog.records)
    clock.advance(timedelta(seconds=1))
    inngest_client.send_sync(inngest.Event(name="t.done", data={"n": 1, "k": "later"}))
    drain()
    assert FunctionRun.objects.get(id=waiting.id).output == "later"


def test_a_cancel_listener_whose_expression_raises_skips_only_that_listener(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    @inngest_client.create_function(
        fn_id="sleeper",
        trigger=inngest.TriggerEvent(event="t"),
        cancel=[
            inngest.Cancel(
                event="t.stop",
                if_exp=f"async.data.n == event.data.n || {EXPENSIVE.format(side='async')}",
            )
        ],
    )
    def sleeper(ctx: inngest.ContextSync) -> None:
        ctx.step.sleep("nap", timedelta(hours=1))

    inngest_client.send_sync([inngest.Event(name="t", data={"n": 1})])
    drain()
    poison = insert_event("t.stop", POISON)
    drain()
    run = FunctionRun.objects.get()
    assert run.status == "SLEEPING"
    [skip] = EventSkip.objects.all()
    assert (skip.event_id, skip.run_id) == (poison, run.id)
    inngest_client.send_sync(inngest.Event(name="t.stop", data={"n": 1}))
    drain()
    assert FunctionRun.objects.get().status == "CANCELLED"


def test_the_event_page_says_which_functions_were_skipped_and_why(
    inngest_client: inngest.Inngest, admin_client: Client
) -> None:
    inngest_client.create_function(
        fn_id="picky", trigger=inngest.TriggerEvent(event="t", expression=GUARDED)
    )(lambda ctx: "picky")
    poison = insert_event("t", POISON)
    drain()
    page = admin_client.get(f"/admin/django_inngest/event/{poison}/change/").content.decode()
    assert "Skipped" in page
    assert "tests-picky" in page
    assert "cost budget" in page
    assert "no registered function listens to it" not in page


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_idle_postgresql_worker_taking_a_notified_event_records_the_skip_in_its_statement(
    inngest_client: inngest.Inngest,
) -> None:
    """`store.pick_up_event`: the skip is written with the runs, in the one statement."""
    from django_inngest import store
    from django_inngest.runtime.claimed import planner, route

    inngest_client.create_function(
        fn_id="picky", trigger=inngest.TriggerEvent(event="t", expression=GUARDED)
    )(lambda ctx: "picky")
    inngest_client.create_function(fn_id="plain", trigger=inngest.TriggerEvent(event="t"))(
        lambda ctx: "plain"
    )
    poison = insert_event("t", POISON)
    described = {**Event.objects.values("id", "user_id", "name", "data", "ts").get(id=poison)}
    claimed = store.pick_up_event(
        described,
        route,
        "me",
        limit=10,
        now=engine_clock.now(),
        lease_seconds=30,
        planner=planner,
    )
    assert claimed is not None
    assert [c.function_id for c in claimed] == ["tests-plain"]
    assert not Event.objects.get().pending
    [skip] = EventSkip.objects.all()
    assert (skip.event_id, skip.function_id) == (poison, "tests-picky")


def test_a_bulk_cancellation_leaves_alone_a_run_whose_event_cannot_be_evaluated(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    @inngest_client.create_function(fn_id="sleeper", trigger=inngest.TriggerEvent(event="t"))
    def sleeper(ctx: inngest.ContextSync) -> None:
        ctx.step.sleep("nap", timedelta(hours=1))

    poison = insert_event("t", POISON)
    [good] = inngest_client.send_sync(inngest.Event(name="t", data={"n": 1}))
    drain()
    clock.advance(timedelta(seconds=1))
    cancelled = inngest_client.cancel_runs("tests-sleeper", if_exp=GUARDED)
    assert len(cancelled) == 1
    statuses = dict(FunctionRun.objects.values_list("event_id", "status"))
    assert statuses == {good: "CANCELLED", poison: "SLEEPING"}
