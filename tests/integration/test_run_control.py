"""Cancelling and rerunning runs through the client (SPEC §3.10, §6.3; C6, C7, L3)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

import django_inngest as inngest
from django_inngest.core.clock import FrozenClock
from django_inngest.core.errors import RunEndedError, RunNotFoundError
from django_inngest.models import Event, FunctionRun, RunStep
from django_inngest.runtime import Worker
from django_inngest.testing import drain


@pytest.mark.django_db
def test_cancelling_a_sleeping_run_ends_it_and_nothing_after_the_sleep_runs(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """C3 via the client (C6): Cancelled, function.cancelled emitted, on_failure not run."""
    after: list[str] = []
    failures: list[str] = []

    @inngest_client.create_function(
        fn_id="napper",
        trigger=inngest.TriggerEvent(event="t"),
        on_failure=lambda ctx: failures.append(ctx.run_id),
    )
    def napper(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.sleep("nap", timedelta(seconds=60))
        step.run("after", lambda: after.append("ran"))

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    run = FunctionRun.objects.get()
    inngest_client.cancel(run.id)
    clock.advance(timedelta(minutes=2))
    drain()
    run.refresh_from_db()
    assert (run.status, after, failures) == ("CANCELLED", [], [])
    assert run.ended_at is not None
    cancelled = Event.objects.get(name="inngest/function.cancelled")
    assert cancelled.user_id == run.id
    finished = Event.objects.get(name="inngest/function.finished")
    assert finished.data["_inngest"]["status"] == "CANCELLED"


@pytest.mark.django_db
def test_cancelling_an_ended_or_unknown_run_is_refused_and_changes_nothing(
    inngest_client: inngest.Inngest,
) -> None:
    """C6."""
    inngest_client.create_function(fn_id="quick", trigger=inngest.TriggerEvent(event="t"))(
        lambda ctx: 1
    )
    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    run = FunctionRun.objects.get()
    with pytest.raises(
        RunEndedError, match=rf"cannot cancel run '{run.id}': it has already ended \(COMPLETED\)"
    ):
        inngest_client.cancel(run.id)
    with pytest.raises(RunNotFoundError, match="no run with id 'nope'"):
        inngest_client.cancel("nope")
    run.refresh_from_db()
    assert (run.status, run.output) == ("COMPLETED", 1)


@pytest.mark.django_db
def test_bulk_cancellation_takes_only_matching_runs_in_the_window(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """C7."""

    @inngest_client.create_function(fn_id="long", trigger=inngest.TriggerEvent(event="t"))
    def long(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.sleep("wait", timedelta(hours=1))

    inngest_client.send_sync(
        [inngest.Event(name="t", data={"user": u}) for u in ("u1", "u2", "u1")]
    )
    drain()
    window_end = clock.advance(timedelta(seconds=1))
    clock.advance(timedelta(seconds=1))
    inngest_client.send_sync(inngest.Event(name="t", data={"user": "u1"}))
    drain()
    cancelled = inngest_client.cancel_runs(
        "tests-long", started_before=window_end, if_exp="event.data.user == 'u1'"
    )
    assert len(cancelled) == 2
    statuses: dict[str, list[str]] = {}
    for run in FunctionRun.objects.select_related("event").order_by("id"):
        statuses.setdefault(run.event.data["user"], []).append(run.status)  # type: ignore[union-attr]
    assert statuses == {"u1": ["CANCELLED", "CANCELLED", "SLEEPING"], "u2": ["SLEEPING"]}


@pytest.mark.django_db
def test_rerun_starts_a_new_linked_run_with_fresh_memos(inngest_client: inngest.Inngest) -> None:
    """L3."""
    calls: list[str] = []

    @inngest_client.create_function(
        fn_id="twice", trigger=inngest.TriggerEvent(event="t"), retries=0
    )
    def twice(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        step.run("a", lambda: calls.append("a"))
        if len(calls) == 1:
            raise RuntimeError("first time fails")
        return "ok"

    inngest_client.send_sync(inngest.Event(name="t", data={"k": 1}))
    drain()
    original = FunctionRun.objects.get(status="FAILED")
    new_id = inngest_client.rerun(original.id)
    drain()
    new = FunctionRun.objects.get(id=new_id)
    assert (new.status, new.output, new.original_run_id) == ("COMPLETED", "ok", original.id)
    assert new.event_ids == original.event_ids
    assert calls == ["a", "a"]


@pytest.mark.django_db
def test_rerun_from_a_step_keeps_the_results_of_the_steps_before_it(
    inngest_client: inngest.Inngest,
) -> None:
    calls: list[str] = []

    @inngest_client.create_function(
        fn_id="resume", trigger=inngest.TriggerEvent(event="t"), retries=0
    )
    def resume(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        first = step.run("first", lambda: calls.append("first") or 1)
        second = step.run(
            "second", lambda: calls.append("second") or (1 / 0 if len(calls) == 2 else 2)
        )
        return first + second

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    failed = FunctionRun.objects.get(status="FAILED")
    new_id = inngest_client.rerun(failed.id, from_step="second")
    drain()
    assert FunctionRun.objects.get(id=new_id).output == 3
    assert calls == ["first", "second", "second"]
    with pytest.raises(ValueError, match="has no step 'nope'"):
        inngest_client.rerun(failed.id, from_step="nope")


@pytest.mark.django_db(transaction=True)
def test_a_run_cancelled_while_its_step_runs_drops_that_result_and_stops(
    inngest_client: inngest.Inngest,
) -> None:
    """C1 with a real worker: the body finishes, its result is dropped, the next step never runs."""
    entered, release = threading.Event(), threading.Event()
    after: list[str] = []

    @inngest_client.create_function(fn_id="busy", trigger=inngest.TriggerEvent(event="t"))
    def busy(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.run("work", lambda: entered.set() or release.wait(10))
        step.run("after", lambda: after.append("ran"))

    inngest_client.send_sync(inngest.Event(name="t"))
    worker = Worker(poll_interval=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        assert entered.wait(10)
        inngest_client.cancel(FunctionRun.objects.get().id)
        release.set()
    finally:
        worker.stop()
        thread.join(10)
    assert FunctionRun.objects.get().status == "CANCELLED"
    assert after == []
    assert not RunStep.objects.exists()
