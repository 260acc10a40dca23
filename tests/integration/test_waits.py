"""step.wait_for_event (SPEC §2.6, behaviours W3-W9) with drain() and the frozen clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import django_inngest as inngest
from django_inngest.core.clock import FrozenClock
from django_inngest.core.errors import ConfigError
from django_inngest.models import FunctionRun, Pause, RunStep
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db


def waiter(
    client: inngest.Inngest, *, timeout: Any = timedelta(minutes=1), **options: Any
) -> list[Any]:
    """A function waiting for t.fulfill with the same id; returns what the wait returned."""
    results: list[Any] = []

    @client.create_function(fn_id="waiter", trigger=inngest.TriggerEvent(event="t"))
    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        before = options.get("before")
        if before:
            step.run("before", before)
        found = step.wait_for_event(
            "wait",
            event=options.get("event", "t.fulfill"),
            if_exp=options.get("if_exp", "event.data.id == async.data.id"),
            timeout=timeout,
        )
        results.append(found)
        return found.data if found else None

    return results


def test_a_matching_event_ends_the_wait_with_that_event(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """W3."""
    results = waiter(inngest_client)
    inngest_client.send_sync(inngest.Event(name="t", data={"id": 123}))
    drain()
    assert FunctionRun.objects.get().status == "WAITING"
    assert RunStep.objects.get().status == "WAITING"
    clock.advance(timedelta(seconds=5))
    inngest_client.send_sync(inngest.Event(name="t.fulfill", data={"id": 123, "x": 1}))
    drain()
    [found] = results
    assert isinstance(found, inngest.Event)
    assert (found.name, found.data) == ("t.fulfill", {"id": 123, "x": 1})
    assert found.id != "" and found.ts > 0
    run = FunctionRun.objects.get()
    assert (run.status, run.output) == ("COMPLETED", {"id": 123, "x": 1})
    assert not Pause.objects.exists()


def test_an_event_that_does_not_match_leaves_the_wait_to_time_out(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """W4."""
    results = waiter(inngest_client, timeout=timedelta(seconds=1))
    inngest_client.send_sync(inngest.Event(name="t", data={"id": 123}))
    drain()
    inngest_client.send_sync(inngest.Event(name="t.fulfill", data={"id": 456}))
    drain()
    assert results == []
    clock.advance(timedelta(seconds=1))
    drain()
    assert results == [None]
    assert FunctionRun.objects.get().status == "COMPLETED"
    assert not Pause.objects.exists()


def test_an_event_with_another_name_does_not_end_the_wait(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """W5."""
    results = waiter(inngest_client, timeout=timedelta(seconds=1))
    inngest_client.send_sync(inngest.Event(name="t", data={"id": 123}))
    drain()
    inngest_client.send_sync(inngest.Event(name="t.other", data={"id": 123}))
    clock.advance(timedelta(seconds=1))
    drain()
    assert results == [None]


def test_an_event_sent_before_the_wait_started_does_not_match(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """W6: sent during the step that precedes the wait."""

    def send_early() -> None:
        inngest_client.send_sync(inngest.Event(name="t.fulfill", data={"id": 123}))

    results = waiter(inngest_client, timeout=timedelta(seconds=2), before=send_early)
    inngest_client.send_sync(inngest.Event(name="t", data={"id": 123}))
    drain()
    assert results == []
    clock.advance(timedelta(seconds=2))
    drain()
    assert results == [None]


def test_the_first_of_two_matching_events_wins(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """W7."""
    results = waiter(inngest_client)
    inngest_client.send_sync(inngest.Event(name="t", data={"id": 1}))
    drain()
    inngest_client.send_sync(
        [
            inngest.Event(name="t.fulfill", data={"id": 1, "n": "first"}),
            inngest.Event(name="t.fulfill", data={"id": 1, "n": "second"}),
        ]
    )
    drain()
    assert [found.data["n"] for found in results] == ["first"]


def test_one_event_ends_the_waits_of_several_runs(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """W8."""
    results = waiter(inngest_client)
    inngest_client.send_sync([inngest.Event(name="t", data={"id": 7}) for _ in range(2)])
    drain()
    inngest_client.send_sync(inngest.Event(name="t.fulfill", data={"id": 7}))
    drain()
    assert len(results) == 2
    assert FunctionRun.objects.filter(status="COMPLETED").count() == 2


def test_a_timeout_under_one_second_is_refused_in_the_handler(
    inngest_client: inngest.Inngest,
) -> None:
    """W9."""
    errors: list[BaseException] = []

    @inngest_client.create_function(
        fn_id="bad-wait", trigger=inngest.TriggerEvent(event="t"), retries=0
    )
    def bad_wait(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        try:
            step.wait_for_event("wait", event="x", timeout=500)
        except ConfigError as error:
            errors.append(error)
            raise

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    assert "duration must be at least 1s" in str(errors[0])
    assert FunctionRun.objects.get().status == "FAILED"


def test_a_wait_expression_that_does_not_compile_is_a_step_error(
    inngest_client: inngest.Inngest,
) -> None:
    @inngest_client.create_function(
        fn_id="broken", trigger=inngest.TriggerEvent(event="t"), retries=3
    )
    def broken(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.wait_for_event("wait", event="x", if_exp="async.data ==", timeout=60_000)

    inngest_client.send_sync(inngest.Event(name="t"))
    assert drain().invocations == 1
    run = FunctionRun.objects.get()
    assert run.status == "FAILED"
    assert run.output["message"].startswith("Wait for event If expression failed to compile")


def test_a_wait_without_condition_takes_any_event_of_that_name(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    results = waiter(inngest_client, if_exp=None)
    inngest_client.send_sync(inngest.Event(name="t", data={"id": 1}))
    drain()
    inngest_client.send_sync(inngest.Event(name="t.fulfill", data={"anything": True}))
    drain()
    assert results[0].data == {"anything": True}


def test_waits_in_parallel_branches_each_get_their_event(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    @inngest_client.create_function(fn_id="two-waits", trigger=inngest.TriggerEvent(event="t"))
    def two_waits(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        found = ctx.group.parallel(
            (
                lambda: step.wait_for_event("a", event="a", timeout=60_000),
                lambda: step.wait_for_event("b", event="b", timeout=60_000),
            )
        )
        return [event.name if event else None for event in found]

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    assert Pause.objects.count() == 2
    inngest_client.send_sync(inngest.Event(name="b"))
    drain()
    assert FunctionRun.objects.get().status == "WAITING"
    inngest_client.send_sync(inngest.Event(name="a"))
    drain()
    assert FunctionRun.objects.get().output == ["a", "b"]


def test_waits_are_found_by_index_when_they_compare_event_and_async_fields(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    waiter(inngest_client)
    inngest_client.send_sync([inngest.Event(name="t", data={"id": n}) for n in range(3)])
    drain()
    assert Pause.objects.filter(match_key__isnull=False).count() == 3
    inngest_client.send_sync(inngest.Event(name="t.fulfill", data={"id": 1}))
    drain()
    completed = FunctionRun.objects.get(status="COMPLETED")
    assert completed.output == {"id": 1}
    assert FunctionRun.objects.filter(status="WAITING").count() == 2
