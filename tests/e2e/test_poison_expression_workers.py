"""Real worker processes keep going through events whose data no expression can handle: a
400-digit order id reaches the index of waits (`event_index_keys`), the waits' expressions and
their index keys, and used to make every worker exit (issue 15 point 1)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from subprocess import Popen
from typing import Any

import pytest

import django_inngest as inngest
from django_inngest import store
from django_inngest.core import clock, ids
from django_inngest.core.events import PreparedEvent
from django_inngest.models import FunctionRun
from tests.e2e.conftest import wait_until
from tests.testapp.functions import client

pytestmark = [pytest.mark.e2e]
StartWorker = Callable[..., "Popen[bytes]"]
HUGE = 10**400


def store_raw(name: str, data: dict[str, Any]) -> None:
    """Stored as data already in the database is, past today's entry checks."""
    event = PreparedEvent(id=ids.ulid(), name=name, data=data, user_id="", ts=clock.now_ms())
    store.insert_events([event], received_at=clock.now())


def test_poison_order_ids_stop_no_worker_and_every_good_order_completes(
    start_worker: StartWorker,
) -> None:
    store_raw("e2e/order.created", {"order_id": HUGE})
    client.send_sync(
        [inngest.Event(name="e2e/order.created", data={"order_id": n}) for n in range(100)]
    )
    workers = [start_worker("--concurrency", "5") for _ in range(2)]
    wait_until(lambda: FunctionRun.objects.filter(status="WAITING").count() >= 100, timeout=120)
    store_raw("e2e/order.paid", {"order_id": HUGE})
    store_raw("e2e/order.paid", {"order_id": [HUGE, {"deeper": HUGE}]})
    client.send_sync(
        [inngest.Event(name="e2e/order.paid", data={"order_id": n}) for n in range(100)]
    )
    store_raw("e2e/order.paid", {"order_id": -HUGE})
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").count() >= 100, timeout=120)
    outputs = set(FunctionRun.objects.filter(status="COMPLETED").values_list("output", flat=True))
    assert set(range(100)) <= outputs
    assert all(worker.poll() is None for worker in workers), "a worker exited"
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0
