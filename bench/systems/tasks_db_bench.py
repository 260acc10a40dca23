"""django-tasks with the django-tasks-db backend: `db_worker` processes, which poll."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.systems.base import DjangoSystem, pg_clone

PATHS = {
    "W1": "%.single",
    "W2": "%.chain",
    "W3": "%.ping",
    "W4": "%.fan_%",
    "W5": "%.timer",
}


class TasksDbSystem(DjangoSystem):
    name = "django-tasks-db"
    backends = ("postgresql", "sqlite")
    chained = True

    def prepare(self) -> None:
        super().prepare()
        from bench.systems.tasks_db_app import tasks

        self._tasks = tasks

    def enqueue(self, workload: str, key: str, **payload: Any) -> None:
        """In autocommit, one job per transaction; W4's five jobs of one event in one."""
        from django.db import transaction

        tasks = self._tasks
        if workload == "W1":
            tasks.single.enqueue(k=key)
        elif workload == "W2":
            tasks.chain.enqueue(k=key, n=0)
        elif workload == "W3":
            tasks.ping.enqueue(k=key)
        elif workload == "W4":
            with transaction.atomic():
                for fan in tasks.fans:
                    fan.enqueue(k=key)
        elif workload == "W5":
            at = datetime.fromtimestamp(payload["target"], UTC)
            tasks.timer.using(run_after=at).enqueue(k=key, target=payload["target"])

    def done(self, workload: str) -> int:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM django_tasks_database_dbtaskresult "
                "WHERE status = 'SUCCESSFUL' AND task_path LIKE %s",
                [PATHS[workload]],
            )
            return int(cursor.fetchone()[0])

    def build_backlog(self, count: int) -> None:
        from django.db import connection, transaction

        later = datetime.now(UTC) + timedelta(days=1)
        self._tasks.single.using(run_after=later).enqueue(k="backlog")
        with transaction.atomic(), connection.cursor() as cursor:
            if self.backend == "postgresql":
                pg_clone(
                    cursor,
                    "public.django_tasks_database_dbtaskresult",
                    "t.args_kwargs->'kwargs'->>'k' = 'backlog'",
                    count - 1,
                    {"id": "gen_random_uuid()"},
                )
            else:
                cursor.execute("PRAGMA table_info(django_tasks_database_dbtaskresult)")
                columns = [row[1] for row in cursor.fetchall()]
                names = ", ".join(f'"{c}"' for c in columns)
                values = ", ".join(
                    "lower(hex(randomblob(16)))" if c == "id" else f't."{c}"' for c in columns
                )
                cursor.execute(
                    "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < %s) "
                    f"INSERT INTO django_tasks_database_dbtaskresult ({names}) SELECT {values} "
                    "FROM django_tasks_database_dbtaskresult AS t, g "
                    "WHERE json_extract(t.args_kwargs, '$.kwargs.k') = 'backlog'",
                    [count - 1],
                )
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

    def run_worker(self, concurrency: int) -> None:
        os.environ["DJANGO_SETTINGS_MODULE"] = self.settings
        from django.core.management import execute_from_command_line

        # db_worker runs one task at a time; concurrency comes from processes.
        execute_from_command_line(
            [sys.argv[0], "db_worker", "--no-reload", "--no-startup-delay", "-v", "0"]
        )

    def settings_note(self) -> str:
        return "sync tasks; `db_worker` (one task at a time, polls every 1 s when idle)"


SYSTEM = TasksDbSystem
