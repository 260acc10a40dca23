"""GroupWriter: concurrent writes are grouped while one is in flight; failures stay per item."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from django_inngest.runtime.threads import GroupWriter


def test_writes_submitted_while_a_group_is_in_flight_go_together_as_the_next_group() -> None:
    groups: list[list[int]] = []
    release = threading.Event()

    def write(items: list[int]) -> list[int]:
        groups.append(items)
        if items == [0]:
            release.wait(5)
        return [item * 10 for item in items]

    with ThreadPoolExecutor(max_workers=4) as pool:
        writer = GroupWriter(write, pool)
        futures = [writer.submit(0)]
        while not groups:  # the first group is being written
            threading.Event().wait(0.001)
        futures += [writer.submit(item) for item in (1, 2, 3)]
        release.set()
        assert [future.result(5) for future in futures] == [0, 10, 20, 30]
    assert groups == [[0], [1, 2, 3]]


def test_a_failed_group_is_written_again_one_item_at_a_time() -> None:
    groups: list[list[int]] = []
    release = threading.Event()

    def write(items: list[int]) -> list[int | BaseException]:
        groups.append(items)
        if items == [0]:
            release.wait(5)
        if 2 in items:
            raise RuntimeError(f"cannot write {items}")
        return [ValueError(item) if item == 3 else item for item in items]

    with ThreadPoolExecutor(max_workers=2) as pool:
        writer = GroupWriter(write, pool)
        futures = [writer.submit(0)]
        while not groups:
            threading.Event().wait(0.001)
        futures += [writer.submit(item) for item in (1, 2, 3)]
        release.set()
        assert futures[0].result(5) == 0
        assert futures[1].result(5) == 1
        with pytest.raises(RuntimeError, match=r"cannot write \[2\]"):
            futures[2].result(5)
        with pytest.raises(ValueError, match="3"):
            futures[3].result(5)
    assert groups == [[0], [1, 2, 3], [1], [2], [3]]


def test_a_write_whose_submitter_stopped_waiting_does_not_stall_the_writer() -> None:
    release = threading.Event()
    started = threading.Event()

    def write(items: list[int]) -> list[int]:
        if items == [0]:
            started.set()
            release.wait(5)
        return items

    with ThreadPoolExecutor(max_workers=2) as pool:
        writer = GroupWriter(write, pool)
        first = writer.submit(0)
        assert started.wait(5)
        abandoned, kept = writer.submit(1), writer.submit(2)
        assert abandoned.cancel()
        release.set()
        assert (first.result(5), kept.result(5)) == (0, 2)
        assert writer.submit(3).result(5) == 3
