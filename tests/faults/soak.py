"""The soak: steady mixed load on 3 PostgreSQL workers while they are broken on a schedule.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/di_NAME python -m tests.faults.soak --quick

A random worker (not worker 0, whose RSS over the whole soak shows leaks) is SIGKILLed every
20 s and started again; every 2 minutes all of the soak database's worker connections are
terminated (by database name and the workers' application_name). The load mixes steps,
sleeps, waits, batches, debounces, concurrency with throttling, and a cron trigger. At the
end, sending stops, the workers finish what is left, and the report gives runs/s, p50/p99
event-to-start latency, each worker's RSS over time, kills and outages survived, duplicates
(step bodies run more than once) per 10,000 steps and lost runs. Exit status 1 when a run is
lost, an invariant breaks or worker 0's RSS grows by more than 20 % after warm-up.

The soak uses its own database, `<DATABASE_URL's name>_soak`, dropped and created afresh.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parents[2]
APP_NAME = "di-soak-worker"
LEASE_SECONDS, SWEEP_SECONDS = 5.0, 1.0
WORKER_ENV = {
    "INNGEST_LEASE_SECONDS": str(LEASE_SECONDS),
    "INNGEST_HEARTBEAT_SECONDS": "1",
    "INNGEST_SWEEP_SECONDS": str(SWEEP_SECONDS),
    "TESTAPP_CRON": "* * * * *",
}
WARM_UP_SECONDS = 60.0
RSS_GROWTH_LIMIT = 0.20


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to send (30)")
    parser.add_argument("--quick", action="store_true", help="3 minutes (CI)")
    parser.add_argument("--rate", type=float, default=10.0, help="events per second (10)")
    parser.add_argument("--kill-every", type=float, default=20.0, help="seconds (20)")
    parser.add_argument("--outage-every", type=float, default=120.0, help="seconds (120)")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--drain-timeout", type=float, default=180.0, help="seconds (180)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes = 3.0
    return args


def soak_database_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgres"):
        raise SystemExit(f"the soak needs PostgreSQL: DATABASE_URL={url!r}")
    name = parts.path.lstrip("/")
    if not name:
        raise SystemExit(f"DATABASE_URL names no database: {url!r}")
    return urlunsplit(parts._replace(path=f"/{name}_soak"))


def recreate_database(url: str) -> None:
    """Drop and create the soak's own database (never another one)."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    assert name.endswith("_soak"), name
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            [name],
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


@dataclass
class Slot:
    """One of the soak's workers: restarted after each kill, so several processes in turn."""

    index: int
    env: dict[str, str]
    concurrency: int
    process: subprocess.Popen[bytes] | None = None
    generation: int = 0
    started: float = 0.0
    rss: list[tuple[float, int, int]] = field(default_factory=list)
    """(seconds since the soak started, generation, RSS in KiB)."""

    def start(self) -> None:
        log_dir = ROOT / "tests" / "artifacts"
        log_dir.mkdir(exist_ok=True)
        log = open(log_dir / f"soak-worker-{self.index}-{self.generation}.log", "wb")  # noqa: SIM115
        env = {**self.env, "PGAPPNAME": f"{APP_NAME}-{self.index}"}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "django",
                "inngest_worker",
                "--concurrency",
                str(self.concurrency),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.started = time.monotonic()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self.generation += 1

    def sample_rss(self, since: float) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except FileNotFoundError:
            return
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                kib = int(line.split()[1])
                self.rss.append((round(time.monotonic() - since, 1), self.generation, kib))


