"""In memory, without a database: a step store that fails is the engine's failure, not the
handler's (`StoreFailed`, a `BaseException`), and an outage is logged once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pytest

import django_inngest as inngest
from django_inngest.core.engine import Dropped, Execution, Memo, StepRecord
from django_inngest.core.errors import WorkerLostError, error_data
from django_inngest.core.events import Event, PreparedEvent
from django_inngest.core.function import Function
from django_inngest.core.steps import invoke
from django_inngest.runtime.threads import Outage


class BrokenStore:
    """Every write fails, as a database that went away would."""

    def save_step(self, record: StepRecord, events: Sequence[PreparedEvent] = ()) -> Memo:
        raise ConnectionError("server closed the connection unexpectedly")

    def time_out(self, record: StepRecord) -> Memo:
        raise ConnectionError("server closed the connection unexpectedly")


def execute(function: Function) -> Any:
    execution = Execution(
        function=function,
        run_id="run",
        events=[Event(name="t", data={}, id="e", ts=0)],
        attempt=0,
        memos={},
        store=BrokenStore(),
    )
    return invoke(execution)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_failing_store_drops_the_invocation_unseen_by_except_exception(
    kind: str, isolated_registry: object
) -> None:
    caught: list[BaseException] = []
    client = inngest.Inngest(app_id="unit")

    if kind == "sync":

        def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
            try:
                return step.run("s", lambda: 1)  # type: ignore[no-any-return]
            except Exception as error:
                caught.append(error)
                return "swallowed"

    else:

        async def handler(ctx: inngest.Context, step: inngest.Step) -> str:  # type: ignore[misc]
            try:
                return await step.run("s", lambda: 1)  # type: ignore[no-any-return]
            except Exception as error:
                caught.append(error)
                return "swallowed"

    function = client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"))(handler)
    outcome = execute(function)
    assert caught == []
    assert isinstance(outcome, Dropped) and outcome.store_failed
    assert "could not store step 's': ConnectionError" in outcome.reason


def test_worker_lost_error_names_the_losses_and_the_last_step() -> None:
    assert error_data(WorkerLostError(5, "prepare")) == {
        "code": "worker_lost",
        "message": "the worker running this run was lost 5 times without the run making "
        "progress, each time after step 'prepare', its last completed step; the code that "
        "follows may be killing the worker process (out of memory, a crash) or stopping its "
        "heartbeats",
        "name": "WorkerLostError",
        "stack": None,
    }


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("tests.outage")
    outage = Outage(logger)
    with caplog.at_level(logging.DEBUG, "tests.outage"):
        outage.recovered()  # no outage: nothing to say
        for n in range(3):
            outage.failed(f"call {n}", ConnectionError("gone"), dropped=n > 0)
        outage.recovered()
        outage.recovered()
    assert [(r.levelname, r.getMessage().split(";")[0]) for r in caplog.records] == [
        ("WARNING", "database unreachable or failing (call 0)"),
        ("DEBUG", "database still failing (call 1): gone"),
        ("DEBUG", "database still failing (call 2): gone"),
        ("INFO", caplog.records[-1].getMessage().split(";")[0]),
    ]
    assert (
        caplog.records[-1].getMessage().endswith("3 calls failed, 2 runs dropped and queued again")
    )
