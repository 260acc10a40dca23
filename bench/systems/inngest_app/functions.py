"""The benchmark's functions: one per workload, each reporting its first line to the driver."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import django_inngest as inngest
from bench import probe

client = inngest.Inngest(app_id="bench")


async def nothing() -> int:
    return 1


@client.create_function(fn_id="single", trigger=inngest.TriggerEvent(event="bench/single"))
async def single(ctx: inngest.Context, step: inngest.Step) -> Any:
    probe.mark("start", ctx.event.data["k"])
    return await step.run("work", nothing)


@client.create_function(fn_id="steps", trigger=inngest.TriggerEvent(event="bench/steps"))
async def steps(ctx: inngest.Context, step: inngest.Step) -> Any:
    probe.mark("start", ctx.event.data["k"])
    for index in range(10):
        await step.run(f"step-{index}", nothing)
    probe.mark("end", ctx.event.data["k"])
    return None


@client.create_function(fn_id="ping", trigger=inngest.TriggerEvent(event="bench/ping"))
async def ping(ctx: inngest.Context, step: inngest.Step) -> Any:
    probe.mark("start", ctx.event.data["k"])
    return None


def _fan(index: int) -> Any:
    @client.create_function(fn_id=f"fan-{index}", trigger=inngest.TriggerEvent(event="bench/fan"))
    async def fan(ctx: inngest.Context, step: inngest.Step) -> Any:
        probe.mark("start", f"{ctx.event.data['k']}.{index}")
        return None

    return fan


fans = [_fan(index) for index in range(5)]


@client.create_function(fn_id="timer", trigger=inngest.TriggerEvent(event="bench/timer"))
async def timer(ctx: inngest.Context, step: inngest.Step) -> Any:
    target = float(ctx.event.data["target"])
    await step.sleep_until("nap", datetime.fromtimestamp(target, UTC))
    probe.mark("wake", ctx.event.data["k"], target)
    return None


@client.create_function(fn_id="sleeper", trigger=inngest.TriggerEvent(event="bench/sleeper"))
async def sleeper(ctx: inngest.Context, step: inngest.Step) -> Any:
    """The W6 backlog: a million of these sleep for a day (their rows are written by SQL)."""
    await step.sleep("nap", timedelta(days=1))
    return None
