"""The functions page: triggers, flow-control config, runs of the last 24 h, next cron tick,
and the "invoke" form that sends a test event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

import django_inngest as inngest
from django_inngest.core.clock import FrozenClock
from django_inngest.models import Event, FunctionRun
from django_inngest.testing import drain
from tests.admin_scenarios import Shop

URL = "/admin/django_inngest/functionrun/functions/"
pytestmark = pytest.mark.django_db


def rows(client: Client) -> dict[str, dict[str, object]]:
    response = client.get(URL)
    assert response.status_code == 200
    return {row["function"].id: row for row in response.context["rows"]}


def test_each_registered_function_is_listed_with_its_triggers_and_options(
    admin_client: Client, shop: Shop
) -> None:
    @shop.client.create_function(
        fn_id="vip-orders",
        trigger=inngest.TriggerEvent(event="shop/order.placed", expression="event.data.vip"),
        throttle=inngest.Throttle(limit=10, period=timedelta(minutes=1)),
        concurrency=[inngest.Concurrency(limit=2, key="event.data.customer")],
    )
    def vip(ctx: inngest.ContextSync) -> None:
        return None

    listed = rows(admin_client)
    assert set(listed) == {"tests-charge-order", "tests-cart-reminder", "tests-vip-orders"}
    assert listed["tests-vip-orders"]["triggers"] == [
        {"kind": "event", "text": "shop/order.placed", "expression": "event.data.vip"}
    ]
    assert dict(listed["tests-vip-orders"]["options"]) == {  # type: ignore[call-overload]
        "concurrency": "Concurrency(limit=2, key=event.data.customer)",
        "throttle": "Throttle(limit=10, period=1 m 00 s)",
    }
    assert listed["tests-charge-order"]["options"] == []


def test_run_counts_per_status_cover_the_last_24_hours_only(
    admin_client: Client, shop: Shop, clock: FrozenClock
) -> None:
    shop.order(1, declined=True)
    clock.advance(timedelta(hours=25))
    shop.order(2)
    shop.order(3)
    shop.order(4, declined=True)
    counts = rows(admin_client)["tests-charge-order"]["counts"]
    assert [(str(c["status"]), c["count"]) for c in counts] == [  # type: ignore[attr-defined]
        ('<span class="inngest-status inngest-status-completed">Completed</span>', 2),
        ('<span class="inngest-status inngest-status-failed">Failed</span>', 1),
    ]


def test_a_cron_function_shows_its_next_and_last_tick_in_its_zone(
    admin_client: Client, isolated_registry: object, clock: FrozenClock
) -> None:
    clock.set(datetime(2030, 3, 4, 10, 17, tzinfo=UTC))
    client = inngest.Inngest(app_id="tests")
    client.create_function(
        fn_id="nightly", trigger=inngest.TriggerCron(cron="TZ=Europe/Paris 30 2 * * *")
    )(lambda ctx: None)

    def cron_line() -> object:
        [trigger] = rows(admin_client)["tests-nightly"]["triggers"]  # type: ignore[misc]
        return trigger

    assert cron_line() == {
        "kind": "cron",
        "text": "TZ=Europe/Paris 30 2 * * *",
        "expression": "next tick 2030-03-05 02:30 (Europe/Paris), last never",
    }
    drain()  # the scheduler starts
    clock.set(datetime(2030, 3, 5, 1, 30, 1, tzinfo=UTC))
    drain()
    assert cron_line()["expression"] == (  # type: ignore[index]
        "next tick 2030-03-06 02:30 (Europe/Paris), last 2030-03-05 02:30 (Europe/Paris)"
    )


def invoke(client: Client, data: str, name: str = "shop/order.placed") -> object:
    return client.post(
        URL,
        {"function_id": "tests-charge-order", "event_name": name, "event_data": data},
        follow=True,
    )


def test_invoke_sends_a_test_event_that_starts_the_function(
    admin_client: Client, shop: Shop
) -> None:
    response = invoke(admin_client, '{"order_id": 12}')
    event = Event.objects.get(name="shop/order.placed")
    assert event.data == {"order_id": 12}
    [message] = [str(m) for m in response.context["messages"]]  # type: ignore[attr-defined]
    assert message == (
        f'Sent event <a href="/admin/django_inngest/event/{event.id}/change/">{event.id}</a> '
        "to start tests-charge-order."
    )
    drain()
    assert FunctionRun.objects.get(event=event).status == "COMPLETED"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        # Python 3.13 words a trailing comma's error differently; a missing value reads alike.
        ('{"order_id": }', "This is not valid JSON: Expecting value (line 1, column 14)."),
        ("[1, 2]", "The data must be a JSON object such as {&quot;id&quot;: 1}, not list [1, 2]."),
    ],
)
def test_invoke_refuses_data_that_is_not_a_json_object_with_a_clear_error(
    admin_client: Client, shop: Shop, data: str, error: str
) -> None:
    response = invoke(admin_client, data)
    assert error in response.content.decode()  # type: ignore[attr-defined]
    assert not Event.objects.exists()


def test_invoke_refuses_an_event_the_function_would_not_start_on(
    admin_client: Client, shop: Shop
) -> None:
    response = invoke(admin_client, "{}", name="shop/order.cancelled")
    assert (
        "An event &#x27;shop/order.cancelled&#x27; with this data would not start "
        "tests-charge-order: its triggers are event &#x27;shop/order.placed&#x27;."
    ) in response.content.decode()  # type: ignore[attr-defined]
    assert not Event.objects.exists()


def test_the_invoke_form_is_shown_only_to_users_who_may_send_events(
    viewer: Client, operator: Client, shop: Shop
) -> None:
    assert "Send test event" in operator.get(URL).content.decode()
    assert "Send test event" not in viewer.get(URL).content.decode()
