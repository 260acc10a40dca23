"""SQLite's engine writers queue on a file lock: a writer in another process holds it, we wait."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from django_inngest.store._sql import _SqliteWriteQueue

fcntl = pytest.importorskip("fcntl")

HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1] + "-inngest-lock", os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.readline()
"""


def test_a_writer_waits_for_another_process_to_release_the_lock_and_then_goes_at_once(
    tmp_path: Path,
) -> None:
    database = str(tmp_path / "db.sqlite3")
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, database],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "held\n"
        entered = threading.Event()

        def write() -> None:
            with _SqliteWriteQueue().held(database):
                entered.set()

        writer = threading.Thread(target=write)
        writer.start()
        assert not entered.wait(0.3), "the writer went in while another process held the lock"
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert entered.wait(5)
        writer.join(5)


def test_a_thread_that_holds_its_turn_can_open_a_transaction_inside_it(tmp_path: Path) -> None:
    queue = _SqliteWriteQueue()
    database = str(tmp_path / "db.sqlite3")
    with queue.held(database), queue.held(database):
        pass
    done = threading.Event()

    def other_thread() -> None:
        with queue.held(database):
            done.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    assert done.wait(5), "the lock was not released after the nested turn"
    thread.join(5)
