"""Steps and memoization in the replay engine, run in memory (SPEC §2, behaviours S*)."""

from __future__ import annotations

import functools
from typing import Any

import django_inngest as inngest
from django_inngest.core import ids
from django_inngest.testing import run_function
from tests.helpers import Runner, make


def test_steps_run_once_each_and_the_run_returns_the_last_value(run: Runner) -> None:
    """S1, in our model: new steps run inline, so a clean run executes its body once."""
    calls: list[str] = []

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> int:
        calls.append("body")
        a = step.run("a", lambda: calls.append("f1") or 1)
        b = step.run("b", lambda x: calls.append("f2") or x + 1, a)
        return b

    result = run(make(handler, retries=0))
    assert result.status == "COMPLETED"
    assert result.output == 2
    assert calls == ["body", "f1", "f2"]
    assert result.steps[ids.hash_step_id("a")].output == 1
    assert result.invocations == 1


def test_repeated_step_ids_get_indexes_and_distinct_hashes(run: Runner) -> None:
    """S2: a loop reusing the id "foo" stores "foo" and "foo:1"."""

    def handler(ctx: inngest.ContextSync) -> list[int]:
        return [ctx.step.run("foo", lambda i=i: i) for i in range(2)]

    result = run(make(handler))
    assert result.output == [0, 1]
    first, second = result.steps[ids.hash_step_id("foo")], result.steps[ids.hash_step_id("foo:1")]
    assert (first.step_id, first.index, first.output) == ("foo", 0, 0)
    assert (second.step_id, second.index, second.output) == ("foo", 1, 1)


def test_step_output_is_the_json_round_trip_on_first_run_as_on_replay(run: Runner) -> None:
    """S4: a tuple comes back as a list even the first time, so code after it never differs."""
    seen: list[Any] = []
    failures = iter([True, False])

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        value = step.run("pair", lambda: (1, 2))
        seen.append(value)
        if next(failures):
            raise RuntimeError("force a replay")
        return value

    result = run(make(handler, retries=1))
    assert seen == [[1, 2], [1, 2]]
    assert result.output == [1, 2]


def test_unserializable_step_output_fails_the_run_without_retry(run: Runner) -> None:
    """S5, with a message that says where in the value and what it is (issue 18)."""
    result = run(make(lambda ctx: ctx.step.run("step_1", object), retries=3))
    assert result.status == "FAILED"
    assert result.invocations == 1
    assert result.error == {
        "code": "output_unserializable",
        "message": 'step "step_1" returned data that cannot be stored: output is an object',
        "name": "OutputUnserializableError",
    }


def test_nested_steps_fail_the_run_and_the_inner_body_never_runs(run: Runner) -> None:
    """S6."""
    ran: list[str] = []

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        def outer() -> None:
            ran.append("outer")
            step.run("step_2", lambda: ran.append("inner"))

        step.run("step_1", outer)
        ran.append("after")

    result = run(make(handler, retries=2))
    assert ran == ["outer"]
    assert result.status == "FAILED"
    assert result.error is not None
    assert result.error["message"] == "Nested steps are not supported."
    assert (result.error["code"], result.error["name"]) == ("step_errored", "CodedError")


def test_steps_called_in_another_order_on_replay_each_run_once(run: Runner) -> None:
    """S7: memos are found by id, not by position."""
    calls: list[str] = []
    invocation = {"n": 0}

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> list[str]:
        invocation["n"] += 1
        order = ["step_1", "step_2"] if invocation["n"] % 2 else ["step_2", "step_1"]
        values = [step.run(s, lambda s=s: calls.append(s) or s) for s in order]
        if invocation["n"] == 1:
            raise RuntimeError("replay me")
        return values

    result = run(make(handler, retries=1))
    assert sorted(calls) == ["step_1", "step_2"]
    assert result.output == ["step_2", "step_1"]


def test_step_arguments_are_passed_positionally_and_partials_carry_keywords(run: Runner) -> None:
    """S8."""

    def add(a: int, b: str, *, suffix: str = "") -> str:
        return f"{a}{b}{suffix}"

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> list[str]:
        return [
            step.run("s", add, 1, "x"),
            step.run("k", functools.partial(add, 2, "y", suffix="!")),
        ]

    assert run(make(handler)).output == ["1x", "2y!"]


def test_context_exposes_the_event_the_run_id_and_attempt(run: Runner) -> None:
    """S9."""
    seen: dict[str, Any] = {}

    def handler(ctx: inngest.ContextSync) -> None:
        seen.update(attempt=ctx.attempt, event=ctx.event, events=ctx.events, run_id=ctx.run_id)

    run(make(handler), {"k": "v"})
    assert seen["attempt"] == 0
    assert isinstance(seen["event"], inngest.Event)
    assert seen["event"].id != "" and seen["event"].ts > 0
    assert seen["event"].data == {"k": "v"}
    assert seen["events"] == [seen["event"]]
    assert len(seen["run_id"]) == 26


def test_an_op_recorded_under_an_id_must_match_on_replay(run: Runner) -> None:
    """A step recorded as a sleep cannot come back as a step.run: the run fails, naming both."""
    invocation = {"n": 0}

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        invocation["n"] += 1
        if invocation["n"] == 1:
            step.sleep("x", 0)
            raise RuntimeError("replay")
        step.run("x", lambda: 1)

    result = run(make(handler, retries=1))
    assert result.status == "FAILED"
    assert result.error is not None
    assert result.error["name"] == "DeterminismError"
    assert "'sleep'" in result.error["message"] and "'run'" in result.error["message"]


def test_send_event_returns_ids_once_and_replay_returns_the_same_ids(run: Runner) -> None:
    """I7, in memory: the events are recorded once although the body replays."""
    seen: list[list[str]] = []
    failures = iter([True, False])

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        ids_ = step.send_event("send", [inngest.Event(name="x"), inngest.Event(name="y")])
        seen.append(ids_)
        if next(failures):
            raise RuntimeError("replay")

    result = run(make(handler, retries=1))
    assert len(seen[0]) == 2 and seen[0] == seen[1]
    assert [e.name for e in result.sent_events] == ["x", "y"]


def test_run_function_runs_in_memory_and_stubs_steps_by_id() -> None:
    """testing.run_function, like the SDK's mocked.trigger: no database, stubbed steps."""

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        charge = step.run("charge", lambda: 1 / 0)
        step.sleep("wait", 3_600_000)
        return [charge, step.run("after", lambda: ctx.event.data["n"])]

    result = run_function(
        make(handler), inngest.Event(name="t", data={"n": 3}), step_stubs={"charge": "stubbed"}
    )
    assert (result.status, result.output) == ("COMPLETED", ["stubbed", 3])


def test_handlers_may_take_keyword_only_ctx_and_step(run: Runner) -> None:
    def handler(*, ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        return step.run("s", lambda: ctx.event.name)

    assert run(make(handler)).output == "t"


def test_replay_aware_logger_is_silent_while_memoized_steps_replay(
    caplog: Any, run: Runner
) -> None:
    """S11 (simplified): a log line before the first step appears once although it replays."""
    failures = iter([True, False])

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        ctx.logger.info("before step")
        step.run("a", lambda: None)
        ctx.logger.info("after step")
        if next(failures):
            raise RuntimeError("replay")

    with caplog.at_level("INFO", logger="django_inngest.functions"):
        run(make(handler, retries=1))
    messages = [r.getMessage() for r in caplog.records if r.name == "django_inngest.functions"]
    assert messages == ["before step", "after step", "after step"]
