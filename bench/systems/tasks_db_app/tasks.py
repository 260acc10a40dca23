"""The benchmark's tasks for django-tasks with the django-tasks-db backend."""

from __future__ import annotations

from typing import Any

from django_tasks import task

from bench import probe


@task()
def single(k: str) -> None:
    probe.mark("start", k)


@task()
def chain(k: str, n: int) -> None:
    """W2: ten tasks in a row, each enqueuing the next."""
    if n == 0:
        probe.mark("start", k)
    if n < 9:
        chain.enqueue(k=k, n=n + 1)
    else:
        probe.mark("end", k)


@task()
def ping(k: str) -> None:
    probe.mark("start", k)


def _fan(index: int) -> Any:
    def fan(k: str) -> None:
        probe.mark("start", f"{k}.{index}")

    fan.__name__ = fan.__qualname__ = f"fan_{index}"
    return task()(fan)


fans = [_fan(index) for index in range(5)]
for _index, _task in enumerate(fans):
    globals()[f"fan_{_index}"] = _task


@task()
def timer(k: str, target: float) -> None:
    probe.mark("wake", k, target)