class Load:
    """Sends the mixed load from its own thread, and the events waits are waiting for."""

    def __init__(self, rate: float, rng: random.Random) -> None:
        self.rate = rate
        self.rng = rng
        self.sent = 0
        self.errors: list[str] = []
        self.stop = threading.Event()
        self._keys = itertools.count()
        self._goes: list[tuple[float, str]] = []

    def run(self) -> None:
        from django.db import connection

        import django_inngest as inngest
        from tests.testapp.functions import client

        interval = 1.0 / self.rate
        next_at = time.monotonic()
        tick = 0
        try:
            while not self.stop.is_set():
                batch = [self._event(inngest, tick)]
                tick += 1
                now = time.monotonic()
                while self._goes and self._goes[0][0] <= now:
                    _, key = self._goes.pop(0)
                    batch.append(inngest.Event(name="faults/go", data={"k": key}))
                if tick % 100 == 0:  # a burst the debounce folds into one run
                    batch += [
                        inngest.Event(name="faults/debounce", data={"n": n}) for n in range(3)
                    ]
                try:
                    client.send_sync(batch)
                    self.sent += len(batch)
                except Exception as error:  # a send that fails is counted, not retried
                    self.errors.append(repr(error))
                    connection.close()
                next_at += interval
                self.stop.wait(max(0.0, next_at - time.monotonic()))
            # The waits still waiting get their events.
            leftover = [inngest.Event(name="faults/go", data={"k": k}) for _, k in self._goes]
            if leftover:
                client.send_sync(leftover)
                self.sent += len(leftover)
        finally:
            connection.close()

    def _event(self, inngest: Any, tick: int) -> Any:
        roll = self.rng.random()
        if roll < 0.5:
            return inngest.Event(name="faults/steps", data={"tick": tick})
        if roll < 0.65:
            return inngest.Event(name="faults/sleep", data={"ms": 500})
        if roll < 0.75:
            key = f"k{next(self._keys)}"
            self._goes.append((time.monotonic() + 1.0, key))
            # A go sent before the run reaches its wait (a kill delayed it) does not count
            # (SPEC: waits see later events); the timeout ends such a run.
            return inngest.Event(name="faults/wait", data={"k": key, "timeout_ms": 20_000})
        if roll < 0.85:
            return inngest.Event(name="faults/batch", data={"n": tick})
        return inngest.Event(name="e2e/keyed", data={"key": f"key-{tick % 20}"})


