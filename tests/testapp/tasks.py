"""Django tasks (the framework's `@task`) that the tests run on the durable backend."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from typing import Any

from django_inngest.tasks import DurableTaskContext, durable
from tests.tasks_framework import task
from tests.testapp.models import WorkLog


class TaskBoom(Exception):
    """What `failing` raises."""


@task()
def add(a: int, b: int) -> int:
    return a + b


@task()
def record(key: str) -> str:
    """Leaves a row behind, so a test can see that (and in which order) tasks ran."""
    now = time.time()
    WorkLog.objects.create(key=key, run_id="", started=now, ended=now)
    return key


@task()
def failing(message: str) -> None:
    raise TaskBoom(message)


@task()
@durable(retries=2)
def flaky(fail_times: int, context_key: str) -> int:
    """Fails its first `fail_times` attempts (counted in WorkLog), then returns the attempts."""
    now = time.time()
    WorkLog.objects.create(key=context_key, run_id="", started=now, ended=now)
    attempts = WorkLog.objects.filter(key=context_key).count()
    if attempts <= fail_times:
        raise TaskBoom(f"attempt {attempts}")
    return attempts


@task(takes_context=True)
@durable(retries=1)
def with_context(context: DurableTaskContext, fail_first: bool) -> dict[str, Any]:
    if fail_first and context.attempt == 1:
        raise TaskBoom("first attempt")
    return {"attempt": context.attempt, "id": context.task_result.id}


@task(takes_context=True)
def checkpointed(context: DurableTaskContext, key: str, steps: int, ms: int) -> int:
    """Each step is checkpointed; a step's body records that it ran (to count re-runs)."""
    total = 0
    for index in range(steps):
        total += context.step.run(f"part-{index}", _part, key, index, ms)
    return total


def _part(key: str, index: int, ms: int) -> int:
    started = time.time()
    if ms:
        time.sleep(ms / 1000)
    WorkLog.objects.create(
        key=f"{key}-{index}", run_id=str(os.getpid()), started=started, ended=time.time()
    )
    return index


@task()
async def async_add(a: int, b: int) -> int:
    return a + b


@task(queue_name="reports")
def report(key: str, ms: int) -> str:
    started = time.time()
    time.sleep(ms / 1000)
    WorkLog.objects.create(key=key, run_id="", started=started, ended=time.time())
    return key


@task()
def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


@task(takes_context=True)
def napper(context: DurableTaskContext, minutes: int) -> str:
    """Sleeps in a step, freeing the worker, then ends."""
    before = context.step.run("before", lambda: "before")
    context.step.sleep("nap", timedelta(minutes=minutes))
    return f"{before} and after"


@task(takes_context=True)
@durable(timeout=timedelta(minutes=1))
def overdue(context: DurableTaskContext) -> str:
    """Sleeps longer than its time limit allows."""
    context.step.sleep("long", timedelta(minutes=5))
    return "too late"


@task(takes_context=True)
async def async_steps(context: DurableTaskContext, n: int) -> list[int]:
    """An async task checkpointing with the async `Step`."""
    return [await context.step.run(f"square-{i}", _square, i) for i in range(n)]


async def _square(i: int) -> int:
    return i * i
