"""django-inngest under test: events sent with `send_sync`, workers are `inngest_worker`."""

from __future__ import annotations

import hashlib
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.systems.base import DjangoSystem

EVENTS = {"W1": "bench/single", "W2": "bench/steps", "W3": "bench/ping", "W4": "bench/fan"}
EVENTS["W5"] = "bench/timer"
FUNCTIONS = {"W1": "bench-single", "W2": "bench-steps", "W3": "bench-ping", "W4": "bench-fan-%"}
FUNCTIONS["W5"] = "bench-timer"


class InngestSystem(DjangoSystem):
    name = "django-inngest"
    backends = ("postgresql", "sqlite")

    def prepare(self) -> None:
        super().prepare()
        import django_inngest as inngest
        from bench.systems.inngest_app.functions import client

        self._inngest = inngest
        self._client = client

    def enqueue(self, workload: str, key: str, **payload: Any) -> None:
        """In autocommit, as a view without ATOMIC_REQUESTS sends: one statement, one commit."""
        self._client.send_sync(
            self._inngest.Event(name=EVENTS[workload], data={"k": key, **payload})
        )

    def done(self, workload: str) -> int:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM django_inngest_functionrun "
                "WHERE status = 'COMPLETED' AND function_id LIKE %s",
                [FUNCTIONS[workload]],
            )
            return int(cursor.fetchone()[0])

    def build_backlog(self, count: int) -> None:
        """Sleeping runs as the engine leaves them: event, run, sleeping step, queue item."""
        from django.db import connection, transaction

        now = datetime.now(UTC)
        wake = now + timedelta(days=1)
        ops = connection.ops
        at, later = ops.adapt_datetimefield_value(now), ops.adapt_datetimefield_value(wake)
        ts = int(now.timestamp() * 1000)
        nap = hashlib.sha1(b"nap").hexdigest()
        if self.backend == "postgresql":
            series = "FROM generate_series(1, %s) AS g(n)"
            run_id = "'BK' || lpad(n::text, 24, '0')"
            ids_json = f"jsonb_build_array({run_id})"
            prefix = ""
        else:
            series = "FROM g"
            run_id = "printf('BK%%024d', n)"
            ids_json = f"json_array({run_id})"
            prefix = "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < %s) "
        statements = [
            (
                "INSERT INTO django_inngest_event (id, user_id, name, data, ts, received_at, "
                f"pending) SELECT {run_id}, '', 'bench/sleeper', '{{}}', %s, %s, false {series}",
                [ts, at],
            ),
            (
                "INSERT INTO django_inngest_functionrun (id, function_id, status, event_id, "
                f"event_ids, attempt, created_at, started_at) SELECT {run_id}, 'bench-sleeper', "
                f"'SLEEPING', {run_id}, {ids_json}, 0, %s, %s {series}",
                [at, at],
            ),
            (
                'INSERT INTO django_inngest_runstep (run_id, hashed_id, step_id, "index", op, '
                "status, attempts, history, started_at, wake_at) "
                f"SELECT {run_id}, %s, 'nap', 0, 'sleep', 'SLEEPING', 0, '[]', %s, %s {series}",
                [nap, at, later],
            ),
            (
                "INSERT INTO django_inngest_queueitem (kind, run_id, available_at, score, priority) "
                f"SELECT 'run', {run_id}, %s, %s, 0 {series}",
                [later, later],
            ),
        ]
        with transaction.atomic(), connection.cursor() as cursor:
            for sql, params in statements:
                if self.backend == "postgresql":
                    cursor.execute(sql, [*params, count])
                else:
                    cursor.execute(prefix + sql, [count, *params])
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

    def run_worker(self, concurrency: int) -> None:
        os.environ["DJANGO_SETTINGS_MODULE"] = self.settings
        from django.core.management import execute_from_command_line

        execute_from_command_line(
            [sys.argv[0], "inngest_worker", "--concurrency", str(concurrency), "-v", "0"]
        )

    def settings_note(self) -> str:
        return "async handlers; `inngest_worker --concurrency 10`; LISTEN/NOTIFY on PostgreSQL"


SYSTEM = InngestSystem
