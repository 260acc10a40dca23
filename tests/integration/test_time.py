"""Sleeps, retries and delayed events under the frozen clock (SPEC §2.5, §3.1; W1, W2, E8, F13)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import override_settings

import django_inngest as inngest
from django_inngest.core import clock as engine_clock
from django_inngest.core.clock import FrozenClock
from django_inngest.models import FunctionRun, RunStep
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("duration", [timedelta(seconds=2), 2000])
def test_code_after_a_sleep_runs_only_once_the_sleep_is_over(
    inngest_client: inngest.Inngest, clock: FrozenClock, duration: Any
) -> None:
    """W1, with a timedelta and with int milliseconds."""
    times: dict[str, datetime] = {}

    @inngest_client.create_function(fn_id="sleeper", trigger=inngest.TriggerEvent(event="t"))
    def sleeper(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        step.run("before", lambda: times.setdefault("before", engine_clock.now()) and None)
        step.sleep("zzz", duration)
        step.run("after", lambda: times.setdefault("after", engine_clock.now()) and None)
        return "done"

    inngest_client.send_sync(inngest.Event(name="t"))
    assert drain().sleeping == 1
    run = FunctionRun.objects.get()
    assert run.status == "SLEEPING"
    zzz = RunStep.objects.get(step_id="zzz")
    assert (zzz.status, zzz.wake_at) == ("SLEEPING", times["before"] + timedelta(seconds=2))

    clock.advance(timedelta(milliseconds=1999))
    assert drain().invocations == 0
    clock.advance(timedelta(milliseconds=1))
    drain()
    run.refresh_from_db()
    assert (run.status, run.output) == ("COMPLETED", "done")
    assert times["after"] - times["before"] >= timedelta(seconds=2)
    assert RunStep.objects.get(step_id="zzz").status == "COMPLETED"


def test_sleep_until_a_past_time_resumes_at_once(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """W2."""

    @inngest_client.create_function(fn_id="past", trigger=inngest.TriggerEvent(event="t"))
    def past(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        step.sleep_until("zzz", engine_clock.now() - timedelta(hours=1))
        return "awake"

    inngest_client.send_sync(inngest.Event(name="t"))
    assert drain().completed == 1


def test_sleep_until_a_future_time_waits_for_it(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """W2."""
    wake = engine_clock.now() + timedelta(seconds=2)

    @inngest_client.create_function(fn_id="until", trigger=inngest.TriggerEvent(event="t"))
    async def until(ctx: inngest.Context) -> str:
        await ctx.step.sleep_until("zzz", wake)
        return "awake"

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    clock.advance(timedelta(seconds=1))
    assert drain().completed == 0
    clock.advance(timedelta(seconds=1))
    assert drain().completed == 1


@pytest.mark.parametrize("where", ["function", "step", "datetime"])
def test_retry_after_error_delays_the_next_attempt_by_the_requested_time(
    inngest_client: inngest.Inngest, clock: FrozenClock, where: str
) -> None:
    """E8: ms at function level, timedelta inside a step, an absolute datetime."""
    attempts: list[datetime] = []

    @inngest_client.create_function(fn_id=f"later-{where}", trigger=inngest.TriggerEvent(event="t"))
    def later(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        def maybe_raise() -> None:
            attempts.append(engine_clock.now())
            if len(attempts) == 1:
                retry_after: Any = {
                    "function": 1000,
                    "step": timedelta(seconds=1),
                    "datetime": engine_clock.now() + timedelta(seconds=1),
                }[where]
                raise inngest.RetryAfterError("not yet", retry_after)

        if where == "step":
            step.run("s", maybe_raise)
        else:
            maybe_raise()
        return "done"

    inngest_client.send_sync(inngest.Event(name="t"))
    assert drain().retried == 1
    clock.advance(timedelta(milliseconds=999))
    assert drain().invocations == 0
    clock.advance(timedelta(milliseconds=1))
    assert drain().completed == 1
    assert attempts[1] - attempts[0] == timedelta(seconds=1)
    assert FunctionRun.objects.get().attempt == 1


def test_failed_attempts_wait_for_the_backoff_setting(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    @inngest_client.create_function(
        fn_id="backoff", trigger=inngest.TriggerEvent(event="t"), retries=2
    )
    def backoff(ctx: inngest.ContextSync) -> None:
        ctx.step.run("always", lambda: 1 / 0)

    inngest_client.send_sync(inngest.Event(name="t"))
    with override_settings(INNGEST={"RETRY_BACKOFF": [10, 20], "RETRY_JITTER": 0}):
        drain()
        clock.advance(timedelta(seconds=9))
        assert drain().invocations == 0
        clock.advance(timedelta(seconds=1))
        assert drain().retried == 1
        clock.advance(timedelta(seconds=19))
        assert drain().invocations == 0
        clock.advance(timedelta(seconds=1))
        assert drain().failed == 1


def test_a_step_that_keeps_failing_records_every_attempt(inngest_client: inngest.Inngest) -> None:
    """E1 on the database: attempts and their errors stay visible on the step."""

    @inngest_client.create_function(
        fn_id="failing", trigger=inngest.TriggerEvent(event="t"), retries=2
    )
    def failing(ctx: inngest.ContextSync) -> None:
        ctx.step.run("s", lambda: (_ for _ in ()).throw(ValueError(f"boom {ctx.attempt}")))

    inngest_client.send_sync(inngest.Event(name="t"))
    summary = drain()
    assert (summary.invocations, summary.retried, summary.failed) == (3, 2, 1)
    step = RunStep.objects.get()
    assert (step.status, step.attempts) == ("FAILED", 3)
    assert step.error is not None and step.error["message"] == "boom 2"
    assert [h["error"]["message"] for h in step.history] == ["boom 0", "boom 1"]
    run = FunctionRun.objects.get()
    assert (run.output["code"], run.output["message"], run.output["name"]) == (
        "step_errored",
        "boom 2",
        "ValueError",
    )


def test_an_event_with_a_future_timestamp_delays_its_runs(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F13."""

    @inngest_client.create_function(fn_id="future", trigger=inngest.TriggerEvent(event="t"))
    def future(ctx: inngest.ContextSync) -> None: ...

    inngest_client.send_sync(inngest.Event(name="t", ts=engine_clock.now_ms() + 3000))
    assert drain().invocations == 0
    assert FunctionRun.objects.get().status == "QUEUED"
    clock.advance(timedelta(seconds=3))
    assert drain().completed == 1
