"""Step and function retries, StepError, NonRetriableError (SPEC §2.4, §3.1, behaviours E*)."""

from __future__ import annotations

from typing import Any

import pytest

import django_inngest as inngest
from django_inngest.core.errors import FunctionDefinitionError
from tests.helpers import Runner, make


class MyError(Exception):
    pass


def test_a_failing_step_is_retried_alone_then_raises_step_error_at_its_call_site(
    run: Runner,
) -> None:
    """E1: 3 attempts with ctx.attempt 0, 1, 2, then StepError; uncaught, the run fails."""
    attempts: list[int] = []
    caught: list[inngest.StepError] = []

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        def boom() -> None:
            attempts.append(ctx.attempt)
            raise ValueError("boom")

        try:
            step.run("s", boom)
        except inngest.StepError as error:
            caught.append(error)
            raise

    result = run(make(handler, retries=2))
    assert attempts == [0, 1, 2]
    assert (caught[0].name, caught[0].message) == ("ValueError", "boom")
    assert isinstance(caught[0].stack, str) and "boom" in caught[0].stack
    assert result.status == "FAILED"
    assert result.invocations == 3
    assert result.error is not None
    assert {k: result.error[k] for k in ("code", "message", "name")} == {
        "code": "step_errored",
        "message": "boom",
        "name": "ValueError",
    }


def test_default_retries_make_five_attempts(run: Runner) -> None:
    """E2."""
    attempts: list[int] = []

    def handler(ctx: inngest.ContextSync) -> None:
        ctx.step.run("s", lambda: attempts.append(ctx.attempt) or 1 / 0)

    run(make(handler))
    assert attempts == [0, 1, 2, 3, 4]


def test_attempt_resets_for_the_step_after_a_retried_step(run: Runner) -> None:
    """E5."""
    seen: list[tuple[str, int]] = []

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        def flaky() -> None:
            seen.append(("flaky", ctx.attempt))
            if ctx.attempt == 0:
                raise ConnectionError("once")

        step.run("flaky", flaky)
        step.run("later", lambda: seen.append(("later", ctx.attempt)))

    assert run(make(handler)).status == "COMPLETED"
    assert seen == [("flaky", 0), ("flaky", 1), ("later", 0)]


def test_non_retriable_error_in_a_step_fails_the_run_at_once(run: Runner) -> None:
    """E6."""
    attempts: list[int] = []

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        def fail() -> None:
            attempts.append(ctx.attempt)
            raise inngest.NonRetriableError("foo")

        step.run("s", fail)

    result = run(make(handler, retries=1))
    assert attempts == [0]
    assert result.error is not None
    assert (result.error["code"], result.error["message"], result.error["name"]) == (
        "non_retriable_error",
        "foo",
        "NonRetriableError",
    )
    assert "Traceback (most recent call last):" in result.error["stack"]


def test_non_retriable_error_outside_steps_fails_the_run_at_once(run: Runner) -> None:
    """E7."""

    def handler(ctx: inngest.ContextSync) -> None:
        raise inngest.NonRetriableError("no")

    result = run(make(handler, retries=3))
    assert (result.status, result.invocations) == ("FAILED", 1)


def test_catching_step_error_and_raising_another_error_reports_the_new_error(run: Runner) -> None:
    """E10."""

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        try:
            step.run("s", lambda: 1 / 0)
        except inngest.StepError:
            raise MyError("I am new") from None

    result = run(make(handler, retries=0))
    assert result.error is not None
    assert (result.error["code"], result.error["message"], result.error["name"]) == (
        "unknown",
        "I am new",
        "MyError",
    )


def test_catching_step_error_lets_the_run_complete(run: Runner) -> None:
    """E11."""

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        try:
            step.run("s", lambda: 1 / 0)
        except inngest.StepError:
            return "recovered"
        return "unreachable"

    result = run(make(handler, retries=0))
    assert (result.status, result.output) == ("COMPLETED", "recovered")


def test_a_function_level_error_retries_without_rerunning_memoized_steps(run: Runner) -> None:
    """E12."""
    calls: list[str] = []
    failures = iter([True, False])

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        step.run("a", lambda: calls.append("a"))
        if next(failures):
            raise RuntimeError("once")
        return "done"

    result = run(make(handler))
    assert (result.status, result.output, calls) == ("COMPLETED", "done", ["a"])


def test_error_output_has_the_user_traceback_without_engine_frames(run: Runner) -> None:
    """E13."""

    def user_code() -> None:
        raise MyError("deep")

    def handler(ctx: inngest.ContextSync) -> None:
        user_code()

    result = run(make(handler, retries=0))
    assert result.error is not None
    stack = result.error["stack"]
    assert stack.startswith("Traceback (most recent call last):")
    assert "user_code" in stack
    assert "django_inngest" not in stack.replace("test_errors_and_retries", "")


def test_retry_after_error_counts_as_an_attempt(run: Runner) -> None:
    attempts: list[int] = []

    def handler(ctx: inngest.ContextSync) -> None:
        attempts.append(ctx.attempt)
        raise inngest.RetryAfterError("later", 1000)

    result = run(make(handler, retries=2))
    assert attempts == [0, 1, 2]
    assert result.error is not None
    assert result.error["code"] == "retry_after_error"


def test_async_function_with_sync_on_failure_is_refused_at_decoration() -> None:
    """E16."""

    async def fn(ctx: inngest.Context) -> None: ...

    def on_failure(ctx: inngest.ContextSync) -> None: ...

    with pytest.raises(FunctionDefinitionError) as error:
        make(fn, fn_id="foo", on_failure=on_failure)
    assert str(error.value) == (
        "an async function cannot have a non-async on_failure handler (function foo)"
    )


def test_sync_function_with_async_on_failure_is_refused_at_decoration() -> None:
    """E16, the reverse."""

    def fn(ctx: inngest.ContextSync) -> None: ...

    async def on_failure(ctx: inngest.Context) -> None: ...

    with pytest.raises(FunctionDefinitionError) as error:
        make(fn, fn_id="foo", on_failure=on_failure)
    assert str(error.value) == (
        "a non-async function cannot have an async on_failure handler (function foo)"
    )


def test_async_handlers_retry_and_memoize_like_sync_ones(run: Runner) -> None:
    attempts: list[int] = []

    async def handler(ctx: inngest.Context, step: inngest.Step) -> Any:
        async def flaky() -> int:
            attempts.append(ctx.attempt)
            if ctx.attempt < 2:
                raise ConnectionError("again")
            return 7

        value = await step.run("flaky", flaky)
        plain = await step.run("plain", lambda: value + 1)
        return [value, plain]

    result = run(make(handler))
    assert (result.status, result.output, attempts) == ("COMPLETED", [7, 8], [0, 1, 2])
