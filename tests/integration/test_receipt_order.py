"""Waits and cancel listeners see the events received after them, in the order the database
received them, whatever id or seed the sender chose (DESIGN §11; issue 15 point 5)."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest

import django_inngest as inngest
from django_inngest.core.clock import FrozenClock
from django_inngest.models import Event, FunctionRun, Pause
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db

FIVE_MINUTES_MS = 5 * 60 * 1000


def seed(clock: FrozenClock, offset_ms: int, salt: int = 1) -> str:
    """An `x-inngest-event-id-seed` whose time is `offset_ms` from now."""
    now_ms = int(clock.now().timestamp() * 1000)
    return f"{now_ms + offset_ms},{base64.b64encode(bytes([salt] * 10)).decode()}"


def waiter(client: inngest.Inngest, before: Any = None) -> list[Any]:
    results: list[Any] = []

    @client.create_function(fn_id="waiter", trigger=inngest.TriggerEvent(event="order"))
    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> Any:
        if before is not None:
            step.run("before", before)
        found = step.wait_for_event(
            "paid",
            event="payment",
            if_exp="event.data.order == async.data.order",
            timeout=timedelta(hours=1),
        )
        results.append(found)
        return found.data if found else None

    return results


def test_an_event_seeded_five_minutes_behind_ends_a_wait_created_before_it(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    results = waiter(inngest_client)
    inngest_client.send_sync(inngest.Event(name="order", data={"order": 7}))
    drain()
    assert FunctionRun.objects.get().status == "WAITING"
    [payment_id] = inngest_client.send_sync(
        inngest.Event(name="payment", data={"order": 7}), id_seed=seed(clock, -FIVE_MINUTES_MS)
    )
    assert payment_id < Pause.objects.get().run_id  # its id says "before the run even began"
    drain()
    assert [found.data for found in results] == [{"order": 7}]
    assert FunctionRun.objects.get().status == "COMPLETED"


def test_an_event_received_before_the_wait_does_not_end_it_even_when_seeded_ahead(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """Sent by the run itself before it waits, and still pending when the wait starts."""

    def pay_early() -> None:
        inngest_client.send_sync(
            inngest.Event(name="payment", data={"order": 7}), id_seed=seed(clock, FIVE_MINUTES_MS)
        )

    results = waiter(inngest_client, before=pay_early)
    inngest_client.send_sync(inngest.Event(name="order", data={"order": 7}))
    drain()
    assert results == []
    assert FunctionRun.objects.get().status == "WAITING"
    inngest_client.send_sync(inngest.Event(name="payment", data={"order": 7, "late": True}))
    drain()
    assert [found.data for found in results] == [{"order": 7, "late": True}]


def test_an_event_seeded_five_minutes_behind_cancels_a_run_started_before_it(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    @inngest_client.create_function(
        fn_id="sleeper",
        trigger=inngest.TriggerEvent(event="order"),
        cancel=[
            inngest.Cancel(event="order.cancelled", if_exp="event.data.order == async.data.order")
        ],
    )
    def sleeper(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.sleep("nap", timedelta(hours=1))

    inngest_client.send_sync(inngest.Event(name="order", data={"order": 7}))
    drain()
    assert FunctionRun.objects.get().status == "SLEEPING"
    inngest_client.send_sync(
        inngest.Event(name="order.cancelled", data={"order": 7}),
        id_seed=seed(clock, -FIVE_MINUTES_MS),
    )
    drain()
    assert FunctionRun.objects.get().status == "CANCELLED"


def test_a_cancel_event_received_before_the_run_started_does_not_cancel_it(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """Even with a seed that puts it after the run's own event."""

    @inngest_client.create_function(
        fn_id="sleeper",
        trigger=inngest.TriggerEvent(event="order"),
        cancel=[inngest.Cancel(event="order.cancelled")],
    )
    def sleeper(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.sleep("nap", timedelta(hours=1))

    inngest_client.send_sync(
        inngest.Event(name="order.cancelled", data={}), id_seed=seed(clock, FIVE_MINUTES_MS)
    )
    inngest_client.send_sync(inngest.Event(name="order", data={"order": 7}))
    drain()
    assert FunctionRun.objects.get().status == "SLEEPING"


def test_events_are_numbered_in_the_order_received_whatever_their_ids() -> None:
    client = inngest.Inngest(app_id="tests")
    ahead = client.send_sync(inngest.Event(name="a"), id_seed="4000000000000,AQEBAQEBAQEBAQ==")
    behind = client.send_sync(inngest.Event(name="b"), id_seed="1000000000000,AgICAgICAgICAg==")
    plain = client.send_sync([inngest.Event(name="c"), inngest.Event(name="d")])
    order = dict(Event.objects.values_list("id", "receipt_order"))
    received = [order[event_id] for event_id in [*ahead, *behind, *plain]]
    assert received == sorted(received)
    assert len(set(received)) == 4
    assert None not in received


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_run_an_idle_worker_takes_from_a_notification_listens_after_its_own_event(
    inngest_client: inngest.Inngest,
) -> None:
    """`pick_up_event` writes the run and its cancel listener in the statement that takes
    the event: the listener's order of receipt is the event's, read by that statement."""
    from django_inngest import store
    from django_inngest.runtime.claimed import planner, route
    from tests.integration.test_pick_up import notification_of

    inngest_client.create_function(
        fn_id="cancellable",
        trigger=inngest.TriggerEvent(event="order"),
        cancel=[inngest.Cancel(event="order.cancelled")],
    )(lambda ctx: None)
    payload = notification_of(lambda: inngest_client.send_sync(inngest.Event(name="order")))
    event = store.described_event(payload)
    assert event is not None
    claimed = store.pick_up_event(
        event, route, "me", limit=10, now=clock_now(), lease_seconds=30, planner=planner
    )
    assert claimed is not None and len(claimed) == 1
    listener = Pause.objects.get()
    assert listener.after_receipt == Event.objects.get(name="order").receipt_order


def clock_now() -> Any:
    from django_inngest.core import clock

    return clock.now()
