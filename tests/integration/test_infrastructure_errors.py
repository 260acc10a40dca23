"""The engine's own database writes failing for real (a trigger that refuses the write, or the
connection terminated on PostgreSQL): user code never sees the error, no attempt is used, and
the run goes on from its last checkpoint (DESIGN §11)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

import django_inngest as inngest
from django_inngest.core.clock import FrozenClock
from django_inngest.models import Event, FunctionRun, Pause, QueueItem, RunStep
from django_inngest.runtime import Worker
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db(transaction=True)

FAULT = "injected_fault"


def install_fault(table: str, when: str = "1 = 1", event: str = "INSERT") -> None:
    """From now on, the database refuses `event` on `table` rows for which `when` holds (NEW.
    names the row), as a failing disk or a failover would: a real error from the database."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"CREATE OR REPLACE FUNCTION {FAULT}() RETURNS trigger AS $$ BEGIN "
                f"RAISE EXCEPTION 'injected fault' USING ERRCODE = 'connection_failure'; "
                f"END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER {FAULT} BEFORE {event} ON {table} FOR EACH ROW "
                f"WHEN ({when}) EXECUTE FUNCTION {FAULT}()"
            )
        else:
            cursor.execute(
                f"CREATE TRIGGER {FAULT} BEFORE {event} ON {table} FOR EACH ROW WHEN {when} "
                f"BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            )


def remove_fault(table: str) -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP TRIGGER IF EXISTS {FAULT} ON {table}")
        else:
            cursor.execute(f"DROP TRIGGER IF EXISTS {FAULT}")


@contextlib.contextmanager
def no_fault_left(table: str) -> Iterator[None]:
    try:
        yield
    finally:
        remove_fault(table)


STEPS, RUNS, EVENTS, PAUSES = (
    RunStep._meta.db_table,
    FunctionRun._meta.db_table,
    Event._meta.db_table,
    Pause._meta.db_table,
)


class Faulty:
    """Records what the handler saw; the first call of `body` installs the fault, the second
    removes it (called in a step body, or outside steps: once per invocation either way,
    since a step whose result was not stored runs again)."""

    def __init__(self, table: str, when: str = "1 = 1", event: str = "INSERT") -> None:
        self.table, self.when, self.event = table, when, event
        self.calls = 0
        self.caught: list[BaseException] = []

    def body(self) -> str:
        self.calls += 1
        if self.calls == 1:
            install_fault(self.table, self.when, self.event)
        else:
            remove_fault(self.table)
        return "stored"


def assert_completed_on_first_attempt(output: Any) -> None:
    run = FunctionRun.objects.get(function_id="tests-f")
    assert (run.status, run.output, run.attempt) == ("COMPLETED", output, 0)
    assert set(RunStep.objects.filter(run=run).values_list("attempts", "status")) == {
        (1, "COMPLETED")
    }


def test_a_failing_step_checkpoint_is_not_seen_by_the_handler_nor_charged_as_an_attempt(
    inngest_client: inngest.Inngest,
) -> None:
    faulty = Faulty(STEPS)

    @inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"), retries=0)
    def f(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        try:
            return step.run("s", faulty.body)
        except Exception as error:  # what a careless handler does
            faulty.caught.append(error)
            return "swallowed"

    with no_fault_left(STEPS):
        inngest_client.send_sync(inngest.Event(name="t"))
        drain()
    assert faulty.caught == []
    assert faulty.calls == 2  # the step ran again: its first result was never stored
    assert_completed_on_first_attempt("stored")


def test_an_async_handler_does_not_see_a_failing_checkpoint_either(
    inngest_client: inngest.Inngest,
) -> None:
    faulty = Faulty(STEPS)

    @inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"), retries=0)
    async def f(ctx: inngest.Context) -> str:
        try:
            return await ctx.step.run("s", faulty.body)
        except Exception as error:
            faulty.caught.append(error)
            return "swallowed"

    with no_fault_left(STEPS):
        inngest_client.send_sync(inngest.Event(name="t"))
        drain()
    assert faulty.caught == []
    assert_completed_on_first_attempt("stored")


def test_a_failing_send_event_write_sends_nothing_and_is_not_charged(
    inngest_client: inngest.Inngest,
) -> None:
    faulty = Faulty(EVENTS, when="NEW.name = 'sent'")

    @inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"), retries=0)
    def f(ctx: inngest.ContextSync, step: inngest.StepSync) -> int:
        faulty.body()  # outside a step: on every invocation
        try:
            return len(step.send_event("send", inngest.Event(name="sent")))
        except Exception as error:
            faulty.caught.append(error)
            return -1

    with no_fault_left(EVENTS):
        inngest_client.send_sync(inngest.Event(name="t"))
        drain()
    assert faulty.caught == []
    assert Event.objects.filter(name="sent").count() == 1
    assert_completed_on_first_attempt(1)


def test_a_failing_checkpoint_in_a_parallel_branch_drops_the_whole_invocation(
    inngest_client: inngest.Inngest,
) -> None:
    faulty = Faulty(STEPS, when="NEW.step_id = 'b'")

    @inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"), retries=0)
    def f(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        try:
            return ctx.group.parallel(
                (lambda: step.run("a", lambda: "a"), lambda: step.run("b", faulty.body))
            )
        except Exception as error:
            faulty.caught.append(error)
            return "swallowed"

    with no_fault_left(STEPS):
        inngest_client.send_sync(inngest.Event(name="t"))
        drain()
    assert faulty.caught == []
    assert_completed_on_first_attempt(["a", "stored"])


def test_a_failing_checkpoint_in_an_async_parallel_branch_drops_the_whole_invocation(
    inngest_client: inngest.Inngest,
) -> None:
    faulty = Faulty(STEPS, when="NEW.step_id = 'b'")

    @inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"), retries=0)
    async def f(ctx: inngest.Context) -> Any:
        try:
            return await ctx.group.parallel(
                (lambda: ctx.step.run("a", lambda: "a"), lambda: ctx.step.run("b", faulty.body))
            )
        except Exception as error:
            faulty.caught.append(error)
            return "swallowed"

    with no_fault_left(STEPS):
        inngest_client.send_sync(inngest.Event(name="t"))
        drain()
    assert faulty.caught == []
    assert_completed_on_first_attempt(["a", "stored"])


def test_a_failing_write_of_a_timed_out_wait_is_not_charged(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """The wait's timeout is reached on the engine's clock; ending it fails once."""
    invocations: list[int] = []
    caught: list[BaseException] = []

    @inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"), retries=0)
    def f(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        invocations.append(1)
        if len(invocations) == 2:  # the invocation that ends the wait
            install_fault(PAUSES, event="DELETE")
        elif len(invocations) == 3:
            remove_fault(PAUSES)
        try:
            found = step.wait_for_event("hear", event="never", timeout=60_000)
        except Exception as error:
            caught.append(error)
            return "swallowed"
        return "timed out" if found is None else "heard"

    with no_fault_left(PAUSES):
        inngest_client.send_sync(inngest.Event(name="t"))
        drain()
        assert FunctionRun.objects.get().status == "WAITING"
        clock.advance(timedelta(minutes=2))
        drain()
    assert caught == []
    assert len(invocations) == 3
    assert_completed_on_first_attempt("timed out")


@pytest.mark.postgres
def test_a_connection_terminated_during_a_step_is_reconnected_and_not_charged(
    inngest_client: inngest.Inngest,
) -> None:
    """pg_terminate_backend on this thread's own connection, and only on it."""
    import psycopg

    caught: list[BaseException] = []
    calls: list[int] = []

    def terminate_my_connection() -> str:
        calls.append(1)
        if len(calls) == 1:
            pid = connection.connection.info.backend_pid  # type: ignore[union-attr]
            params = connection.get_connection_params()
            keys = ("dbname", "user", "password", "host", "port")
            with psycopg.connect(**{k: params[k] for k in keys if params.get(k)}) as other:
                other.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE pid = %s AND datname = current_database()",
                    [pid],
                )
        return "stored"

    @inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"), retries=0)
    def f(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        try:
            return step.run("s", terminate_my_connection)
        except Exception as error:
            caught.append(error)
            return "swallowed"

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    assert caught == []
    assert len(calls) == 2
    assert_completed_on_first_attempt("stored")


# --- the worker: writes made after the handler returned ------------------------------------


def test_a_failing_run_end_drops_the_run_and_it_completes_on_its_next_claim(
    inngest_client: inngest.Inngest, caplog: pytest.LogCaptureFixture
) -> None:
    invocations: list[int] = []

    @inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"), retries=0)
    def f(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        invocations.append(1)
        step.run("s", lambda: "stored")
        if len(invocations) == 1:  # its end will fail once
            install_fault(RUNS, "NEW.status = 'COMPLETED'", "UPDATE")
        else:
            remove_fault(RUNS)
        return "done"

    with no_fault_left(RUNS), caplog.at_level(logging.WARNING, "django_inngest.worker"):
        inngest_client.send_sync(inngest.Event(name="t"))
        Worker(burst=True, concurrency=2).run()
    assert len(invocations) == 2
    assert_completed_on_first_attempt("done")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "database unreachable or failing" in warnings[0]


@pytest.mark.parametrize("pause", ["sleep", "wait"])
def test_a_failing_sleep_or_wait_registration_is_not_charged(
    inngest_client: inngest.Inngest, pause: str
) -> None:
    invocations: list[int] = []
    table, when = (STEPS, "NEW.status = 'SLEEPING'") if pause == "sleep" else (PAUSES, "1 = 1")

    @inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"), retries=0)
    def f(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        invocations.append(1)
        if len(invocations) == 1:
            install_fault(table, when)
        else:
            remove_fault(table)
        if pause == "sleep":
            step.sleep("nap", 3_600_000)
        else:
            step.wait_for_event("hear", event="never", timeout=3_600_000)
        return "woken"

    with no_fault_left(table):
        inngest_client.send_sync(inngest.Event(name="t"))
        Worker(burst=True).run()
    run = FunctionRun.objects.get()
    assert (run.status, run.attempt) == ("SLEEPING" if pause == "sleep" else "WAITING", 0)
    assert len(invocations) == 2
    assert RunStep.objects.get(run=run).status == ("SLEEPING" if pause == "sleep" else "WAITING")


def test_a_failing_checkpoint_of_an_async_handler_in_the_worker_is_not_charged(
    inngest_client: inngest.Inngest,
) -> None:
    """Through the worker's group writer and I/O threads, not drain()'s."""
    faulty = Faulty(STEPS)

    @inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"), retries=0)
    async def f(ctx: inngest.Context) -> str:
        try:
            return await ctx.step.run("s", faulty.body)
        except Exception as error:
            faulty.caught.append(error)
            return "swallowed"

    with no_fault_left(STEPS):
        inngest_client.send_sync(inngest.Event(name="t"))
        Worker(burst=True).run()
    assert faulty.caught == []
    assert_completed_on_first_attempt("stored")


def test_a_write_that_keeps_failing_ends_the_run_as_worker_lost_after_max_lease_losses(
    inngest_client: inngest.Inngest, settings: Any
) -> None:
    """A run whose checkpoint the database always refuses is given back each time and ends
    after MAX_LEASE_LOSSES losses, instead of being retried forever."""
    settings.INNGEST = {**settings.INNGEST, "MAX_LEASE_LOSSES": 3}
    calls: list[int] = []

    @inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"), retries=0)
    def f(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.run("first", lambda: 1)
        step.run("refused", lambda: calls.append(1))

    with no_fault_left(STEPS):
        install_fault(STEPS, "NEW.step_id = 'refused'")
        inngest_client.send_sync(inngest.Event(name="t"))
        drain()
    run = FunctionRun.objects.get(function_id="tests-f")
    assert run.status == "FAILED"
    assert run.output["name"] == "WorkerLostError"
    assert "lost 3 times" in run.output["message"]
    assert "after step 'first'" in run.output["message"]
    assert len(calls) == 3
    assert run.attempt == 0


def test_failing_heartbeats_are_logged_once_and_the_run_goes_on(
    inngest_client: inngest.Inngest, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Heartbeats every 0.05 s all fail while the step runs; the lease (30 s) outlives them."""
    settings.INNGEST = {**settings.INNGEST, "HEARTBEAT_SECONDS": 0.05, "SWEEP_SECONDS": 60}
    queue = QueueItem._meta.db_table
    caught: list[BaseException] = []

    def slow() -> str:
        time.sleep(0.6)
        return "stored"

    @inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"), retries=0)
    def f(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        try:
            return step.run("s", slow)
        except Exception as error:
            caught.append(error)
            return "swallowed"

    with no_fault_left(queue), caplog.at_level(logging.DEBUG, "django_inngest.worker"):
        install_fault(
            queue,
            "OLD.lease_owner IS NOT NULL AND NEW.lease_owner = OLD.lease_owner",
            "UPDATE",
        )
        inngest_client.send_sync(inngest.Event(name="t"))
        Worker(burst=True, concurrency=1).run()
    assert caught == []
    assert_completed_on_first_attempt("stored")
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "(_heartbeat)" in warnings[0]
    repeated = [r for r in caplog.records if r.getMessage().startswith("database still failing")]
    assert len(repeated) >= 3, "the heartbeats did not keep failing; the test proves nothing"
