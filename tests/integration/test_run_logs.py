"""What the engine logs about a run: start, sleep, wait, resume, retry, failure, cancellation,
and an event that matched no function; each line carries `run_id` and `fn` as record
attributes (`extra=`) and in its message (issue 18, docs/workers.md)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

import django_inngest as inngest
from django_inngest.core.clock import FrozenClock
from django_inngest.models import FunctionRun
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db


def lines(caplog: pytest.LogCaptureFixture, start: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage().startswith(start)]


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="django_inngest")
    return caplog


def test_a_run_logs_its_start_sleep_resume_and_end_with_its_fields(
    inngest_client: inngest.Inngest, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    @inngest_client.create_function(fn_id="napper", trigger=inngest.TriggerEvent(event="t"))
    def napper(ctx: inngest.ContextSync) -> str:
        ctx.step.run("one", lambda: 1)
        ctx.step.sleep("nap", timedelta(minutes=5))
        return "done"

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    clock.advance(timedelta(minutes=5))
    drain()
    run = FunctionRun.objects.get()
    expected = [
        (logging.DEBUG, f"run started run_id={run.id} fn=tests-napper attempt=0"),
        (logging.DEBUG, f"run sleeping run_id={run.id} fn=tests-napper until="),
        (logging.DEBUG, f"run resumed run_id={run.id} fn=tests-napper attempt=0 steps_done=2"),
        (logging.INFO, f"run completed run_id={run.id} fn=tests-napper"),
    ]
    records = [r for r in caplog.records if r.getMessage().startswith("run ")]
    assert len(records) == len(expected)
    for record, (level, start) in zip(records, expected, strict=True):
        assert record.levelno == level
        assert record.getMessage().startswith(start)
        assert (record.run_id, record.fn) == (run.id, "tests-napper")  # type: ignore[attr-defined]
    assert records[0].args, "arguments are passed lazily, not formatted in"


def test_a_retry_is_logged_at_info_with_the_step_and_the_error(
    inngest_client: inngest.Inngest, caplog: pytest.LogCaptureFixture
) -> None:
    attempts = iter([ConnectionError("card service down"), None])

    def charge() -> str:
        error = next(attempts)
        if error:
            raise error
        return "charged"

    @inngest_client.create_function(fn_id="charge", trigger=inngest.TriggerEvent(event="t"))
    def charger(ctx: inngest.ContextSync) -> str:
        return ctx.step.run("charge-card", charge)

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    [retry] = lines(caplog, "run retrying")
    assert retry.levelno == logging.INFO
    assert "attempt=1" in retry.getMessage()
    assert "step=charge-card error=ConnectionError: card service down" in retry.getMessage()
    assert retry.error_name == "ConnectionError"  # type: ignore[attr-defined]
    assert retry.fn == "tests-charge"  # type: ignore[attr-defined]


def test_a_failure_is_logged_as_a_warning_with_the_error_name_and_message(
    inngest_client: inngest.Inngest, caplog: pytest.LogCaptureFixture
) -> None:
    @inngest_client.create_function(
        fn_id="refuse", trigger=inngest.TriggerEvent(event="t"), retries=0
    )
    def refuse(ctx: inngest.ContextSync) -> None:
        raise inngest.NonRetriableError("order 7 is already shipped")

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    run = FunctionRun.objects.get()
    [failed] = lines(caplog, "run failed")
    assert failed.levelno == logging.WARNING
    assert failed.getMessage() == (
        f"run failed run_id={run.id} fn=tests-refuse "
        "error=NonRetriableError: order 7 is already shipped"
    )
    assert (failed.run_id, failed.error) == (run.id, "order 7 is already shipped")  # type: ignore[attr-defined]


def test_a_wait_for_an_event_is_logged_with_the_event_name(
    inngest_client: inngest.Inngest, caplog: pytest.LogCaptureFixture
) -> None:
    @inngest_client.create_function(fn_id="awaits", trigger=inngest.TriggerEvent(event="t"))
    def awaits(ctx: inngest.ContextSync) -> None:
        ctx.step.wait_for_event("paid", event="shop/paid", timeout=timedelta(hours=1))

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    run = FunctionRun.objects.get()
    [waiting] = lines(caplog, "run waiting")
    assert waiting.levelno == logging.DEBUG
    assert waiting.getMessage().startswith(
        f"run waiting run_id={run.id} fn=tests-awaits for=shop/paid until="
    )


def test_a_cancellation_is_logged_at_info(
    inngest_client: inngest.Inngest, caplog: pytest.LogCaptureFixture
) -> None:
    @inngest_client.create_function(fn_id="long", trigger=inngest.TriggerEvent(event="t"))
    def long(ctx: inngest.ContextSync) -> None:
        ctx.step.sleep("nap", timedelta(days=1))

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    run = FunctionRun.objects.get()
    inngest_client.cancel(run.id)
    [cancelled] = lines(caplog, "run cancelled")
    assert cancelled.levelno == logging.INFO
    assert cancelled.getMessage() == f"run cancelled run_id={run.id} fn=tests-long"
    assert (cancelled.run_id, cancelled.fn) == (run.id, "tests-long")  # type: ignore[attr-defined]


def test_an_event_no_function_listens_to_is_logged_at_debug(
    inngest_client: inngest.Inngest, caplog: pytest.LogCaptureFixture
) -> None:
    @inngest_client.create_function(fn_id="other", trigger=inngest.TriggerEvent(event="t"))
    def other(ctx: inngest.ContextSync) -> None:
        return None

    [event_id] = inngest_client.send_sync(inngest.Event(name="shop/nobody.listens"))
    drain()
    [unmatched] = lines(caplog, "event matched no function")
    assert unmatched.levelno == logging.DEBUG
    assert unmatched.getMessage() == (
        f"event matched no function event_id={event_id} name=shop/nobody.listens"
    )
