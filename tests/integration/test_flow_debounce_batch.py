"""Debounce and batching (SPEC §3.2, §3.6; behaviours F1-F5, F14-F16)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import django_inngest as inngest
from django_inngest.core import clock as engine_clock
from django_inngest.core.clock import FrozenClock
from django_inngest.models import FunctionRun
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db


def debounced(client: inngest.Inngest, **options: Any) -> list[tuple[Any, float]]:
    """Records (the run's event data, the clock in seconds) of each run."""
    seen: list[tuple[Any, float]] = []

    @client.create_function(
        fn_id="debounced",
        trigger=inngest.TriggerEvent(event="t"),
        debounce=inngest.Debounce(**options),
    )
    def handler(ctx: inngest.ContextSync) -> None:
        seen.append((ctx.event.data, engine_clock.now().timestamp()))

    return seen


def send(client: inngest.Inngest, **data: Any) -> None:
    client.send_sync(inngest.Event(name="t", data=data))


def test_two_events_together_make_one_run_with_the_second_event(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F1."""
    seen = debounced(inngest_client, period=timedelta(seconds=2))
    start = clock.now().timestamp()
    send(inngest_client, n=1)
    send(inngest_client, n=2)
    drain()
    clock.advance(timedelta(milliseconds=1999))
    drain()
    assert seen == []
    clock.advance(timedelta(milliseconds=1))
    drain()
    assert seen == [({"n": 2}, start + 2)]


def test_each_event_pushes_the_run_back_by_the_period(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F2: events at t=0,1,2,3 make one run at t=5 with the last event."""
    seen = debounced(inngest_client, period=timedelta(seconds=2))
    start = clock.now().timestamp()
    for n in range(4):
        send(inngest_client, n=n)
        drain()
        clock.advance(timedelta(seconds=1))
    clock.advance(timedelta(seconds=1))
    drain()
    assert seen == [({"n": 3}, start + 5)]


def test_the_timeout_caps_the_wait_from_the_first_event(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F3: a steady stream still runs at the first event + timeout."""
    seen = debounced(inngest_client, period=timedelta(seconds=2), timeout=timedelta(seconds=5))
    start = clock.now().timestamp()
    for n in range(10):
        send(inngest_client, n=n)
        drain()
        clock.advance(timedelta(seconds=1))
    assert seen[0] == ({"n": 5}, start + 5)


def test_debounce_keys_debounce_separately(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F4."""
    seen = debounced(inngest_client, period=timedelta(seconds=2), key="event.data.user")
    send(inngest_client, user="A")
    send(inngest_client, user="B")
    send(inngest_client, user="A")
    drain()
    clock.advance(timedelta(seconds=2))
    drain()
    assert sorted(data["user"] for data, _ in seen) == ["A", "B"]


def test_an_older_event_does_not_replace_the_stored_one(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F5."""
    seen = debounced(inngest_client, period=timedelta(seconds=2))
    now_ms = engine_clock.now_ms()
    inngest_client.send_sync(inngest.Event(name="t", data={"n": "new"}, ts=now_ms))
    inngest_client.send_sync(inngest.Event(name="t", data={"n": "old"}, ts=now_ms - 10_000))
    drain()
    clock.advance(timedelta(seconds=2))
    drain()
    assert [data for data, _ in seen] == [{"n": "new"}]


def batcher(client: inngest.Inngest, **options: Any) -> list[list[Any]]:
    batches: list[list[Any]] = []

    @client.create_function(
        fn_id="batcher",
        trigger=inngest.TriggerEvent(event="t"),
        batch_events=inngest.Batch(**options),
    )
    def handler(ctx: inngest.ContextSync) -> None:
        assert ctx.event == ctx.events[0]
        batches.append([event.data["n"] for event in ctx.events])

    return batches


def test_batches_fill_up_to_their_size_and_the_rest_runs_at_the_timeout(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F14."""
    batches = batcher(inngest_client, max_size=3, timeout=timedelta(seconds=10))
    inngest_client.send_sync([inngest.Event(name="t", data={"n": n}) for n in range(7)])
    drain()
    assert batches == [[0, 1, 2], [3, 4, 5]]
    clock.advance(timedelta(seconds=9))
    drain()
    assert len(batches) == 2
    clock.advance(timedelta(seconds=1))
    drain()
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]
    assert FunctionRun.objects.filter(status="COMPLETED").count() == 3


def test_batch_keys_never_mix_events(inngest_client: inngest.Inngest, clock: FrozenClock) -> None:
    """F15."""
    batches = batcher(
        inngest_client, max_size=2, timeout=timedelta(seconds=5), key="event.data.user"
    )
    inngest_client.send_sync(
        [
            inngest.Event(name="t", data={"n": f"{user}{i}", "user": user})
            for i in range(2)
            for user in "AB"
        ]
    )
    drain()
    assert sorted(batches) == [["A0", "A1"], ["B0", "B1"]]


def test_an_event_failing_the_batch_condition_runs_alone_at_once(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F16."""
    batches = batcher(
        inngest_client, max_size=5, timeout=timedelta(seconds=10), if_exp="event.data.free == true"
    )
    inngest_client.send_sync(
        [
            inngest.Event(name="t", data={"n": 1, "free": True}),
            inngest.Event(name="t", data={"n": 2, "free": False}),
        ]
    )
    drain()
    assert batches == [[2]]
    clock.advance(timedelta(seconds=10))
    drain()
    assert batches == [[2], [1]]
