"""Concurrency, singleton and timeouts (SPEC §3.5, §3.11, §3.12; F19-F21, C8-C12, W10)."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

import django_inngest as inngest
from django_inngest import store
from django_inngest.core import clock as engine_clock
from django_inngest.core.clock import FrozenClock
from django_inngest.models import FunctionRun, QueueItem, RunStep
from django_inngest.runtime import Worker
from django_inngest.testing import drain


def spans(step_id: str) -> list[tuple[Any, Any, Any]]:
    rows = RunStep.objects.filter(step_id=step_id).select_related("run__event")
    return sorted((r.run.event.data.get("user"), r.started_at, r.ended_at) for r in rows)  # type: ignore[union-attr]


def overlapping(intervals: list[tuple[Any, Any, Any]]) -> bool:
    ordered = sorted(intervals, key=lambda span: span[1])
    return any(later[1] < earlier[2] for earlier, later in itertools.pairwise(ordered))


def run_worker(seconds_limit: float = 30) -> None:
    Worker(burst=True, concurrency=4, poll_interval=0.05).run()


@pytest.mark.django_db(transaction=True)
def test_a_limit_of_one_never_lets_two_steps_run_at_once(inngest_client: inngest.Inngest) -> None:
    """F19 with a real worker of four slots."""

    @inngest_client.create_function(
        fn_id="one-at-a-time",
        trigger=inngest.TriggerEvent(event="t"),
        concurrency=[inngest.Concurrency(limit=1)],
    )
    def one(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.run("work", time.sleep, 0.2)

    inngest_client.send_sync([inngest.Event(name="t") for _ in range(3)])
    started = time.monotonic()
    run_worker()
    assert time.monotonic() - started >= 0.6
    assert FunctionRun.objects.filter(status="COMPLETED").count() == 3
    assert not overlapping(spans("work"))


@pytest.mark.django_db(transaction=True)
def test_a_keyed_limit_holds_each_key_apart(inngest_client: inngest.Inngest) -> None:
    """F20: A's steps never overlap each other; A and B do."""

    @inngest_client.create_function(
        fn_id="per-user",
        trigger=inngest.TriggerEvent(event="t"),
        concurrency=[inngest.Concurrency(limit=1, key="event.data.user")],
    )
    def per_user(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.run("work", time.sleep, 0.3)

    inngest_client.send_sync([inngest.Event(name="t", data={"user": u}) for u in ("A", "A", "B")])
    run_worker()
    work = spans("work")
    assert not overlapping([span for span in work if span[0] == "A"])
    assert overlapping([work[0], work[2]]) or overlapping([work[1], work[2]])


@pytest.mark.django_db(transaction=True)
def test_an_env_scoped_key_is_shared_by_functions(inngest_client: inngest.Inngest) -> None:
    """F21."""
    for fn_id in ("first", "second"):

        @inngest_client.create_function(
            fn_id=fn_id,
            trigger=inngest.TriggerEvent(event="t"),
            concurrency=[inngest.Concurrency(limit=1, scope="env", key='"openai"')],
        )
        def call_openai(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
            step.run("work", time.sleep, 0.2)

    inngest_client.send_sync([inngest.Event(name="t"), inngest.Event(name="t")])
    run_worker()
    assert FunctionRun.objects.filter(status="COMPLETED").count() == 4
    assert not overlapping(spans("work"))


@pytest.mark.django_db
def test_sleeping_runs_hold_no_slot(inngest_client: inngest.Inngest, clock: FrozenClock) -> None:
    """W10: with a limit of one, three runs all reach their sleep at once."""

    @inngest_client.create_function(
        fn_id="nappers",
        trigger=inngest.TriggerEvent(event="t"),
        concurrency=[inngest.Concurrency(limit=1)],
    )
    def nappers(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.sleep("nap", timedelta(seconds=5))
        step.run("after", lambda: None)

    inngest_client.send_sync([inngest.Event(name="t") for _ in range(3)])
    drain()
    assert FunctionRun.objects.filter(status="SLEEPING").count() == 3
    clock.advance(timedelta(seconds=5))
    drain()
    assert FunctionRun.objects.filter(status="COMPLETED").count() == 3


@pytest.mark.django_db
def test_runs_over_the_limit_are_parked_and_released_in_order(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    order: list[int] = []
    inngest_client.create_function(
        fn_id="parked",
        trigger=inngest.TriggerEvent(event="t"),
        concurrency=[inngest.Concurrency(limit=1)],
    )(lambda ctx: order.append(ctx.event.data["n"]))
    inngest_client.send_sync([inngest.Event(name="t", data={"n": n}) for n in range(4)])
    drain()
    assert order == [0, 1, 2, 3]
    assert not QueueItem.objects.exists()


@pytest.mark.django_db
def test_singleton_skip_records_the_second_run_as_skipped(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """C8."""

    @inngest_client.create_function(
        fn_id="only-one",
        trigger=inngest.TriggerEvent(event="t"),
        singleton=inngest.Singleton(mode="skip"),
    )
    def only_one(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.sleep("nap", timedelta(seconds=5))

    inngest_client.send_sync([inngest.Event(name="t"), inngest.Event(name="t")])
    drain()
    clock.advance(timedelta(seconds=5))
    drain()
    completed = FunctionRun.objects.get(status="COMPLETED")
    skipped = FunctionRun.objects.get(status="SKIPPED")
    assert skipped.output == {"reason": "singleton", "existing_run_id": completed.id}
    assert skipped.ended_at is not None


@pytest.mark.django_db
def test_singleton_cancel_replaces_the_run_in_progress(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """C9."""

    @inngest_client.create_function(
        fn_id="latest",
        trigger=inngest.TriggerEvent(event="t"),
        singleton=inngest.Singleton(mode="cancel"),
    )
    def latest(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        step.sleep("nap", timedelta(seconds=5))
        return ctx.event.data["n"]

    inngest_client.send_sync(inngest.Event(name="t", data={"n": 1}))
    drain()
    inngest_client.send_sync(inngest.Event(name="t", data={"n": 2}))
    drain()
    clock.advance(timedelta(seconds=5))
    drain()
    statuses = list(FunctionRun.objects.order_by("id").values_list("status", "output"))
    assert statuses == [("CANCELLED", None), ("COMPLETED", 2)]


@pytest.mark.django_db
def test_singleton_keys_let_different_users_run_at_once(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """C10."""
    inngest_client.create_function(
        fn_id="per-user",
        trigger=inngest.TriggerEvent(event="t"),
        singleton=inngest.Singleton(mode="skip", key="event.data.user"),
    )(lambda ctx: ctx.step.sleep("nap", 5000))
    inngest_client.send_sync([inngest.Event(name="t", data={"user": u}) for u in ("A", "B", "A")])
    drain()
    assert FunctionRun.objects.filter(status="SLEEPING").count() == 2
    assert FunctionRun.objects.filter(status="SKIPPED").count() == 1


@pytest.mark.django_db
def test_a_run_that_cannot_start_in_time_is_cancelled_without_executing(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """C11: the only slot is held by a run another worker executes."""
    executed: list[int] = []
    inngest_client.create_function(
        fn_id="must-start",
        trigger=inngest.TriggerEvent(event="t"),
        concurrency=[inngest.Concurrency(limit=1)],
        timeouts=inngest.Timeouts(start=timedelta(seconds=2)),
    )(lambda ctx: executed.append(ctx.event.data["n"]))
    inngest_client.send_sync(inngest.Event(name="t", data={"n": 1}))
    drain_fan_out()
    [held] = store.claim("another-worker", limit=1, now=engine_clock.now(), lease_seconds=60)
    inngest_client.send_sync(inngest.Event(name="t", data={"n": 2}))
    drain()
    assert executed == []
    clock.advance(timedelta(seconds=2))
    drain()
    second = FunctionRun.objects.exclude(id=held.run_id).get()
    assert (second.status, second.started_at, executed) == ("CANCELLED", None, [])


def drain_fan_out() -> None:
    from django_inngest.registry import registry
    from django_inngest.runtime.claimed import planner, route

    store.fan_out(route, now=engine_clock.now(), pending=registry.listens_to, planner=planner)


@pytest.mark.django_db
def test_a_run_that_does_not_finish_in_time_is_cancelled(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """C12."""
    after: list[str] = []

    @inngest_client.create_function(
        fn_id="must-finish",
        trigger=inngest.TriggerEvent(event="t"),
        timeouts=inngest.Timeouts(finish=timedelta(seconds=3)),
    )
    def must_finish(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.sleep("nap", timedelta(seconds=10))
        step.run("after", lambda: after.append("ran"))

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    clock.advance(timedelta(seconds=3))
    drain()
    assert FunctionRun.objects.get().status == "CANCELLED"
    clock.advance(timedelta(seconds=10))
    drain()
    assert after == []


@pytest.mark.django_db
def test_a_run_that_finishes_in_time_is_not_cancelled_later(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    inngest_client.create_function(
        fn_id="quick",
        trigger=inngest.TriggerEvent(event="t"),
        timeouts=inngest.Timeouts(start=timedelta(seconds=2), finish=timedelta(seconds=3)),
    )(lambda ctx: "done")
    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    clock.advance(timedelta(seconds=5))
    drain()
    assert FunctionRun.objects.get().status == "COMPLETED"
    assert not QueueItem.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_saturated_key_leaves_other_functions_free(inngest_client: inngest.Inngest) -> None:
    """A blocked key must not stop other functions from being claimed."""
    entered, release = threading.Event(), threading.Event()
    inngest_client.create_function(
        fn_id="blocked",
        trigger=inngest.TriggerEvent(event="slow"),
        concurrency=[inngest.Concurrency(limit=1)],
    )(lambda ctx: entered.set() or release.wait(10))
    inngest_client.create_function(fn_id="free", trigger=inngest.TriggerEvent(event="fast"))(
        lambda ctx: "ok"
    )
    inngest_client.send_sync([inngest.Event(name="slow") for _ in range(20)])
    worker = Worker(concurrency=2, poll_interval=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        assert entered.wait(10)
        inngest_client.send_sync([inngest.Event(name="fast") for _ in range(5)])
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and FunctionRun.objects.filter(function_id="tests-free", status="COMPLETED").count() < 5
        ):
            time.sleep(0.05)
        assert FunctionRun.objects.filter(function_id="tests-free", status="COMPLETED").count() == 5
        assert QueueItem.objects.filter(parked_on__isnull=False).count() >= 1
    finally:
        release.set()
        worker.stop()
        thread.join(20)
