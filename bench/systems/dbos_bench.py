"""DBOS Transact under test: workflows on a DBOS queue, enqueued with `DBOSClient`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSClient

from bench import probe
from bench.systems.base import System, pg_clone, pg_fresh, pg_url, sqlite_fresh

QUEUE = "bench"
WORKFLOWS = {"W1": "single", "W2": "steps", "W3": "ping", "W4": "fan-%", "W5": "timer"}


@DBOS.step(name="nothing")
def nothing() -> int:
    return 1


@DBOS.workflow(name="single")
def single(k: str) -> int:
    probe.mark("start", k)
    return nothing()


@DBOS.workflow(name="steps")
def steps(k: str) -> None:
    probe.mark("start", k)
    for _ in range(10):
        nothing()
    probe.mark("end", k)


@DBOS.workflow(name="ping")
def ping(k: str) -> None:
    probe.mark("start", k)


def _fan(index: int) -> Any:
    @DBOS.workflow(name=f"fan-{index}")
    def fan(k: str) -> None:
        probe.mark("start", f"{k}.{index}")

    return fan


fans = [_fan(index) for index in range(5)]


@DBOS.workflow(name="timer")
def timer(k: str, target: float) -> None:
    probe.mark("wake", k, target)


class DbosSystem(System):
    name = "dbos"
    backends = ("postgresql", "sqlite")

    def url(self) -> str:
        if self.backend == "postgresql":
            return pg_url(self.dbname)
        return f"sqlite:///{self.sqlite_path}"

    def reset(self) -> None:
        if self.backend == "postgresql":
            pg_fresh(self.dbname)
        else:
            sqlite_fresh(self.sqlite_path)
        dbos = Path(sys.executable).parent / "dbos"
        subprocess.run(
            [str(dbos), "migrate", "-s", self.url()], check=True, stdout=subprocess.DEVNULL
        )

    def prepare(self) -> None:
        self._client = DBOSClient(system_database_url=self.url())

    def close(self) -> None:
        if hasattr(self, "_client"):
            self._client.destroy()

    def enqueue(self, workload: str, key: str, **payload: Any) -> None:
        client = self._client
        if workload == "W4":
            for index in range(5):
                client.enqueue({"workflow_name": f"fan-{index}", "queue_name": QUEUE}, key)
        elif workload == "W5":
            delay = max(0.0, payload["target"] - time.time())
            client.enqueue(
                {"workflow_name": "timer", "queue_name": QUEUE, "delay_seconds": delay},
                key,
                payload["target"],
            )
        else:
            client.enqueue({"workflow_name": WORKFLOWS[workload], "queue_name": QUEUE}, key)

    def done(self, workload: str) -> int:
        import sqlalchemy as sa

        engine = self._client._sys_db.engine
        table = "dbos.workflow_status" if self.backend == "postgresql" else "workflow_status"
        with engine.connect() as connection:
            value = connection.execute(
                sa.text(f"SELECT count(*) FROM {table} WHERE status = 'SUCCESS' AND name LIKE :n"),
                {"n": WORKFLOWS[workload]},
            ).scalar()
        return int(value or 0)

    def build_backlog(self, count: int) -> None:
        self._client.enqueue(
            {
                "workflow_name": "single",
                "queue_name": QUEUE,
                "delay_seconds": 86400,
                "workflow_id": "backlog",
            },
            "backlog",
        )
        engine = self._client._sys_db.engine
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            if self.backend == "postgresql":
                pg_clone(
                    cursor,
                    "dbos.workflow_status",
                    "t.workflow_uuid = 'backlog'",
                    count - 1,
                    {"workflow_uuid": "'backlog-' || g.n"},
                )
                cursor.execute("ANALYZE")
            else:
                cursor.execute("PRAGMA table_info(workflow_status)")
                columns = [row[1] for row in cursor.fetchall()]
                names = ", ".join(f'"{c}"' for c in columns)
                values = ", ".join(
                    "'backlog-' || n" if c == "workflow_uuid" else f't."{c}"' for c in columns
                )
                cursor.execute(
                    "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?) "
                    f"INSERT INTO workflow_status ({names}) SELECT {values} "
                    "FROM workflow_status AS t, g WHERE t.workflow_uuid = 'backlog'",
                    [count - 1],
                )
            raw.commit()
        finally:
            raw.close()

    def run_worker(self, concurrency: int) -> None:
        DBOS(
            config={
                "name": "bench",
                "system_database_url": self.url(),
                "executor_id": f"bench-{os.getpid()}",
                "log_level": "WARNING",
                "console_log_level": "WARNING",
            }
        )
        DBOS.launch()
        DBOS.register_queue(QUEUE, on_conflict="always_update")
        threading.Event().wait()

    def settings_note(self) -> str:
        return "sync workflows on a queue with worker_concurrency=10 (default 1 s queue polling)"


SYSTEM = DbosSystem
