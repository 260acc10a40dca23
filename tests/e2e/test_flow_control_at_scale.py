"""Flow control held by the database across real worker processes (issue: flow control)."""

from __future__ import annotations

import signal
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from subprocess import Popen

import pytest

import django_inngest as inngest
from django_inngest.models import FunctionRun, QueueItem
from tests.e2e.conftest import wait_until
from tests.testapp.functions import client
from tests.testapp.models import WorkLog

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
StartWorker = Callable[..., "Popen[bytes]"]


def most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, change in edges:  # at equal times an end (-1) sorts before a start (+1)
        running += change
        peak = max(peak, running)
    return peak


def most_starts_in_a_window(starts: list[float], window: float) -> int:
    starts = sorted(starts)
    peak, first = 0, 0
    for last, at in enumerate(starts):
        while at - starts[first] >= window:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


def test_four_workers_keep_every_key_within_its_concurrency_and_throttle(
    start_worker: StartWorker,
) -> None:
    client.send_sync(
        [inngest.Event(name="e2e/keyed", data={"key": f"k{n % 200}"}) for n in range(5000)]
    )
    workers = [start_worker("--concurrency", "10") for _ in range(4)]
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").count() == 5000, timeout=300)

    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for key, started, ended in WorkLog.objects.values_list("key", "started", "ended"):
        spans[key].append((started, ended))
    assert len(spans) == 200
    assert sum(len(s) for s in spans.values()) == 5000
    assert max(most_at_once(s) for s in spans.values()) <= 2
    assert max(most_starts_in_a_window([s for s, _ in v], 60.0) for v in spans.values()) <= 31
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0


def _time_light_runs(count: int) -> float:
    already = FunctionRun.objects.filter(function_id="e2e-light", status="COMPLETED").count()
    started = time.monotonic()
    client.send_sync([inngest.Event(name="e2e/light") for _ in range(count)])
    wait_until(
        lambda: (
            FunctionRun.objects.filter(function_id="e2e-light", status="COMPLETED").count()
            == already + count
        ),
        timeout=120,
        interval=0.02,
    )
    return time.monotonic() - started


def test_a_saturated_key_does_not_slow_an_unrelated_function(start_worker: StartWorker) -> None:
    """Three alternating measurements each way, compared by median, so machine noise cancels."""
    workers = [start_worker("--concurrency", "10") for _ in range(2)]
    _time_light_runs(50)  # warm up
    alone, beside = [], []
    for _ in range(3):
        alone.append(_time_light_runs(300))
        client.send_sync([inngest.Event(name="e2e/hog") for _ in range(100)])
        wait_until(
            lambda: QueueItem.objects.filter(parked_on__isnull=False).count() >= 90, timeout=60
        )
        beside.append(_time_light_runs(300))
        client.cancel_runs("e2e-hog", started_before=datetime.now(UTC) + timedelta(seconds=1))
    ratio = statistics.median(beside) / statistics.median(alone)
    assert ratio <= 1.2, f"alone {alone}, beside a saturated key {beside}: {ratio:.2f}x"
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