def terminate_worker_connections() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE %s "
            "AND pid <> pg_backend_pid()",
            [f"{APP_NAME}-%"],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def database_error_lines() -> int:
    """Lines of the workers' logs about failed database calls (an outage should log a few
    lines per worker, not one per second)."""
    found = 0
    for log in (ROOT / "tests" / "artifacts").glob("soak-worker-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if " ERROR " in line or ("WARNING" in line and "database" in line):
                found += 1
    return found


def settled() -> bool:
    """No event waits to be matched, no run to end, and no batch or debounce to fire."""
    from django_inngest.models import Event, FlowState, FunctionRun

    return (
        not Event.objects.filter(pending=True).exists()
        and not FunctionRun.objects.active().exists()
        and not FlowState.objects.filter(kind__in=("batch", "debounce")).exists()
    )


def measure(
    args: argparse.Namespace, load: Load, slots: list[Slot], **counts: Any
) -> dict[str, Any]:
    from django.db.models import F

    from django_inngest.models import Event, FunctionRun
    from tests.faults.invariants import check, duplicates

    runs = FunctionRun.objects
    completed = runs.filter(status="COMPLETED").count()
    latencies = [
        (started - received).total_seconds() * 1000
        for started, received in runs.filter(
            event__isnull=False, started_at__isnull=False, event__name__startswith="faults/steps"
        ).values_list("started_at", F("event__received_at"))
    ]
    extra, steps = duplicates()
    broken = check(lease_seconds=LEASE_SECONDS, sweep_seconds=SWEEP_SECONDS, kills=counts["kills"])
    lost = runs.active().count() + Event.objects.filter(pending=True).count()
    lost += sum(1 for line in broken if "runs of" in line and "in 0 " in line)
    sentinel = [kib for at, _, kib in slots[0].rss if at >= WARM_UP_SECONDS]
    growth = (sentinel[-1] - sentinel[0]) / sentinel[0] if len(sentinel) >= 2 else None
    return {
        "minutes": args.minutes,
        "events_sent": load.sent,
        "send_errors": len(load.errors),
        "runs": runs.count(),
        "runs_completed": completed,
        "runs_per_second": round(completed / counts["elapsed"], 2),
        "event_to_start_ms_p50": percentile(latencies, 0.5),
        "event_to_start_ms_p99": percentile(latencies, 0.99),
        "kills": counts["kills"],
        "outages": counts["outages"],
        "connections_terminated": counts["terminated"],
        "step_bodies": steps,
        "duplicate_bodies": extra,
        "duplicates_per_10000_steps": round(extra * 10_000 / steps, 1) if steps else 0.0,
        "lost_runs": lost,
        "invariants_broken": broken,
        "database_error_log_lines": database_error_lines(),
        "rss_kib": {slot.index: slot.rss for slot in slots},
        "worker0_rss_growth_after_warm_up": round(growth, 3) if growth is not None else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    rng = random.Random(args.seed)
    url = soak_database_url()
    recreate_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ.update(WORKER_ENV)  # this process plans cron runs as the workers do
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for old_log in (ROOT / "tests" / "artifacts").glob("soak-worker-*.log"):
        old_log.unlink()
    slots = [Slot(index=n, env=env, concurrency=args.concurrency) for n in range(args.workers)]
    for slot in slots:
        slot.start()
    load = Load(args.rate, rng)
    sender = threading.Thread(target=load.run, name="soak-sender")
    began = time.monotonic()
    sender.start()
    kills = outages = terminated = 0
    next_kill = began + args.kill_every
    next_outage = began + args.outage_every
    next_sample = began
    end = began + args.minutes * 60
    print(
        f"soak: {args.workers} workers, {args.rate}/s for {args.minutes} min on {url}", flush=True
    )
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_sample:
            for slot in slots:
                slot.sample_rss(began)
            next_sample += 10.0
        if now >= next_kill and len(slots) > 1:
            victim = rng.choice(slots[1:])
            victim.kill()
            victim.start()
            kills += 1
            next_kill += args.kill_every
        if now >= next_outage:
            terminated += terminate_worker_connections()
            outages += 1
            next_outage += args.outage_every
        for slot in slots:  # a worker that died by itself is a finding, and is restarted
            assert slot.process is not None
            if slot.process.poll() is not None:
                print(f"worker {slot.index} exited with {slot.process.returncode}", flush=True)
                slot.generation += 1
                slot.start()
        time.sleep(0.2)
    load.stop.set()
    sender.join(60)
    elapsed = time.monotonic() - began
    deadline = time.monotonic() + args.drain_timeout
    while time.monotonic() < deadline and not settled():
        time.sleep(1.0)
    for slot in slots:
        slot.sample_rss(began)
    report = measure(
        args, load, slots, kills=kills, outages=outages, terminated=terminated, elapsed=elapsed
    )
    for slot in slots:
        assert slot.process is not None
        slot.process.send_signal(signal.SIGTERM)
    for slot in slots:
        assert slot.process is not None
        try:
            slot.process.wait(60)
        except subprocess.TimeoutExpired:
            slot.kill()
    failures = []
    if report["lost_runs"]:
        failures.append(f"{report['lost_runs']} runs lost")
    if report["invariants_broken"]:
        failures.append(f"{len(report['invariants_broken'])} invariants broken")
    growth = report["worker0_rss_growth_after_warm_up"]
    if growth is not None and growth > RSS_GROWTH_LIMIT:
        failures.append(f"worker 0's RSS grew {growth:.0%} after warm-up")
    report["failures"] = failures
    print_report(report, load.errors)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 1 if failures else 0


def print_report(report: dict[str, Any], send_errors: list[str]) -> None:
    skip = {"rss_kib", "invariants_broken", "failures"}
    for key, value in report.items():
        if key not in skip:
            print(f"{key}: {value}")
    for index, samples in report["rss_kib"].items():  # one sample a minute (all in --json)
        shown = [sample for n, sample in enumerate(samples) if n % 6 == 0 or n == len(samples) - 1]
        series = ", ".join(f"{at:.0f}s:{kib // 1024}M(g{gen})" for at, gen, kib in shown)
        print(f"worker {index} RSS: {series}")
    for line in report["invariants_broken"][:50]:
        print(f"invariant broken: {line}")
    for error in send_errors[:10]:
        print(f"send error: {error}")
    print("FAILED: " + "; ".join(report["failures"]) if report["failures"] else "OK", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
