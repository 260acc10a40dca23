"""`manage.py inngest_worker` as a user runs it: flags, their validation, log levels, the burst
summary, signal names, a database without the tables, and `--reload` (issue 18)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

import django_inngest as inngest
from django_inngest.models import FunctionRun
from tests.e2e.conftest import ROOT, database_url, wait_until
from tests.testapp.functions import client

COMMAND = [sys.executable, "-m", "django", "inngest_worker"]


def environment(database: str | None = None) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database or database_url(),
        "PYTHONPATH": str(ROOT),
    }


def worker(
    *args: str, database: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        cwd=ROOT,
        env=environment(database),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [("0", "must be at least 1, not '0'"), ("two", "must be a whole number, not 'two'")],
)
def test_a_concurrency_below_one_or_not_a_number_is_refused_naming_the_value(
    value: str, problem: str
) -> None:
    with pytest.raises(CommandError, match=f"-c/--concurrency: {problem}"):
        call_command("inngest_worker", "-c", value)


def test_an_unknown_log_level_is_refused_naming_the_value() -> None:
    with pytest.raises(CommandError, match=r"-l/--loglevel: must be one of DEBUG, .*'loud'"):
        call_command("inngest_worker", "--loglevel", "loud")


def test_reload_and_burst_are_refused_together() -> None:
    with pytest.raises(CommandError, match="--reload and --burst"):
        call_command("inngest_worker", "--reload", "--burst")


def test_a_database_without_the_tables_gets_one_line_and_exit_status_1(tmp_path: Path) -> None:
    started = time.monotonic()
    result = worker(database=f"sqlite:///{tmp_path / 'empty.sqlite3'}", timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "CommandError: the django_inngest tables are missing: run `manage.py migrate`"
    ]
    assert time.monotonic() - started < 30


def test_a_database_behind_on_migrations_names_them_and_exits_1(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'behind.sqlite3'}"
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "django_inngest", "0006", "-v", "0"],
        cwd=ROOT,
        env=environment(database),
        check=True,
        timeout=120,
    )
    result = worker(database=database, timeout=60)
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert "the django_inngest tables are not up to date (0007_lean_indexes" in line
    assert line.endswith("run `manage.py migrate`")


def test_short_flags_debug_logs_and_the_burst_summary(transactional_db: None) -> None:
    client.send_sync(
        [
            inngest.Event(name="e2e/five", data={}),
            inngest.Event(name="e2e/out-of-stock", data={"item": 7}),
        ]
    )
    result = worker("-c", "2", "-l", "debug", "--burst")
    assert result.returncode == 0, result.stderr
    [summary] = result.stdout.strip().splitlines()
    assert summary.startswith("burst finished: 2 invocations in ")
    assert summary.endswith(
        ": 1 completed, 1 failed, 0 retried, 0 sleeping, 0 waiting, 0 dropped"
    ), summary
    logs = result.stderr
    assert "concurrency=2" in logs
    failed = FunctionRun.objects.get(function_id="e2e-out-of-stock")
    assert f"DEBUG django_inngest.worker run started run_id={failed.id} fn=e2e-out-of-stock" in logs
    assert (
        f"WARNING django_inngest.worker run failed run_id={failed.id} fn=e2e-out-of-stock "
        "error=ValueError: no stock for item 7"
    ) in logs


def test_debug_logs_are_off_by_default_and_on_with_verbosity_2(transactional_db: None) -> None:
    client.send_sync(inngest.Event(name="e2e/five", data={}))
    quiet = worker("--burst")
    assert "INFO django_inngest.worker run completed" in quiet.stderr
    assert "DEBUG" not in quiet.stderr
    client.send_sync(inngest.Event(name="e2e/five", data={}))
    verbose = worker("--burst", "-v", "2")
    assert "DEBUG django_inngest.worker run started" in verbose.stderr
    silent = worker("--burst", "-v", "0")
    assert "INFO" not in silent.stderr


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_sigterm_is_logged_by_name(transactional_db: None, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            COMMAND, cwd=ROOT, env=environment(), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: "cron scheduler started" in read(log), timeout=60)
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert "SIGTERM received: finishing current runs" in read(log)
    assert "signal 15" not in read(log)


def test_reload_restarts_the_worker_when_a_python_file_changes(
    transactional_db: None, tmp_path: Path
) -> None:
    log = tmp_path / "worker.log"
    watched = ROOT / "tests" / "testapp" / "functions.py"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*COMMAND, "--reload"],
            cwd=ROOT,
            env=environment(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: "cron scheduler started" in read(log), timeout=60)
        time.sleep(1.5)  # the reloader has taken the files' first modification times
        os.utime(watched)  # a save that changes nothing but the time
        wait_until(lambda: read(log).count("worker starting") == 2, timeout=60)
        assert "functions.py changed: stopping the worker to reload" in read(log)
        assert read(log).count("worker stopped") == 1
        client.send_sync(inngest.Event(name="e2e/five", data={}))
        wait_until(
            lambda: FunctionRun.objects.filter(
                function_id="e2e-five-steps", status="COMPLETED"
            ).exists(),
            timeout=60,
        )
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
