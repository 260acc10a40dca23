"""Throttle, rate limit, idempotency and priority (SPEC §3.3, §3.4, §3.7, §3.8; F6-F11, F17,
F18, I6) with drain() and the frozen clock."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import django_inngest as inngest
from django_inngest import store
from django_inngest.core import clock as engine_clock
from django_inngest.core.clock import FrozenClock
from django_inngest.models import Event, FunctionRun
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db


def recorder(client: inngest.Inngest, **options: Any) -> list[tuple[Any, float]]:
    started: list[tuple[Any, float]] = []

    @client.create_function(fn_id="limited", trigger=inngest.TriggerEvent(event="t"), **options)
    def handler(ctx: inngest.ContextSync) -> None:
        started.append((ctx.event.data.get("n"), engine_clock.now().timestamp()))

    return started


def run_for(clock: FrozenClock, seconds: int) -> None:
    for _ in range(seconds):
        drain()
        clock.advance(timedelta(seconds=1))
    drain()


def test_throttle_delays_starts_but_runs_them_all_in_order(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F6: limit 1 per 5 s with burst 1 starts at 0, 0, 5, 10, 15."""
    started = recorder(
        inngest_client, throttle=inngest.Throttle(limit=1, period=timedelta(seconds=5))
    )
    t0 = clock.now().timestamp()
    inngest_client.send_sync([inngest.Event(name="t", data={"n": n}) for n in range(5)])
    run_for(clock, 16)
    assert [n for n, _ in started] == [0, 1, 2, 3, 4]
    assert [at - t0 for _, at in started] == [0, 0, 5, 10, 15]


def test_throttle_keys_do_not_delay_each_other(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F7."""
    started = recorder(
        inngest_client,
        throttle=inngest.Throttle(limit=1, period=timedelta(seconds=10), key="event.data.user"),
    )
    inngest_client.send_sync(
        [inngest.Event(name="t", data={"n": f"A{n}", "user": "A"}) for n in range(4)]
    )
    inngest_client.send_sync(inngest.Event(name="t", data={"n": "B0", "user": "B"}))
    drain()
    assert sorted(n for n, _ in started) == ["A0", "A1", "B0"]


def test_rate_limit_drops_runs_over_the_limit_but_keeps_the_events(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F8."""
    started = recorder(
        inngest_client, rate_limit=inngest.RateLimit(limit=1, period=timedelta(hours=1))
    )
    inngest_client.send_sync([inngest.Event(name="t", data={"n": n}) for n in range(3)])
    drain()
    assert [n for n, _ in started] == [0]
    assert Event.objects.filter(name="t").count() == 3


def test_rate_limit_keys_limit_separately(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F8 with a key."""
    started = recorder(
        inngest_client,
        rate_limit=inngest.RateLimit(limit=1, period=timedelta(hours=1), key="event.data.company"),
    )
    inngest_client.send_sync([inngest.Event(name="t", data={"n": c, "company": c}) for c in "AAB"])
    drain()
    assert sorted(n for n, _ in started) == ["A", "B"]


def test_rate_limit_allows_a_tenth_of_the_limit_at_once(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F9: 10 per hour lets 2 through at once (GCRA with burst limit/10), not 10."""
    started = recorder(
        inngest_client, rate_limit=inngest.RateLimit(limit=10, period=timedelta(hours=1))
    )
    inngest_client.send_sync([inngest.Event(name="t", data={"n": n}) for n in range(10)])
    drain()
    assert len(started) == 2
    clock.advance(timedelta(minutes=6))
    inngest_client.send_sync(inngest.Event(name="t", data={"n": 10}))
    drain()
    assert len(started) == 3


def test_a_rate_limit_key_of_false_is_not_limited(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F10."""
    started = recorder(
        inngest_client,
        rate_limit=inngest.RateLimit(limit=1, period=timedelta(hours=1), key="event.data.limited"),
    )
    inngest_client.send_sync(
        [inngest.Event(name="t", data={"n": n, "limited": False}) for n in range(3)]
    )
    drain()
    assert len(started) == 3


def test_idempotency_runs_once_per_key_per_day_and_overrides_rate_limit(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F11."""
    started = recorder(
        inngest_client,
        idempotency="event.data.cart_id",
        rate_limit=inngest.RateLimit(limit=100, period=timedelta(hours=1)),
    )
    for cart in ("A", "A", "B"):
        inngest_client.send_sync(inngest.Event(name="t", data={"n": cart, "cart_id": cart}))
    drain()
    assert [n for n, _ in started] == ["A", "B"]
    clock.advance(timedelta(hours=23))
    inngest_client.send_sync(inngest.Event(name="t", data={"n": "A", "cart_id": "A"}))
    drain()
    assert len(started) == 2
    clock.advance(timedelta(hours=1))
    inngest_client.send_sync(inngest.Event(name="t", data={"n": "A", "cart_id": "A"}))
    drain()
    assert [n for n, _ in started] == ["A", "B", "A"]


def test_a_higher_priority_run_starts_before_earlier_runs(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F17: with one slot, the VIP queued last starts before the runs queued < 600 s earlier."""
    started = recorder(
        inngest_client,
        concurrency=[inngest.Concurrency(limit=1)],
        priority=inngest.Priority(run="event.data.vip ? 600 : 0"),
    )
    inngest_client.send_sync(
        [inngest.Event(name="t", data={"n": n, "vip": False}) for n in range(3)]
    )
    drain_fan_out_only()
    clock.advance(timedelta(seconds=30))
    inngest_client.send_sync(inngest.Event(name="t", data={"n": "vip", "vip": True}))
    drain()
    assert [n for n, _ in started] == ["vip", 0, 1, 2]


def drain_fan_out_only() -> None:
    from django_inngest.registry import registry
    from django_inngest.runtime.claimed import planner, route

    store.fan_out(route, now=engine_clock.now(), pending=registry.listens_to, planner=planner)


def test_a_priority_that_is_not_an_integer_counts_as_zero(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """F18."""
    started = recorder(inngest_client, priority=inngest.Priority(run="'high'"))
    inngest_client.send_sync(inngest.Event(name="t", data={"n": 1}))
    drain()
    assert [n for n, _ in started] == [1]


def test_invoking_a_rate_limited_function_fails_the_invoking_step(
    inngest_client: inngest.Inngest,
) -> None:
    """I6."""

    @inngest_client.create_function(
        fn_id="child",
        trigger=inngest.TriggerEvent(event="never"),
        rate_limit=inngest.RateLimit(limit=1, period=timedelta(hours=1)),
    )
    def child(ctx: inngest.ContextSync) -> str:
        return "ran"

    @inngest_client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="t"))
    def parent(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        first = step.invoke("first", function=child)
        try:
            step.invoke("second", function=child)
        except inngest.StepError as error:
            return [first, error.message]
        return None

    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    assert FunctionRun.objects.get(function_id="tests-parent").output == [
        "ran",
        "invoked function is rate limited",
    ]
