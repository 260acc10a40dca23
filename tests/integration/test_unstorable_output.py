"""What user code produces and the store cannot hold (DESIGN §11): a step output or a run output
fails as `OutputUnserializableError`, naming the step, where in the value and what it is, without
retries; an error whose text the store cannot hold is stored with those characters replaced. The
run always ends, and the admin shows the failed step with retry-from-step.

On PostgreSQL these reproduce issue 15 point 2: a NUL made jsonb refuse the write and the run
was executed again after every lease, forever.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

import django_inngest as inngest
from django_inngest.models import FunctionRun, RunStep
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db


def run_once(client: inngest.Inngest, handler: Any, *, retries: int = 2) -> FunctionRun:
    client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"), retries=retries)(
        handler
    )
    client.send_sync(inngest.Event(name="t"))
    summary = drain()
    run = FunctionRun.objects.get()
    assert run.ended, f"run {run.id} is {run.status} after drain()"
    assert summary.invocations == (1 if run.output.get("code") == "output_unserializable" else 3)
    return run


def test_a_step_returning_a_datetime_fails_naming_the_step_the_path_and_the_type(
    inngest_client: inngest.Inngest,
) -> None:
    def handler(ctx: inngest.ContextSync) -> Any:
        return ctx.step.run("load-user", lambda: {"user": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)})

    run = run_once(inngest_client, handler)
    assert run.status == "FAILED"
    assert run.output == {
        "code": "output_unserializable",
        "message": 'step "load-user" returned data that cannot be stored: '
        'output["user"] is a datetime',
        "name": "OutputUnserializableError",
    }
    [step] = RunStep.objects.all()
    assert (step.step_id, step.status, step.attempts) == ("load-user", "FAILED", 1)
    assert step.error == run.output


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ({"x": "a\x00b"}, 'output["x"] contains a NUL character (\\u0000)'),
        ({"x": ["\ud800"]}, 'output["x"][0] contains a lone surrogate'),
        ({"n": 10**400}, 'output["n"] is an integer of 401 digits'),
        ({"k\x00": 1}, 'output has a key with a NUL character (\\u0000): "k\\u0000"'),
    ],
)
def test_a_step_output_the_store_cannot_hold_fails_the_run_and_says_where(
    inngest_client: inngest.Inngest, value: Any, problem: str
) -> None:
    run = run_once(inngest_client, lambda ctx: ctx.step.run("s", lambda: value))
    assert run.status == "FAILED"
    assert run.output["message"].startswith(
        f'step "s" returned data that cannot be stored: {problem}'
    )


def test_a_step_output_over_4_mib_fails_the_run_with_its_size(
    inngest_client: inngest.Inngest,
) -> None:
    """Inngest's limit on a step's output: 4 MiB of JSON. One byte under it is stored."""
    limit = 4 * 1024 * 1024
    fits = "é" * ((limit - 2) // 2)  # two bytes of UTF-8 each, and the quotes
    too_big = fits + "x"

    def handler(ctx: inngest.ContextSync) -> Any:
        ctx.step.run("fits", lambda: fits)
        return ctx.step.run("too-big", lambda: too_big)

    run = run_once(inngest_client, handler)
    assert run.status == "FAILED"
    assert run.output["message"] == (
        'step "too-big" returned data that cannot be stored: output is 4,194,305 bytes of JSON, '
        "more than the limit of 4,194,304 bytes"
    )
    assert RunStep.objects.get(step_id="fits").status == "COMPLETED"
    assert RunStep.objects.get(step_id="too-big").status == "FAILED"


def test_a_return_value_over_4_mib_fails_the_run_with_its_size(
    inngest_client: inngest.Inngest,
) -> None:
    run = run_once(inngest_client, lambda ctx: ["x" * (4 * 1024 * 1024)])
    assert run.status == "FAILED"
    assert run.output["message"] == (
        'function "tests-f" returned data that cannot be stored: output is 4,194,308 bytes of '
        "JSON, more than the limit of 4,194,304 bytes"
    )


def test_a_handler_returning_a_nul_fails_the_run_and_says_where(
    inngest_client: inngest.Inngest,
) -> None:
    """Issue 15 point 2: `return {"x": "a\\x00b"}`."""
    run = run_once(inngest_client, lambda ctx: {"x": "a\x00b"})
    assert run.status == "FAILED"
    assert run.output["message"] == (
        'function "tests-f" returned data that cannot be stored: '
        'output["x"] contains a NUL character (\\u0000)'
    )


def test_a_handler_returning_a_model_instance_names_its_class(
    inngest_client: inngest.Inngest,
) -> None:
    user = User(username="ada")
    run = run_once(inngest_client, lambda ctx: {"user": user})
    assert run.output["message"].endswith('output["user"] is a User')


@pytest.mark.parametrize("bad", ["\x00", "\ud800"])
def test_a_step_raising_an_error_with_text_the_store_cannot_hold_fails_with_it_replaced(
    inngest_client: inngest.Inngest, bad: str
) -> None:
    """Issue 15 point 2: `raise ValueError("bad \\x00 value")` in a step."""

    def failing() -> None:
        raise ValueError(f"bad {bad} value")

    run = run_once(inngest_client, lambda ctx: ctx.step.run("s", failing))
    assert run.status == "FAILED"
    assert run.output["message"] == "bad \ufffd value"
    assert (run.output["code"], run.output["name"]) == ("step_errored", "ValueError")
    step = RunStep.objects.get()
    assert step.error["message"] == "bad \ufffd value"
    assert [attempt["error"]["message"] for attempt in step.history] == ["bad \ufffd value"] * 2


def test_a_handler_raising_an_error_with_a_nul_fails_with_it_replaced(
    inngest_client: inngest.Inngest,
) -> None:
    def handler(ctx: inngest.ContextSync) -> None:
        raise ValueError("bad \x00 value")

    run = run_once(inngest_client, handler)
    assert run.status == "FAILED"
    assert run.output["message"] == "bad \ufffd value"
    assert "\x00" not in run.output["stack"]


def test_the_run_page_shows_the_failed_step_and_offers_retry_from_it(
    inngest_client: inngest.Inngest, admin_client: Client
) -> None:
    def handler(ctx: inngest.ContextSync) -> Any:
        ctx.step.run("before", lambda: 1)
        return ctx.step.run("load-user", lambda: {"user": dt.date(2026, 1, 1)})

    run = run_once(inngest_client, handler)
    page = admin_client.get(f"/admin/django_inngest/functionrun/{run.id}/change/").content.decode()
    assert "No step recorded yet" not in page
    assert "load-user" in page
    assert "output[&quot;user&quot;] is a date" in page
    assert "Retry from step “load-user”" in page
    response = admin_client.post(f"/admin/django_inngest/functionrun/{run.id}/retry/")
    assert response.status_code == 302
    retried = FunctionRun.objects.get(original_run=run)
    assert list(retried.steps.values_list("step_id", flat=True)) == ["before"]


def test_an_async_step_returning_a_set_fails_the_same_way(inngest_client: inngest.Inngest) -> None:
    async def handler(ctx: inngest.Context) -> Any:
        return await ctx.step.run("tags", lambda: {"tags": [{"a", "b"}]})

    run = run_once(inngest_client, handler)
    assert run.output["message"] == (
        'step "tags" returned data that cannot be stored: output["tags"][0] is a set'
    )
    assert RunStep.objects.get().status == "FAILED"


def test_an_invoked_function_returning_a_huge_number_fails_and_its_parent_step_says_why(
    inngest_client: inngest.Inngest,
) -> None:
    """Issue 15 point 1: an invoked function returning such a number crashed the worker."""
    child = inngest_client.create_function(
        fn_id="child", trigger=inngest.TriggerEvent(event="c"), retries=0
    )(lambda ctx: {"n": 10**400})

    @inngest_client.create_function(
        fn_id="parent", trigger=inngest.TriggerEvent(event="p"), retries=0
    )
    def parent(ctx: inngest.ContextSync) -> Any:
        return ctx.step.invoke("call", function=child)

    inngest_client.send_sync(inngest.Event(name="p"))
    drain()
    runs = dict(FunctionRun.objects.values_list("function_id", "status"))
    assert runs == {"tests-parent": "FAILED", "tests-child": "FAILED"}
    parent_run = FunctionRun.objects.get(function_id="tests-parent")
    assert parent_run.output["message"] == (
        'function "tests-child" returned data that cannot be stored: '
        'output["n"] is an integer of 401 digits, outside the range of a 64-bit float '
        "(about ±1.8e308)"
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda step: step.run("load\x00user", lambda: 1),
            "step id 'load\\x00user' contains a NUL character (\\u0000): it cannot be stored",
        ),
        (
            lambda step: step.wait_for_event("w", event="t\ud800", timeout=1000),
            "step 'w': wait_for_event event name contains a lone surrogate (\"\\ud800\")",
        ),
        (
            lambda step: step.wait_for_event(
                "w", event="t.done", if_exp="async.data.x == 'a\x00'", timeout=1000
            ),
            "step 'w': wait_for_event if_exp contains a NUL character",
        ),
    ],
    ids=["step id", "wait event name", "wait if_exp"],
)
def test_text_the_store_cannot_hold_in_step_ids_and_waits_fails_the_attempt_in_the_handler(
    inngest_client: inngest.Inngest, call: Any, message: str
) -> None:
    run = run_once(inngest_client, lambda ctx: call(ctx.step))
    assert run.status == "FAILED"
    assert run.output["name"] == "ValueError"
    assert run.output["message"].startswith(message)
    assert not RunStep.objects.exists()
