"""One module per system under test; each runs only inside that system's virtual environment."""

from __future__ import annotations

import importlib

from bench.systems.base import System

MODULES = {
    "django-inngest": "bench.systems.inngest_bench",
    "django-inngest@base": "bench.systems.inngest_bench",
    "django-inngest-tasks": "bench.systems.inngest_tasks_bench",
    "procrastinate": "bench.systems.procrastinate_bench",
    "django-tasks-db": "bench.systems.tasks_db_bench",
    "dbos": "bench.systems.dbos_bench",
}


def load(name: str, backend: str) -> System:
    module = importlib.import_module(MODULES[name])
    system: System = module.SYSTEM(backend, name)
    return system
