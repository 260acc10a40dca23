"""Procrastinate under test (PostgreSQL only): async tasks, `App.run_worker`, LISTEN/NOTIFY."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import procrastinate

from bench import probe
from bench.systems.base import System, pg_clone, pg_fresh, pg_url

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(conninfo=pg_url("bench_procrastinate"))
)


@app.task(name="single")
async def single(k: str) -> None:
    probe.mark("start", k)


@app.task(name="chain")
async def chain(k: str, n: int) -> None:
    """W2: ten jobs in a row, each deferring the next."""
    if n == 0:
        probe.mark("start", k)
    if n < 9:
        await chain.defer_async(k=k, n=n + 1)
    else:
        probe.mark("end", k)


@app.task(name="ping")
async def ping(k: str) -> None:
    probe.mark("start", k)


def _fan(index: int) -> Any:
    @app.task(name=f"fan-{index}")
    async def fan(k: str) -> None:
        probe.mark("start", f"{k}.{index}")

    return fan


fans = [_fan(index) for index in range(5)]


@app.task(name="timer")
async def timer(k: str, target: float) -> None:
    probe.mark("wake", k, target)


TASKS = {"W1": "single", "W2": "chain", "W3": "ping", "W4": "fan-%", "W5": "timer"}


class ProcrastinateSystem(System):
    name = "procrastinate"
    chained = True

    def reset(self) -> None:
        pg_fresh(self.dbname)
        with app.open():
            app.schema_manager.apply_schema()

    def prepare(self) -> None:
        import psycopg

        app.open()
        self._connection = psycopg.connect(pg_url(self.dbname), autocommit=True)

    def close(self) -> None:
        app.close()
        if hasattr(self, "_connection"):
            self._connection.close()

    def enqueue(self, workload: str, key: str, **payload: Any) -> None:
        if workload == "W1":
            single.defer(k=key)
        elif workload == "W2":
            chain.defer(k=key, n=0)
        elif workload == "W3":
            ping.defer(k=key)
        elif workload == "W4":
            for fan in fans:  # no events: the sender defers one job per consumer
                fan.defer(k=key)
        elif workload == "W5":
            at = datetime.fromtimestamp(payload["target"], UTC)
            timer.configure(schedule_at=at).defer(k=key, target=payload["target"])

    def done(self, workload: str) -> int:
        row = self._connection.execute(
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded' "
            "AND task_name LIKE %s",
            [TASKS[workload]],
        ).fetchone()
        return int(row[0]) if row else 0

    def build_backlog(self, count: int) -> None:
        single.configure(schedule_at=datetime.now(UTC) + timedelta(days=1)).defer(k="backlog")
        with self._connection.transaction(), self._connection.cursor() as cursor:
            pg_clone(
                cursor,
                "public.procrastinate_jobs",
                "t.args->>'k' = 'backlog'",
                count - 1,
                {"args": "jsonb_build_object('k', 'backlog-' || g.n)"},
            )
        self._connection.execute("ANALYZE")

    def run_worker(self, concurrency: int) -> None:
        import logging

        logging.basicConfig(level=logging.WARNING)
        app.run_worker(concurrency=concurrency)

    def settings_note(self) -> str:
        return "async tasks; `run_worker(concurrency=10)`; LISTEN/NOTIFY (defaults)"


SYSTEM = ProcrastinateSystem
