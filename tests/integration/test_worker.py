"""The Worker class in this process: threads for sync handlers, the loop for async ones,
parallel steps that really overlap, burst mode and graceful stop (P4, DESIGN §4.1, §7)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from django.db import connections

import django_inngest as inngest
from django_inngest.models import FunctionRun, RunStep
from django_inngest.runtime import Worker

pytestmark = pytest.mark.django_db(transaction=True)


def overlap(first: RunStep, second: RunStep) -> bool:
    assert first.started_at and first.ended_at and second.started_at and second.ended_at
    return first.started_at < second.ended_at and second.started_at < first.ended_at


def test_sync_parallel_steps_overlap_in_time(inngest_client: inngest.Inngest) -> None:
    """P4 for a sync handler: each branch runs in its own thread."""

    @inngest_client.create_function(fn_id="par", trigger=inngest.TriggerEvent(event="t"))
    def par(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        return ctx.group.parallel(
            tuple(lambda n=n: step.run(f"slow-{n}", lambda: time.sleep(0.4) or n) for n in range(2))
        )

    inngest_client.send_sync(inngest.Event(name="t"))
    Worker(burst=True, concurrency=2).run()
    assert FunctionRun.objects.get().output == [0, 1]
    assert overlap(RunStep.objects.get(step_id="slow-0"), RunStep.objects.get(step_id="slow-1"))


def test_async_parallel_steps_overlap_in_time(inngest_client: inngest.Inngest) -> None:
    """P4 for an async handler: branches are tasks on the worker's loop."""

    async def nap(n: int) -> int:
        await asyncio.sleep(0.4)
        return n

    @inngest_client.create_function(fn_id="apar", trigger=inngest.TriggerEvent(event="t"))
    async def apar(ctx: inngest.Context) -> Any:
        return await ctx.group.parallel(
            tuple(lambda n=n: ctx.step.run(f"nap-{n}", nap, n) for n in range(2))
        )

    inngest_client.send_sync(inngest.Event(name="t"))
    Worker(burst=True, concurrency=2).run()
    assert FunctionRun.objects.get().output == [0, 1]
    assert overlap(RunStep.objects.get(step_id="nap-0"), RunStep.objects.get(step_id="nap-1"))


def test_sync_handlers_run_in_worker_threads_and_async_ones_on_the_loop(
    inngest_client: inngest.Inngest,
) -> None:
    @inngest_client.create_function(fn_id="where-sync", trigger=inngest.TriggerEvent(event="t"))
    def where_sync(ctx: inngest.ContextSync) -> str:
        return threading.current_thread().name

    @inngest_client.create_function(fn_id="where-async", trigger=inngest.TriggerEvent(event="t"))
    async def where_async(ctx: inngest.Context) -> bool:
        asyncio.get_running_loop()
        return threading.current_thread() is threading.main_thread()

    inngest_client.send_sync(inngest.Event(name="t"))
    Worker(burst=True).run()
    assert FunctionRun.objects.get(function_id="tests-where-sync").output.startswith("inngest-run")
    assert FunctionRun.objects.get(function_id="tests-where-async").output is True


def test_runs_of_many_events_all_complete_with_bounded_concurrency(
    inngest_client: inngest.Inngest,
) -> None:
    running = {"now": 0, "max": 0}
    lock = threading.Lock()

    def body() -> None:
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        time.sleep(0.01)
        with lock:
            running["now"] -= 1

    @inngest_client.create_function(fn_id="many", trigger=inngest.TriggerEvent(event="t"))
    def many(ctx: inngest.ContextSync, step: inngest.StepSync) -> int:
        step.run("work", body)
        return int(ctx.event.data["n"])

    inngest_client.send_sync([inngest.Event(name="t", data={"n": n}) for n in range(60)])
    Worker(burst=True, concurrency=4).run()
    assert sorted(FunctionRun.objects.values_list("output", flat=True)) == list(range(60))
    assert 1 < running["max"] <= 4


