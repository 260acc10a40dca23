"""The events list and page, and "send again"."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

import django_inngest as inngest
from django_inngest.models import Event, FunctionRun
from django_inngest.testing import drain
from tests.admin_scenarios import Shop

EVENTS = "/admin/django_inngest/event/"
pytestmark = pytest.mark.django_db


def test_the_events_list_shows_each_event_with_the_number_of_runs_it_started(
    admin_client: Client, shop: Shop
) -> None:
    shop.order(1)
    [unheard] = shop.client.send_sync(inngest.Event(name="shop/nobody.listens"))
    drain()
    response = admin_client.get(EVENTS)
    runs = {event.id: event.run_total for event in response.context["cl"].result_list}
    order_event = FunctionRun.objects.get().event_id
    assert (runs[unheard], runs[order_event]) == (0, 1)
    assert len(runs) == Event.objects.count()


def test_the_events_list_searches_ids_names_and_data(admin_client: Client, shop: Shop) -> None:
    shop.order(1, customer="alice")
    [sent] = shop.client.send_sync(inngest.Event(name="shop/refund", data={}, id="refund-9"))

    def found(term: str) -> set[str]:
        response = admin_client.get(EVENTS, {"q": term})
        return {event.id for event in response.context["cl"].result_list}

    order_event = FunctionRun.objects.get().event_id
    assert found("refund-9") == {sent}
    assert found(sent) == {sent}
    finished = Event.objects.get(name="inngest/function.finished").id  # carries the order's data
    assert found("alice") == {order_event, finished}
    assert found("shop/refund") == {sent}


def test_the_event_page_shows_the_payload_and_the_runs_it_started(
    admin_client: Client, shop: Shop
) -> None:
    run = shop.order(3, declined=True)
    html = admin_client.get(f"{EVENTS}{run.event_id}/change/").content.decode()
    data = html[html.index('id="event-data"') : html.index('id="event-runs"')]
    assert "&quot;order_id&quot;: 3" in data
    runs = html[html.index('id="event-runs"') :]
    assert run.id in runs and "inngest-status-failed" in runs


def test_send_again_sends_a_copy_under_a_new_id_that_starts_the_function_again(
    admin_client: Client, shop: Shop
) -> None:
    shop.client.send_sync(
        inngest.Event(name="shop/order.placed", data={"order_id": 5}, id="order-5")
    )
    drain()
    original = Event.objects.get(user_id="order-5")
    response = admin_client.post(f"{EVENTS}{original.id}/send-again/")
    copy = Event.objects.exclude(pk=original.pk).get(name="shop/order.placed")
    assert response["Location"] == f"{EVENTS}{copy.id}/change/"
    assert (copy.data, copy.user_id) == (original.data, "")
    drain()
    assert FunctionRun.objects.filter(status="COMPLETED").count() == 2


def test_events_the_engine_sent_cannot_be_sent_again(admin_client: Client, shop: Shop) -> None:
    shop.order(1)
    finished = Event.objects.get(name="inngest/function.finished")
    response = admin_client.post(
        EVENTS, {"action": "send_again_selected", "_selected_action": [finished.id]}, follow=True
    )
    [message] = [str(m) for m in response.context["messages"]]
    assert "is reserved" in message
    assert Event.objects.filter(name="inngest/function.finished").count() == 1


def test_the_event_page_lists_a_batch_run_under_every_event_of_the_batch(
    admin_client: Client, shop: Shop
) -> None:
    @shop.client.create_function(
        fn_id="tally",
        trigger=inngest.TriggerEvent(event="shop/visit"),
        batch_events=inngest.Batch(max_size=2, timeout=timedelta(seconds=10)),
    )
    def tally(ctx: inngest.ContextSync) -> int:
        return len(ctx.events)

    first, second = shop.client.send_sync([inngest.Event(name="shop/visit")] * 2)
    drain()
    [run] = FunctionRun.objects.filter(function_id="tests-tally")
    assert run.event_ids == [first, second]
    for event_id in (first, second):
        runs = admin_client.get(f"{EVENTS}{event_id}/change/").context["runs"]
        assert [r["id"] for r in runs] == [run.id]


def test_the_events_list_filters_by_name_or_prefix_and_can_hide_inngest_events(
    admin_client: Client, shop: Shop
) -> None:
    shop.order(1)
    shop.abandoned_cart(2)
    shop.client.send_sync(inngest.Event(name="billing/refund"))

    def names(**query: str) -> list[str]:
        response = admin_client.get(EVENTS, query)
        return sorted(event.name for event in response.context["cl"].result_list)

    assert names(name="shop/order.placed") == ["shop/order.placed"]
    assert names(name="shop/*") == ["shop/cart.abandoned", "shop/order.placed"]
    assert names(internal="hide") == ["billing/refund", "shop/cart.abandoned", "shop/order.placed"]
    assert "inngest/function.finished" in names()


def test_the_events_list_marks_events_no_worker_has_matched_yet(
    admin_client: Client, inngest_client: inngest.Inngest
) -> None:
    inngest_client.send_sync(inngest.Event(name="shop/waiting"))
    Event.objects.create(
        id="01J0000000000000000000000Z",
        name="shop/done",
        ts=0,
        received_at=Event.objects.get().received_at,
        pending=False,
    )
    html = admin_client.get("/admin/django_inngest/event/").content.decode()
    assert html.count("inngest-status-pending") == 1
