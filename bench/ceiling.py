"""The machine's ceiling: single-row INSERT commits per second, PostgreSQL and SQLite."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

PSQL = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]


def postgresql(seconds: int = 10, clients: int = 2) -> float:
    """pgbench with a one-statement script: INSERT one row, commit (autocommit)."""
    subprocess.run([*PSQL, "-c", "DROP DATABASE IF EXISTS bench_ceiling"], check=True)
    subprocess.run([*PSQL, "-c", "CREATE DATABASE bench_ceiling"], check=True)
    subprocess.run(
        [
            *PSQL,
            "-d",
            "bench_ceiling",
            "-c",
            "CREATE TABLE ceiling (id bigserial PRIMARY KEY, v int)",
        ],
        check=True,
    )
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
        script.write("INSERT INTO ceiling (v) VALUES (1);\n")
    output = subprocess.run(
        [
            "pgbench",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-n",
            "-c",
            str(clients),
            "-j",
            str(clients),
            "-T",
            str(seconds),
            "-f",
            script.name,
            "bench_ceiling",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    Path(script.name).unlink()
    subprocess.run([*PSQL, "-c", "DROP DATABASE IF EXISTS bench_ceiling"], check=True)
    match = re.search(r"tps = ([0-9.]+)", output)
    if match is None:
        raise RuntimeError(f"no tps in pgbench output:\n{output}")
    return float(match.group(1))


def sqlite(seconds: float = 5.0) -> float:
    """One connection, WAL, and the `synchronous` both SQLite engines here use."""
    with tempfile.TemporaryDirectory() as folder:
        connection = sqlite3.connect(Path(folder) / "ceiling.sqlite3", isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        synchronous = os.environ.get("BENCH_SQLITE_SYNCHRONOUS", "FULL")
        connection.execute(f"PRAGMA synchronous={synchronous}")
        connection.execute("CREATE TABLE ceiling (id INTEGER PRIMARY KEY, v INTEGER)")
        count = 0
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT INTO ceiling (v) VALUES (1)")
            connection.execute("COMMIT")
            count += 1
        elapsed = time.perf_counter() - started
        connection.close()
    return count / elapsed
