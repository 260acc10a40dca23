"""django-inngest as a Django tasks backend: W1 through `task.enqueue()` (the `django-tasks`
backport's `@task`), run by `inngest_worker` as for functions. W1 only."""

from __future__ import annotations

from typing import Any

from bench.systems.inngest_bench import InngestSystem

FUNCTION = "tasks.bench.systems.inngest_tasks_app.tasks.single"


class InngestTasksSystem(InngestSystem):
    name = "django-inngest-tasks"
    backends = ("postgresql", "sqlite")

    def prepare(self) -> None:
        super(InngestSystem, self).prepare()
        from bench.systems.inngest_tasks_app import tasks

        self._tasks = tasks

    def enqueue(self, workload: str, key: str, **payload: Any) -> None:
        """In autocommit, one task per transaction, as a view without ATOMIC_REQUESTS does."""
        if workload not in ("W1", "W6"):
            raise ValueError(f"django-inngest-tasks runs W1 only, not {workload!r}")
        self._tasks.single.enqueue(k=key)

    def done(self, workload: str) -> int:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM django_inngest_functionrun "
                "WHERE status = 'COMPLETED' AND function_id = %s",
                [FUNCTION],
            )
            return int(cursor.fetchone()[0])

    def settings_note(self) -> str:
        return "an async `@task`; `DurableBackend`; `inngest_worker --concurrency 10`"


SYSTEM = InngestTasksSystem