def test_burst_mode_exits_while_runs_sleep_until_later(inngest_client: inngest.Inngest) -> None:
    @inngest_client.create_function(fn_id="nap", trigger=inngest.TriggerEvent(event="t"))
    def nap(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.sleep("long", 3_600_000)

    inngest_client.send_sync(inngest.Event(name="t"))
    started = time.monotonic()
    Worker(burst=True).run()
    assert time.monotonic() - started < 10
    assert FunctionRun.objects.get().status == "SLEEPING"


def test_stop_lets_the_running_run_finish_before_returning(inngest_client: inngest.Inngest) -> None:
    entered = threading.Event()

    @inngest_client.create_function(fn_id="slow", trigger=inngest.TriggerEvent(event="t"))
    def slow(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        step.run("wait", lambda: entered.set() or time.sleep(0.5))
        return "finished"

    inngest_client.send_sync(inngest.Event(name="t"))
    worker = Worker(poll_interval=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert entered.wait(10)
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert FunctionRun.objects.get().output == "finished"


def test_a_sleeping_run_is_woken_by_a_running_worker(inngest_client: inngest.Inngest) -> None:
    @inngest_client.create_function(fn_id="short-nap", trigger=inngest.TriggerEvent(event="t"))
    def short_nap(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        step.sleep("nap", 300)
        return "awake"

    inngest_client.send_sync(inngest.Event(name="t"))
    worker = Worker(poll_interval=0.05)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while (
            time.monotonic() < deadline
            and not FunctionRun.objects.filter(status="COMPLETED").exists()
        ):
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(10)
    run = FunctionRun.objects.get()
    assert run.output == "awake"
    nap = RunStep.objects.get(step_id="nap")
    assert nap.ended_at and nap.wake_at and nap.ended_at >= nap.wake_at


@pytest.mark.postgres
def test_an_idle_worker_takes_events_as_notified_on_its_listener_thread_within_its_slots(
    inngest_client: inngest.Inngest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_inngest import store

    running = {"now": 0, "max": 0}
    lock = threading.Lock()
    threads: list[str] = []
    pick_up_event = store.pick_up_event

    def watched(*args: Any, **kwargs: Any) -> Any:
        taken = pick_up_event(*args, **kwargs)
        if taken:
            threads.append(threading.current_thread().name)
        return taken

    monkeypatch.setattr(store, "pick_up_event", watched)

    async def body() -> None:  # on the loop: only the worker's slots bound how many at once
        with lock:
            running["now"] += 1
            running["max"] = max(running["max"], running["now"])
        await asyncio.sleep(0.05)
        with lock:
            running["now"] -= 1

    @inngest_client.create_function(fn_id="one", trigger=inngest.TriggerEvent(event="t"))
    async def one(ctx: inngest.Context, step: inngest.Step) -> None:
        await step.run("work", body)

    worker = Worker(concurrency=2)
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        time.sleep(0.5)  # listening
        for _ in range(8):
            inngest_client.send_sync(inngest.Event(name="t"))
            time.sleep(0.02)
        deadline = time.monotonic() + 20
        while (
            time.monotonic() < deadline
            and FunctionRun.objects.filter(status="COMPLETED").count() < 8
        ):
            time.sleep(0.05)
    finally:
        worker.stop()
        thread.join(10)
    assert FunctionRun.objects.filter(status="COMPLETED").count() == 8
    assert threads and set(threads) == {"inngest-listen"}
    assert running["max"] == 2


def test_a_worker_run_on_a_thread_leaves_that_thread_no_open_connection(
    inngest_client: inngest.Inngest,
) -> None:
    """Django keeps a connection per thread; one left open on a thread that ends is
    garbage-collected unclosed (psycopg and Python 3.13's sqlite3 warn of it)."""

    @inngest_client.create_function(fn_id="noop", trigger=inngest.TriggerEvent(event="t"))
    def noop(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        return step.run("one", lambda: "done")

    inngest_client.send_sync(inngest.Event(name="t"))
    left_open: list[str] = []

    def run_then_look() -> None:
        Worker(burst=True).run()
        left_open.extend(
            connection.alias
            for connection in connections.all(initialized_only=True)
            if connection.connection is not None
        )

    thread = threading.Thread(target=run_then_look)
    thread.start()
    thread.join(30)
    assert FunctionRun.objects.get().output == "done"
    assert left_open == []
