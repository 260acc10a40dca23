"""An event whose data no expression can handle (a 400-digit int, data nested past the stack,
a string that makes a regex work hard) goes through every place expressions are evaluated
without stopping anything: triggers, keys, priority, waits and cancellations (issue 15 points
1 and 4). The event is stored past the entry checks on purpose, as data already stored was."""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import pytest

import django_inngest as inngest
from django_inngest import store
from django_inngest.core import clock, ids
from django_inngest.core.events import PreparedEvent
from django_inngest.models import FunctionRun
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


POISONS = [
    {"n": 10**400},
    {"n": deep(sys.getrecursionlimit() // 2)},
    {"n": "a" * 100_000 + "!", "l": list(range(20_000))},
]


def store_raw(name: str, data: dict[str, Any]) -> None:
    """Store an event as `send_sync` would, without its checks."""
    event = PreparedEvent(id=ids.ulid(), name=name, data=data, user_id="", ts=clock.now_ms())
    store.insert_events([event], received_at=clock.now())


@pytest.mark.parametrize("poison", POISONS, ids=["huge-int", "deep", "big"])
def test_poison_data_reaches_every_expression_and_stops_nothing(
    inngest_client: inngest.Inngest, poison: dict[str, Any]
) -> None:
    @inngest_client.create_function(
        fn_id="filtered",
        trigger=inngest.TriggerEvent(
            event="order",
            expression="event.data.n == 1 || event.data.n.matches('^(a+)+$') "
            "|| event.data.l.exists(x, event.data.l.exists(y, x == y + 1)) || true",
        ),
        concurrency=[inngest.Concurrency(limit=5, key="event.data.n")],
        priority=inngest.Priority(run="timestamp(event.data.n) > now() ? 10 : 0"),
        cancel=[inngest.Cancel(event="order.cancelled", if_exp="event.data.n == async.data.n")],
    )
    def filtered(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        found = step.wait_for_event(
            "paid",
            event="payment",
            if_exp="async.data.n == event.data.n "
            "&& duration(string(event.data.n) + 's') >= duration('1s')",
            timeout=timedelta(minutes=1),
        )
        return None if found is None else "paid"

    store_raw("order", poison)
    inngest_client.send_sync(inngest.Event(name="order", data={"n": 1}))
    drain()
    store_raw("payment", poison)
    store_raw("order.cancelled", poison)
    inngest_client.send_sync(inngest.Event(name="payment", data={"n": 1}))
    drain()
    good = FunctionRun.objects.get(event__data__n=1)
    assert (good.status, good.output) == ("COMPLETED", "paid")
    others = FunctionRun.objects.exclude(id=good.id).values_list("status", flat=True)
    # The poisoned run, if its trigger matched, waits, or was cancelled by the equal value.
    assert set(others) <= {"WAITING", "CANCELLED"}
