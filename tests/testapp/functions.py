"""Functions that end-to-end tests run in real worker processes."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import django_inngest as inngest
from tests.testapp.models import WorkLog

client = inngest.Inngest(app_id="e2e")


@client.create_function(
    fn_id="five-steps", trigger=inngest.TriggerEvent(event="e2e/five"), retries=2
)
def five_steps(ctx: inngest.ContextSync, step: inngest.StepSync) -> int:
    total = 0
    for index in range(5):
        total += step.run(f"step-{index}", _work, index, ctx.event.data.get("ms", 0))
    return total


def _work(index: int, ms: int) -> int:
    if ms:
        time.sleep(ms / 1000)
    return index


@client.create_function(fn_id="slow", trigger=inngest.TriggerEvent(event="e2e/slow"))
def slow(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
    step.run("nap", time.sleep, ctx.event.data["seconds"])
    return "finished"


@client.create_function(fn_id="echo", trigger=inngest.TriggerEvent(event="e2e/echo"))
async def echo(ctx: inngest.Context) -> object:
    return await ctx.step.run("echo", lambda: ctx.event.data)


@client.create_function(
    fn_id="await-order", trigger=inngest.TriggerEvent(event="e2e/order.created")
)
def await_order(ctx: inngest.ContextSync, step: inngest.StepSync) -> object:
    found = step.wait_for_event(
        "paid",
        event="e2e/order.paid",
        if_exp="event.data.order_id == async.data.order_id",
        timeout=600_000,
    )
    return found.data["order_id"] if found else None


def _logged_work(key: str, run_id: str, seconds: float) -> None:
    started = time.time()
    time.sleep(seconds)
    WorkLog.objects.create(key=key, run_id=run_id, started=started, ended=time.time())


@client.create_function(
    fn_id="keyed",
    trigger=inngest.TriggerEvent(event="e2e/keyed"),
    concurrency=[inngest.Concurrency(limit=2, key="event.data.key")],
    throttle=inngest.Throttle(limit=30, period=timedelta(seconds=60), key="event.data.key"),
)
def keyed(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
    step.run("work", _logged_work, ctx.event.data["key"], ctx.run_id, 0.005)


@client.create_function(
    fn_id="hog",
    trigger=inngest.TriggerEvent(event="e2e/hog"),
    concurrency=[inngest.Concurrency(limit=1)],
)
def hog(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
    step.run("work", time.sleep, 0.2)


@client.create_function(fn_id="light", trigger=inngest.TriggerEvent(event="e2e/light"))
def light(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
    step.run("work", time.sleep, 0.01)


# e2e/mixed: three functions on one event, two of which evaluate an expression over its data
# (a trigger filter, a priority), for the poison-event test.
@client.create_function(
    fn_id="mixed-filtered",
    trigger=inngest.TriggerEvent(event="e2e/mixed", expression="event.data.n != 0"),
)
def mixed_filtered(ctx: inngest.ContextSync) -> object:
    return ctx.event.data["n"]


@client.create_function(
    fn_id="mixed-prioritized",
    trigger=inngest.TriggerEvent(event="e2e/mixed"),
    priority=inngest.Priority(run="event.data.n == 1 ? 10 : 0"),
)
def mixed_prioritized(ctx: inngest.ContextSync) -> str:
    return "prioritized"


@client.create_function(fn_id="mixed-plain", trigger=inngest.TriggerEvent(event="e2e/mixed"))
def mixed_plain(ctx: inngest.ContextSync) -> str:
    return "plain"


# Issue 15 point 2: text PostgreSQL's jsonb refuses, from a step's error and from a return.
@client.create_function(fn_id="nul-error", trigger=inngest.TriggerEvent(event="e2e/nul"), retries=0)
def nul_error(ctx: inngest.ContextSync) -> None:
    def fail() -> None:
        raise ValueError("bad \x00 value")

    ctx.step.run("fail", fail)


@client.create_function(
    fn_id="nul-return", trigger=inngest.TriggerEvent(event="e2e/nul"), retries=0
)
def nul_return(ctx: inngest.ContextSync) -> object:
    return {"x": "a\x00b"}


# Declared only in worker processes started with TESTAPP_CRON (its value is the schedule), so
# that other tests' workers never fire it.
if os.environ.get("TESTAPP_CRON"):

    @client.create_function(
        fn_id="cron", trigger=inngest.TriggerCron(cron=os.environ["TESTAPP_CRON"])
    )
    def cron(ctx: inngest.ContextSync) -> object:
        return ctx.event.data["scheduledAt"]


@client.create_function(
    fn_id="five-steps-once", trigger=inngest.TriggerEvent(event="e2e/five.once"), retries=0
)
def five_steps_once(ctx: inngest.ContextSync, step: inngest.StepSync) -> int:
    """`five_steps` without retries: any failure charged to the run ends it FAILED."""
    total = 0
    for index in range(5):
        total += step.run(f"step-{index}", _work, index, ctx.event.data.get("ms", 0))
    return total


def _kill_this_process() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@client.create_function(
    fn_id="kills-its-worker", trigger=inngest.TriggerEvent(event="e2e/kill-worker"), retries=0
)
def kills_its_worker(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
    """A poisonous run: its second step SIGKILLs the worker process running it."""
    step.run("prepare", lambda: "ready")
    step.run("crash", _kill_this_process)
