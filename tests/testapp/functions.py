"""Functions that end-to-end tests run in real worker processes."""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta

import django_inngest as inngest
from django_inngest import killpoints
from tests.testapp.models import SideEffect, WorkLog

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
# (a trigger filter, a priority), for the poison-event test: a good event (n > 0) is decided at
# once, a poison one (n = 0 and a long `items` list) spends the whole cost budget.
COSTLY = "event.data.n > 0 || event.data.items.exists(x, event.data.items.exists(y, x + y < 0))"


@client.create_function(
    fn_id="mixed-filtered",
    trigger=inngest.TriggerEvent(event="e2e/mixed", expression=COSTLY),
)
def mixed_filtered(ctx: inngest.ContextSync) -> object:
    return ctx.event.data["n"]


@client.create_function(
    fn_id="mixed-prioritized",
    trigger=inngest.TriggerEvent(event="e2e/mixed"),
    priority=inngest.Priority(run=f"({COSTLY}) ? 10 : 0"),
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


@client.create_function(
    fn_id="out-of-stock", trigger=inngest.TriggerEvent(event="e2e/out-of-stock"), retries=0
)
def out_of_stock(ctx: inngest.ContextSync) -> None:
    raise ValueError(f"no stock for item {ctx.event.data['item']}")


def fetch_urls(product_id: int) -> list[str]:
    """A plain function that uses the ORM, called from an async handler's step (the README's
    shape)."""
    WorkLog.objects.create(key=f"product-{product_id}", run_id="", started=0, ended=0)
    return [f"https://img.example/{log.key}.png" for log in WorkLog.objects.order_by("id")]


@client.create_function(
    fn_id="import-product-images",
    trigger=inngest.TriggerEvent(event="shop/product.imported"),
    retries=4,
)
async def import_images(ctx: inngest.Context) -> dict[str, int]:
    urls = await ctx.step.run("fetch-urls", fetch_urls, ctx.event.data["product_id"])
    await ctx.step.sleep("cool-down", timedelta(minutes=5))
    return {"count": len(urls)}


# Deploys (tests/e2e/test_fleet.py): F is in every worker's code; G only in worker processes
# started with TESTAPP_FLEET_G, as a function added by a newer deploy.
@client.create_function(fn_id="fleet-f", trigger=inngest.TriggerEvent(event="e2e/fleet.f"))
def fleet_f(ctx: inngest.ContextSync) -> dict[str, int]:
    return {"pid": os.getpid()}


if os.environ.get("TESTAPP_FLEET_G"):

    @client.create_function(fn_id="fleet-g", trigger=inngest.TriggerEvent(event="e2e/fleet.g"))
    def fleet_g(ctx: inngest.ContextSync, step: inngest.StepSync) -> dict[str, int]:
        step.run("work", time.sleep, ctx.event.data.get("seconds", 0))
        return {"pid": os.getpid()}


# -- the fault suite's functions (tests/faults): every step body appends to the SideEffect
# ledger, so the suite can count how often each body ran.


def _effect(run_id: str, name: str, park: str | None = None) -> str:
    SideEffect.objects.create(run_id=run_id, step=name, pid=os.getpid(), at=time.time())
    if park is not None:
        killpoints.park(park)  # a worker started to be killed here waits for it
    return name


@client.create_function(fn_id="faults-steps", trigger=inngest.TriggerEvent(event="faults/steps"))
def fault_steps(ctx: inngest.ContextSync, step: inngest.StepSync) -> list[str]:
    """Three steps; the second parks in its body (after its ledger row) at `step-body`."""
    return [
        step.run(f"s{n}", _effect, ctx.run_id, f"s{n}", "step-body" if n == 1 else None)
        for n in range(3)
    ]


@client.create_function(fn_id="faults-sleep", trigger=inngest.TriggerEvent(event="faults/sleep"))
def fault_sleep(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
    step.run("before", _effect, ctx.run_id, "before")
    step.sleep("nap", ctx.event.data.get("ms", 300))
    return step.run("after", _effect, ctx.run_id, "after")


@client.create_function(fn_id="faults-wait", trigger=inngest.TriggerEvent(event="faults/wait"))
def fault_wait(ctx: inngest.ContextSync, step: inngest.StepSync) -> object:
    step.run("before", _effect, ctx.run_id, "before")
    found = step.wait_for_event(
        "go",
        event="faults/go",
        if_exp="async.data.k == event.data.k",
        timeout=ctx.event.data.get("timeout_ms", 600_000),
    )
    step.run("after", _effect, ctx.run_id, "after")
    return found.data["k"] if found else None


@client.create_function(
    fn_id="faults-batch",
    trigger=inngest.TriggerEvent(event="faults/batch"),
    batch_events=inngest.Batch(max_size=3, timeout=timedelta(seconds=60)),
)
def fault_batch(ctx: inngest.ContextSync, step: inngest.StepSync) -> list[int]:
    step.run("record", _effect, ctx.run_id, "record")
    return [event.data["n"] for event in ctx.events]


@client.create_function(
    fn_id="faults-debounce",
    trigger=inngest.TriggerEvent(event="faults/debounce"),
    debounce=inngest.Debounce(period=timedelta(seconds=2)),
)
def fault_debounce(ctx: inngest.ContextSync, step: inngest.StepSync) -> int:
    step.run("record", _effect, ctx.run_id, "record")
    return int(ctx.event.data["n"])


@client.create_function(fn_id="faults-slow", trigger=inngest.TriggerEvent(event="faults/slow"))
def fault_slow(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
    step.run("slow", _effect, ctx.run_id, "slow")
    step.run("nap", time.sleep, ctx.event.data["seconds"])
    return step.run("after", _effect, ctx.run_id, "after")
