"""Parallel steps (SPEC §2.9, behaviours P*), in memory."""

from __future__ import annotations

import asyncio
from typing import Any

import django_inngest as inngest
from tests.helpers import Runner, make


def test_parallel_returns_results_in_callable_order_and_each_step_runs_once(run: Runner) -> None:
    """P1 without invoke."""
    calls: list[str] = []

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        results = ctx.group.parallel(
            (
                lambda: step.run("1a", lambda: calls.append("1a") or 1),
                lambda: step.run("1b", lambda: calls.append("1b") or 2),
                lambda: step.send_event("send", inngest.Event(name="noop")),
            )
        )
        step.run("after", lambda: calls.append("after"))
        return results

    result = run(make(handler))
    assert result.output[:2] == [1, 2]
    assert len(result.output[2]) == 1
    assert sorted(calls) == ["1a", "1b", "after"]


def test_groups_of_sequential_steps_return_their_lists(run: Runner) -> None:
    """P2."""

    def group(step: inngest.StepSync, names: list[str]) -> list[str]:
        return [step.run(name, lambda name=name: name) for name in names]

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        return ctx.group.parallel(
            (
                lambda: group(step, ["1a", "1b"]),
                lambda: group(step, ["2a", "2b", "2c"]),
                lambda: step.run("3", lambda: "3"),
            )
        )

    assert run(make(handler)).output == [["1a", "1b"], ["2a", "2b", "2c"], "3"]


def _race_function(mode: inngest.ParallelMode, order: list[str]) -> inngest.Function:
    async def record(name: str, delay: float) -> str:
        await asyncio.sleep(delay)
        order.append(name)
        return name

    async def handler(ctx: inngest.Context, step: inngest.Step) -> Any:
        async def group_a() -> list[str]:
            return [
                await step.run("a.1", record, "a.1", 0),
                await step.run("a.2", record, "a.2", 0),
            ]

        async def group_b() -> list[str]:
            return [
                await step.run("b.1", record, "b.1", 0.05),
                await step.run("b.2", record, "b.2", 0.05),
            ]

        return await ctx.group.parallel((group_a, group_b), parallel_mode=mode)

    return make(handler, fn_id=f"race-{mode.value}")


def test_wait_mode_advances_groups_in_lock_step(run: Runner) -> None:
    """P3, WAIT: a.2 waits for the slow b.1."""
    order: list[str] = []
    run(_race_function(inngest.ParallelMode.WAIT, order))
    assert order == ["a.1", "b.1", "a.2", "b.2"]


def test_race_mode_lets_each_group_advance_on_its_own(run: Runner) -> None:
    """P3, RACE."""
    order: list[str] = []
    run(_race_function(inngest.ParallelMode.RACE, order))
    assert order == ["a.1", "a.2", "b.1", "b.2"]


def test_a_failing_branch_retries_while_finished_branches_stay_memoized(run: Runner) -> None:
    calls: list[str] = []

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        def flaky() -> str:
            calls.append(f"flaky{ctx.attempt}")
            if ctx.attempt == 0:
                raise ConnectionError("once")
            return "ok"

        return ctx.group.parallel(
            (
                lambda: step.run("steady", lambda: calls.append("steady") or 1),
                lambda: step.run("flaky", flaky),
            )
        )

    result = run(make(handler))
    assert result.output == [1, "ok"]
    assert calls == ["steady", "flaky0", "flaky1"]


def test_sleeps_in_parallel_branches_suspend_until_the_later_one(run: Runner) -> None:
    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        ctx.group.parallel((lambda: step.sleep("short", 1000), lambda: step.sleep("long", 5000)))
        return "awake"

    result = run(make(handler))
    assert (result.status, result.output) == ("COMPLETED", "awake")
