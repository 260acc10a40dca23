"""A poison event (data that got in before entry refused it: an integer of 400 digits, over
which expressions raise) sent before and among 200 good events: every worker stays alive, every
good event's runs complete, and only the poisoned (event, function) pairs are skipped, with
their reason recorded (DESIGN §11). Runs on SQLite, and on PostgreSQL with DATABASE_URL."""

from __future__ import annotations

import signal
from collections.abc import Callable
from subprocess import Popen

import pytest

import django_inngest as inngest
from django_inngest.core import clock, ids
from django_inngest.models import Event, EventSkip, FunctionRun
from tests.e2e.conftest import wait_until
from tests.testapp.functions import client

pytestmark = [pytest.mark.e2e]
StartWorker = Callable[..., "Popen[bytes]"]


def insert_poison() -> str:
    event_id = ids.ulid()
    Event.objects.create(
        id=event_id,
        name="e2e/mixed",
        data={"n": 10**400},
        ts=clock.now_ms(),
        received_at=clock.now(),
    )
    return event_id


def test_a_poison_event_before_and_among_200_good_ones_stops_no_worker_and_no_good_run(
    start_worker: StartWorker,
) -> None:
    first = insert_poison()
    workers = [start_worker("--concurrency", "4") for _ in range(2)]
    client.send_sync([inngest.Event(name="e2e/mixed", data={"n": n}) for n in range(1, 101)])
    second = insert_poison()
    for n in range(101, 201):  # one by one: on PostgreSQL each is also taken from its notification
        client.send_sync(inngest.Event(name="e2e/mixed", data={"n": n}))

    def done() -> bool:
        assert all(worker.poll() is None for worker in workers), "a worker exited"
        return FunctionRun.objects.filter(status="COMPLETED").count() == 602

    wait_until(done, timeout=180, interval=0.2)
    by_function: dict[str, list[object]] = {}
    for function_id, output in FunctionRun.objects.values_list("function_id", "output"):
        by_function.setdefault(function_id, []).append(output)
    assert sorted(by_function["e2e-mixed-filtered"]) == list(range(1, 201))  # type: ignore[type-var]
    assert by_function["e2e-mixed-prioritized"] == ["prioritized"] * 200
    assert by_function["e2e-mixed-plain"] == ["plain"] * 202
    skips = set(EventSkip.objects.values_list("event_id", "function_id"))
    assert skips == {
        (poison, function_id)
        for poison in (first, second)
        for function_id in ("e2e-mixed-filtered", "e2e-mixed-prioritized")
    }
    assert not Event.objects.filter(pending=True).exists()
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0


def test_a_nul_in_a_step_error_or_in_a_return_ends_the_run_failed_once(
    start_worker: StartWorker,
) -> None:
    """Issue 15 point 2: on PostgreSQL these runs were executed again after every lease."""
    worker = start_worker("--concurrency", "2")
    client.send_sync(inngest.Event(name="e2e/nul"))
    wait_until(lambda: FunctionRun.objects.filter(status="FAILED").count() == 2, timeout=60)
    outputs = dict(FunctionRun.objects.values_list("function_id", "output"))
    assert outputs["e2e-nul-error"]["message"] == "bad \ufffd value"
    assert outputs["e2e-nul-return"]["message"] == (
        'function "e2e-nul-return" returned data that cannot be stored: '
        'output["x"] contains a NUL character (\\u0000)'
    )
    assert set(FunctionRun.objects.values_list("attempt", flat=True)) == {0}
    assert worker.poll() is None
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
