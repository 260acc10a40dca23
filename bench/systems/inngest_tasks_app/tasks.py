"""The benchmark's task for django-inngest as a Django tasks backend (W1 through `enqueue`)."""

from __future__ import annotations

from django_tasks import task

from bench import probe


@task()
async def single(k: str) -> None:
    probe.mark("start", k)
