"""Runs one workload once against one system, inside that system's virtual environment.

    python -m bench.driver --system procrastinate --backend postgresql --workload W1 \
        --size 10000 --out result.json

The driver enqueues from this process (one transaction per unit), starts worker processes
(`python -m bench.worker`), watches completions in the database, and collects timings from the
handlers' UDP marks, statement counts and peak RSS from the workers' probe files, and WAL bytes
from `pg_current_wal_lsn()`. It prints nothing on success; the result is a JSON file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import probe
from bench.systems import load
from bench.systems.base import DATA, PG, System, pathroot

WORKERS = 2
CONCURRENCY = 10


class BenchTimeout(Exception):
    pass


@dataclass
class Marks:
    """Handler marks received over UDP: tag -> key -> (handler time, extra)."""

    by_tag: dict[str, dict[str, tuple[float, float | None]]] = field(default_factory=dict)
    first_start: float | None = None
    condition: threading.Condition = field(default_factory=threading.Condition)

    def add(self, tag: str, key: str, at: float, extra: float | None) -> None:
        with self.condition:
            self.by_tag.setdefault(tag, {}).setdefault(key, (at, extra))
            if tag == "start" and (self.first_start is None or at < self.first_start):
                self.first_start = at
            self.condition.notify_all()

    def wait_for(self, tag: str, key: str, timeout: float) -> tuple[float, float | None]:
        with self.condition:
            if not self.condition.wait_for(lambda: key in self.by_tag.get(tag, {}), timeout):
                raise BenchTimeout(f"no {tag!r} mark for {key!r} within {timeout:.0f}s")
            return self.by_tag[tag][key]

    def count(self, tag: str) -> int:
        with self.condition:
            return len(self.by_tag.get(tag, {}))

    def wait_count(self, tag: str, count: int, timeout: float) -> None:
        with self.condition:
            if not self.condition.wait_for(lambda: len(self.by_tag.get(tag, {})) >= count, timeout):
                raise BenchTimeout(f"{len(self.by_tag.get(tag, {}))}/{count} {tag!r} marks")


def listen(marks: Marks) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))

    def receive() -> None:
        while True:
            tag, key, at, extra = sock.recv(512).decode().split(" ")
            marks.add(tag, key, float(at), float(extra) if extra else None)

    threading.Thread(target=receive, daemon=True).start()
    return int(sock.getsockname()[1])


class Workers:
    """Worker processes of the system under test, each with a probe file."""

    def __init__(self, system: System, port: int, tag: str) -> None:
        self.system, self.port, self.tag = system, port, tag
        self.processes: list[subprocess.Popen[bytes]] = []
        self.probes: list[str] = []
        (DATA / "logs").mkdir(parents=True, exist_ok=True)

    def start(self, count: int, concurrency: int = CONCURRENCY) -> None:
        for index in range(count):
            probe_file = str(DATA / f"probe-{self.system.slug}-{self.system.backend}-{index}.json")
            Path(probe_file).unlink(missing_ok=True)
            self.probes.append(probe_file)
            env = {
                **os.environ,
                **self.system.env(),
                "BENCH_PROBE_FILE": probe_file,
                "BENCH_UDP_PORT": str(self.port),
            }
            name = f"{self.system.slug}-{self.system.backend}-{self.tag}-{index}.log"
            log = open(DATA / "logs" / name, "wb")  # noqa: SIM115
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "bench.worker", "--concurrency", str(concurrency)],
                    cwd=pathroot(),
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def profile(self) -> subprocess.Popen[bytes] | None:
        """With BENCH_PROFILE=<seconds>, sample the first worker with py-spy (collapsed stacks
        in bench/.data/profile-<system>-<tag>.txt), for profiling django-inngest's hot paths."""
        seconds = os.environ.get("BENCH_PROFILE")
        if not seconds or not self.processes:
            return None
        spy = Path(sys.executable).parent / "py-spy"
        output = DATA / f"profile-{self.system.slug}-{self.tag}.txt"
        return subprocess.Popen(
            [
                str(spy),
                "record",
                "--pid",
                str(self.processes[0].pid),
                "--duration",
                seconds,
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(output),
                "--threads",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def alive(self) -> bool:
        return all(process.poll() is None for process in self.processes)

    def figures(self) -> dict[str, Any]:
        found = [probe.read(path) for path in self.probes]
        return {
            "queries": sum(int(item.get("queries", 0)) for item in found),
            "cpu_s": sum(float(item.get("cpu_s", 0.0)) for item in found),
            "peak_rss_kb": max((int(item.get("peak_rss_kb", 0)) for item in found), default=0),
        }

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)


def wal_position(system: System) -> int | None:
    if system.backend != "postgresql":
        return None
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as connection:  # type: ignore[arg-type]
        row = connection.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')").fetchone()
        return int(row[0]) if row else None


def postgres_cpu_seconds(system: System) -> float | None:
    """CPU time used so far by this machine's PostgreSQL processes (server and backends),
    from /proc: what the database spends, whoever runs it. Backends that exit in between are
    not counted, so it is read while the workers are connected."""
    if system.backend != "postgresql" or not Path("/proc/self/stat").exists():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, _, rest = text.partition(") ")
        if not name.endswith("(postgres"):
            continue
        fields = rest.split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def wait_done(
    system: System, workload: str, target: int, workers: Workers, timeout: float
) -> float:
    deadline = time.monotonic() + timeout
    while True:
        if system.done(workload) >= target:
            return time.time()
        if not workers.alive():
            raise BenchTimeout("a worker process exited; see bench/.data/logs")
        if time.monotonic() > deadline:
            raise BenchTimeout(f"{system.done(workload)}/{target} done after {timeout:.0f}s")
        time.sleep(0.05)


def throughput(
    system: System, workload: str, size: int, marks: Marks, port: int, run: str
) -> dict[str, Any]:
    """W1, W2, W4 and W6: enqueue everything (one transaction each), then drain with 2 workers."""
    kind = "W1" if workload == "W6" else workload
    per_unit = (
        5 if kind == "W4" else (system.steps_per_run if kind == "W2" and system.chained else 1)
    )
    before = system.done(kind)
    wal_start = wal_position(system)
    with probe.counted() as sent:
        started = time.perf_counter()
        for index in range(size):
            system.enqueue(kind, f"{run}-{index}")
        enqueue_seconds = time.perf_counter() - started
    workers = Workers(system, port, workload)
    workers.start(WORKERS)
    spy = workers.profile()
    # CPU spent starting up (imports, connections) is not part of the drain.
    marks.wait_count("start", 1, 120)
    startup_cpu = workers.figures()["cpu_s"]
    db_cpu_start = postgres_cpu_seconds(system)
    try:
        finished = wait_done(system, kind, before + size * per_unit, workers, 60 + size / 5)
        figures = workers.figures()
        db_cpu_end = postgres_cpu_seconds(system)
        if spy is not None:
            spy.wait()
    finally:
        workers.stop()
    wal_end = wal_position(system)
    assert marks.first_start is not None
    elapsed = finished - marks.first_start
    units = size * per_unit
    runs = size * (5 if kind == "W4" else 1)
    result: dict[str, Any] = {
        "enqueue_per_s": size / enqueue_seconds,
        "drain_per_s": units / elapsed if kind != "W2" else size / elapsed,
        "queries_per_run": (sent["queries"] + figures["queries"]) / runs,
        "worker_queries_per_run": figures["queries"] / runs,
        "peak_rss_mb": figures["peak_rss_kb"] / 1024,
        "worker_cpu_ms_per_run": 1000 * (figures["cpu_s"] - startup_cpu) / runs,
        "wal_bytes_per_run": (wal_end - wal_start) / runs if wal_start and wal_end else None,
        "db_cpu_ms_per_run": (
            1000 * (db_cpu_end - db_cpu_start) / runs
            if db_cpu_start is not None and db_cpu_end is not None
            else None
        ),
        "elapsed_s": elapsed,
    }
    if kind == "W2":
        steps = size * 10
        result["steps_per_s"] = steps / elapsed
        result["per_step_ms"] = 1000 * elapsed * WORKERS / steps
    return result


def pickup(
    system: System, size: int, marks: Marks, port: int, idle_seconds: float
) -> dict[str, Any]:
    """W3 and idle load: one worker, one event at a time."""
    workers = Workers(system, port, "W3")
    workers.start(1)
    try:
        system.enqueue("W3", "warm-0")
        marks.wait_for("start", "warm-0", 60)
        system.enqueue("W3", "warm-1")
        marks.wait_for("start", "warm-1", 30)
        time.sleep(3)
        first = workers.figures()["queries"]
        time.sleep(idle_seconds)
        idle_qps = (workers.figures()["queries"] - first) / idle_seconds
        latencies = []
        for index in range(size):
            key = f"p-{index}"
            sent = time.time()
            system.enqueue("W3", key)
            at, _ = marks.wait_for("start", key, 30)
            latencies.append(1000 * (at - sent))
            time.sleep(random.uniform(0.02, 0.06))
        figures = workers.figures()
    finally:
        workers.stop()
    return {
        "pickup_p50_ms": percentile(latencies, 0.5),
        "pickup_p95_ms": percentile(latencies, 0.95),
        "pickup_p99_ms": percentile(latencies, 0.99),
        "idle_qps": idle_qps,
        "peak_rss_mb": figures["peak_rss_kb"] / 1024,
    }


def timers(system: System, size: int, delay: float, marks: Marks, port: int) -> dict[str, Any]:
    """W5: `size` runs each waiting `delay` seconds; lateness of the first line after the wait."""
    workers = Workers(system, port, "W5")
    workers.start(WORKERS)
    try:
        system.enqueue("W3", "warm")
        marks.wait_for("start", "warm", 60)
        for index in range(size):
            system.enqueue("W5", f"t-{index}", target=time.time() + delay)
        marks.wait_count("wake", size, delay + 120 + size / 10)
    finally:
        workers.stop()
    lateness = [1000 * (at - (target or 0.0)) for at, target in marks.by_tag["wake"].values()]
    return {
        "lateness_p50_ms": percentile(lateness, 0.5),
        "lateness_p95_ms": percentile(lateness, 0.95),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--system", required=True)
    parser.add_argument("--backend", required=True)
    parser.add_argument("--workload", required=True)
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--delay", type=float, default=10.0)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--run", default="r0")
    parser.add_argument("--out", required=True)
    options = parser.parse_args()

    probe.install()
    system = load(options.system, options.backend)
    marks = Marks()
    port = listen(marks)
    result: dict[str, Any] = {}
    try:
        if options.workload == "backlog":
            system.reset()
            system.prepare()
            started = time.perf_counter()
            system.build_backlog(options.size)
            result = {"backlog_seconds": time.perf_counter() - started}
        else:
            if options.workload != "W6":
                system.reset()
            system.prepare()
            if options.workload in ("W1", "W2", "W4", "W6"):
                result = throughput(
                    system, options.workload, options.size, marks, port, options.run
                )
            elif options.workload == "W3":
                result = pickup(system, options.size, marks, port, options.idle_seconds)
            elif options.workload == "W5":
                result = timers(system, options.size, options.delay, marks, port)
            else:
                raise SystemExit(f"unknown workload {options.workload!r}")
    except BenchTimeout as error:
        result = {"error": str(error)}
    except Exception as error:
        result = {"error": f"{type(error).__name__}: {error}"}
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            system.close()
    Path(options.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
