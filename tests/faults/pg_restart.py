"""PostgreSQL goes away: a scratch cluster of its own (initdb + pg_ctl on a spare port, never the
shared server), 2 workers, runs in flight; the server is restarted, and later every worker
connection is terminated. Workers must reconnect by themselves and every run complete.

    python -m tests.faults.pg_restart [--runs 2000]

Exit status 0 when every run completed and the invariants hold; it prints what it measured,
including the workers' log lines about failed database calls per outage.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP_NAME = "di-restart-worker"
LEASE_SECONDS, SWEEP_SECONDS = 5.0, 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ScratchCluster:
    """A PostgreSQL cluster in a temporary directory; as the `postgres` user when run as root
    (initdb refuses root)."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="di-faults-pg-"))
        self.data = self.directory / "data"
        self.port = free_port()
        self.as_postgres = os.geteuid() == 0

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_postgres else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        if self.as_postgres:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.start()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "log"),
            "-w",
            "start",
        )

    def restart(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        time.sleep(1.0)  # the workers see the server gone, not a blip
        self.start()

    def destroy(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/faults"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.pg_restart")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    cluster = ScratchCluster()
    cluster.init()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        return soak_through_outages(cluster, args, workers)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGKILL)
                worker.wait(10)
        cluster.destroy()


def soak_through_outages(
    cluster: ScratchCluster, args: argparse.Namespace, workers: list[subprocess.Popen[bytes]]
) -> int:
    import psycopg

    with psycopg.connect(cluster.url.replace("/faults", "/postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE faults")
    os.environ.update(
        {
            "DATABASE_URL": cluster.url,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "INNGEST_LEASE_SECONDS": str(LEASE_SECONDS),
            "INNGEST_HEARTBEAT_SECONDS": "1",
            "INNGEST_SWEEP_SECONDS": str(SWEEP_SECONDS),
        }
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    import django_inngest as inngest
    from django_inngest.models import FunctionRun
    from tests.faults.invariants import check
    from tests.testapp.functions import client

    call_command("migrate", verbosity=0)
    logs = ROOT / "tests" / "artifacts"
    logs.mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for index in range(2):
        with open(logs / f"restart-worker-{index}.log", "wb") as log:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "django", "inngest_worker", "--concurrency", "8"],
                    cwd=ROOT,
                    env={**env, "PGAPPNAME": f"{APP_NAME}-{index}"},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    began = time.monotonic()
    half = args.runs // 2
    client.send_sync([inngest.Event(name="faults/steps", data={"n": n}) for n in range(half)])

    def completed() -> int:
        return FunctionRun.objects.filter(status="COMPLETED").count()

    while completed() < half // 4:
        time.sleep(0.2)
    print(f"restarting PostgreSQL with {completed()}/{half} runs completed", flush=True)
    connection.close()
    cluster.restart()
    client.send_sync(
        [inngest.Event(name="faults/steps", data={"n": n}) for n in range(half, args.runs)]
    )
    while completed() < args.runs * 3 // 4:
        time.sleep(0.2)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE %s",
            [f"{APP_NAME}-%"],
        )
        terminated = cursor.fetchone()
    print(f"terminated {terminated[0] if terminated else 0} worker connections", flush=True)
    deadline = time.monotonic() + args.timeout
    while completed() < args.runs and time.monotonic() < deadline:
        time.sleep(0.5)
    took = time.monotonic() - began
    done = completed()
    # Each outage may cost a run its lease once (a write that failed), like a kill.
    broken = check(lease_seconds=LEASE_SECONDS, sweep_seconds=SWEEP_SECONDS, kills=2)
    dead = [index for index, worker in enumerate(workers) if worker.poll() is not None]
    errors = sum(
        1
        for index in range(2)
        for line in (logs / f"restart-worker-{index}.log").read_text(errors="replace").splitlines()
        if " ERROR " in line or ("WARNING" in line and "database" in line)
    )
    print(f"runs completed: {done}/{args.runs} in {took:.0f}s")
    print(f"workers that exited: {dead}")
    print(f"database error log lines (2 outages, 2 workers): {errors}")
    for line in broken[:50]:
        print(f"invariant broken: {line}")
    ok = done == args.runs and not broken and not dead
    print("OK" if ok else "FAILED", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
