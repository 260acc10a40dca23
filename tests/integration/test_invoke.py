"""step.invoke and invoke_by_id (SPEC §2.7, behaviours I1-I5)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import django_inngest as inngest
from django_inngest.core.clock import FrozenClock
from django_inngest.models import FunctionRun
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db


class MyException(Exception):
    pass


def test_invoke_returns_the_child_result_without_holding_the_parent(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """I1: the child (never triggered by its own event) sleeps, then returns."""

    @inngest_client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="never"))
    def child(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        step.sleep("nap", 1000)
        return "done"

    @inngest_client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="t"))
    def parent(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        return step.invoke("invoke", function=child)

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    assert FunctionRun.objects.get(function_id="tests-parent").status == "WAITING"
    assert FunctionRun.objects.get(function_id="tests-child").status == "SLEEPING"
    clock.advance(timedelta(seconds=1))
    drain()
    assert FunctionRun.objects.get(function_id="tests-parent").output == "done"


def test_a_failed_child_raises_step_error_with_its_error(inngest_client: inngest.Inngest) -> None:
    """I2."""
    caught: list[inngest.StepError] = []

    @inngest_client.create_function(
        fn_id="child", trigger=inngest.TriggerEvent(event="never"), retries=0
    )
    def child(ctx: inngest.ContextSync) -> None:
        raise MyException("oh no")

    @inngest_client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="t"))
    async def parent(ctx: inngest.Context) -> None:
        try:
            await ctx.step.invoke("invoke", function=child)
        except inngest.StepError as error:
            caught.append(error)
            raise

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    [error] = caught
    assert (error.message, error.name) == ("oh no", "MyException")
    assert isinstance(error.stack, str)
    run = FunctionRun.objects.get(function_id="tests-parent")
    assert (run.status, run.output["message"], run.output["name"]) == (
        "FAILED",
        "oh no",
        "MyException",
    )


def test_an_invocation_that_outlives_its_timeout_fails_the_step(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """I3."""

    @inngest_client.create_function(fn_id="slow-child", trigger=inngest.TriggerEvent(event="never"))
    def slow_child(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        step.sleep("nap", timedelta(seconds=60))
        return "late"

    @inngest_client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="t"))
    def parent(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        return step.invoke("invoke", function=slow_child, timeout=timedelta(seconds=1))

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    clock.advance(timedelta(seconds=1))
    drain()
    assert FunctionRun.objects.get(function_id="tests-parent").output == {
        "code": "step_errored",
        "message": "Timed out waiting for invoked function to complete",
        "name": "InngestInvokeTimeoutError",
        "stack": None,
    }
    clock.advance(timedelta(seconds=60))
    drain()
    assert FunctionRun.objects.get(function_id="tests-slow-child").output == "late"


def test_the_child_sees_the_invoked_event_and_its_data_even_with_a_cron_trigger(
    inngest_client: inngest.Inngest,
) -> None:
    """I4."""

    @inngest_client.create_function(fn_id="nightly", trigger=inngest.TriggerCron(cron="0 3 * * *"))
    def nightly(ctx: inngest.ContextSync) -> Any:
        return {"name": ctx.event.name, "data": ctx.event.data}

    @inngest_client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="t"))
    def parent(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        return step.invoke("invoke", function=nightly, data={"user": "u1"})

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    output = FunctionRun.objects.get(function_id="tests-parent").output
    assert output["name"] == "inngest/function.invoked"
    assert output["data"]["user"] == "u1"
    assert output["data"]["_inngest"]["fn_id"] == "tests-nightly"


def test_invoke_by_id_targets_another_app_and_an_unknown_target_is_a_step_error(
    inngest_client: inngest.Inngest,
) -> None:
    """I5."""
    other = inngest.Inngest(app_id="other")
    other.create_function(fn_id="fn", trigger=inngest.TriggerEvent(event="never"))(
        lambda ctx: "from other"
    )

    @inngest_client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="t"))
    def parent(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        found = step.invoke_by_id("x", app_id="other", function_id="fn")
        try:
            step.invoke_by_id("y", function_id="missing")
        except inngest.StepError as error:
            return [found, error.message]
        return None

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    assert FunctionRun.objects.get(function_id="tests-parent").output == [
        "from other",
        "could not find function with ID: tests-missing",
    ]


def test_parallel_invoke_run_and_send_event_all_return(inngest_client: inngest.Inngest) -> None:
    """P1 with invoke."""

    @inngest_client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="never"))
    def child(ctx: inngest.ContextSync) -> str:
        return "done"

    @inngest_client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="t"))
    def parent(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        return ctx.group.parallel(
            (
                lambda: step.invoke("invoke", function=child),
                lambda: step.run("1a", lambda: 1),
                lambda: step.run("1b", lambda: 2),
                lambda: step.send_event("send", inngest.Event(name="noop")),
            )
        )

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    output = FunctionRun.objects.get(function_id="tests-parent").output
    assert output[:3] == ["done", 1, 2]
    assert len(output[3]) == 1
