"""The run page: error or output, the timeline, events, escaping and truncation, refresh, and a
fixed number of queries."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.test import Client

import django_inngest as inngest
from django_inngest.admin import display
from django_inngest.core.clock import FrozenClock
from django_inngest.models import FunctionRun
from django_inngest.testing import drain
from tests.admin_scenarios import Shop

pytestmark = pytest.mark.django_db


def page(client: Client, run: FunctionRun) -> str:
    response = client.get(f"/admin/django_inngest/functionrun/{run.id}/change/")
    assert response.status_code == 200
    return str(response.content.decode())


def test_a_failed_run_shows_the_error_name_message_and_stack(
    admin_client: Client, shop: Shop
) -> None:
    html = page(admin_client, shop.order(7, declined=True))
    error = html[html.index('id="run-error"') :]
    assert "<strong>CardDeclinedError</strong>: card declined for order 7" in error
    assert "Traceback (most recent call last)" in error
    assert "raise CardDeclinedError(" in error


def test_the_timeline_has_a_bar_per_step_with_op_status_attempts_and_each_failed_attempt(
    admin_client: Client, shop: Shop
) -> None:
    response = admin_client.get(
        f"/admin/django_inngest/functionrun/{shop.order(7, declined=True).id}/change/"
    )
    timeline = response.context["timeline"]
    rows = {row.step_id: row for row in timeline.rows}
    assert list(rows) == ["load-order", "charge-card"]
    charge = rows["charge-card"]
    assert (charge.op, charge.status, charge.attempts) == ("run", "FAILED", 3)
    assert [a.number for a in charge.failed_attempts] == [1, 2]
    assert [span.kind for span in charge.spans] == ["attempt", "attempt", "failed"]
    # 0.4 s of loading, then three 1.5 s attempts: the axis is 4.9 s long.
    assert timeline.end - timeline.start == timedelta(seconds=4.9)
    assert rows["load-order"].spans[0].left == 0
    assert charge.spans[0].left == pytest.approx(0.4 / 4.9 * 100, abs=0.01)
    html = response.content.decode()
    assert 'style="left:8.163%;width:30.612%"' in html
    assert "Attempt 2 failed" in html and "Final attempt failed" in html


def test_a_sleeping_step_shows_until_when_and_the_page_refreshes_until_the_run_ends(
    admin_client: Client, shop: Shop, clock: FrozenClock
) -> None:
    run = shop.abandoned_cart(3)
    response = admin_client.get(f"/admin/django_inngest/functionrun/{run.id}/change/")
    nap = next(row for row in response.context["timeline"].rows if row.step_id == "wait-a-day")
    assert nap.waiting and nap.op == "sleep"
    assert nap.until == run.steps.get(step_id="wait-a-day").wake_at
    html = response.content.decode()
    assert "Sleeping until" in html
    assert 'data-refresh-seconds="5"' in html
    clock.advance(timedelta(days=1, seconds=1))
    drain()
    html = page(admin_client, run)
    assert "Slept until" in html
    assert "data-refresh-seconds" not in html


def test_a_completed_run_shows_its_output_and_the_events_that_triggered_it(
    admin_client: Client, shop: Shop
) -> None:
    run = shop.order(4)
    html = page(admin_client, run)
    output = html[html.index('id="run-output"') : html.index('id="timeline"')]
    assert "&quot;charge_id&quot;: &quot;ch_4&quot;" in output
    events = html[html.index('id="run-events"') :]
    assert "shop/order.placed" in events and run.event_id in events
    assert "&quot;order_id&quot;: 4" in events


def test_payloads_are_escaped(admin_client: Client, shop: Shop) -> None:
    html = page(admin_client, shop.order(5, note="<script>alert('x')</script>"))
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html


def test_a_large_payload_is_cut_with_a_link_to_the_whole_value_served_as_json(
    admin_client: Client, shop: Shop
) -> None:
    blob = "x" * (display.PAYLOAD_LIMIT * 2)
    run = shop.order(6, blob=blob)
    response = admin_client.get(f"/admin/django_inngest/functionrun/{run.id}/change/")
    [event] = response.context["events"]
    assert event["data"].truncated
    html = response.content.decode()
    assert blob not in html
    assert f"{event['data'].hidden} more characters not shown" in html
    full = admin_client.get(event["data"].full_url)
    assert full["Content-Type"] == "application/json"
    assert full["X-Content-Type-Options"] == "nosniff"
    assert json.loads(full.content)["blob"] == blob


def test_a_step_output_too_long_to_show_is_served_whole(
    admin_client: Client, isolated_registry: object
) -> None:
    client = inngest.Inngest(app_id="tests")
    big = {"rows": list(range(3000))}

    @client.create_function(fn_id="big", trigger=inngest.TriggerEvent(event="big"))
    def produce(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.run("produce", lambda: big)

    client.send_sync(inngest.Event(name="big"))
    drain()
    run = FunctionRun.objects.get()
    response = admin_client.get(f"/admin/django_inngest/functionrun/{run.id}/change/")
    [row] = response.context["timeline"].rows
    assert row.output.truncated
    assert json.loads(admin_client.get(row.output.full_url).content) == big


def test_the_run_page_costs_the_same_queries_for_two_steps_and_for_twenty(
    admin_client: Client, isolated_registry: object, django_assert_num_queries: object
) -> None:
    """Session, user, run, steps, events, reruns, pauses: nothing per step or per event."""
    client = inngest.Inngest(app_id="tests")

    @client.create_function(fn_id="steps", trigger=inngest.TriggerEvent(event="steps"), retries=0)
    def steps(ctx: inngest.ContextSync, step: inngest.StepSync) -> int:
        for index in range(ctx.event.data["steps"]):
            step.run(f"step-{index}", lambda value=index: value)
        return 0

    client.send_sync([inngest.Event(name="steps", data={"steps": n}) for n in (2, 20)])
    drain()
    few, many = FunctionRun.objects.order_by("id")
    for run in (few, many):
        with django_assert_num_queries(7):  # type: ignore[operator]
            page(admin_client, run)


def test_an_unknown_run_is_not_found(admin_client: Client) -> None:
    response = admin_client.get("/admin/django_inngest/functionrun/01NOPE/change/")
    assert response.status_code == 404


def test_a_waiting_step_says_which_event_it_waits_for_and_until_when(
    admin_client: Client, isolated_registry: object
) -> None:
    client = inngest.Inngest(app_id="tests")

    @client.create_function(
        fn_id="await-payment",
        trigger=inngest.TriggerEvent(event="shop/order.placed"),
        cancel=[
            inngest.Cancel(event="shop/order.cancelled", if_exp="async.data.id == event.data.id")
        ],
    )
    def await_payment(ctx: inngest.ContextSync, step: inngest.StepSync) -> object:
        paid = step.wait_for_event(
            "payment",
            event="shop/payment.received",
            if_exp="async.data.id == event.data.id",
            timeout=timedelta(hours=2),
        )
        return paid is not None

    client.send_sync(inngest.Event(name="shop/order.placed", data={"id": 1}))
    drain()
    run = FunctionRun.objects.get()
    response = admin_client.get(f"/admin/django_inngest/functionrun/{run.id}/change/")
    [row] = response.context["timeline"].rows
    assert (row.op, row.status, row.waiting) == ("wait", "WAITING", True)
    assert row.waiting_for == "event shop/payment.received if async.data.id == event.data.id"
    assert row.until == run.steps.get().wake_at
    assert response.context["cancelled_by"] == [
        "event shop/order.cancelled if async.data.id == event.data.id"
    ]
    assert "Waiting for <strong>event shop/payment.received if" in response.content.decode()


def test_an_invoking_step_says_it_waits_for_the_invoked_run(
    admin_client: Client, isolated_registry: object
) -> None:
    client = inngest.Inngest(app_id="tests")

    @client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="child"))
    def child(ctx: inngest.ContextSync, step: inngest.StepSync) -> int:
        step.sleep("nap", timedelta(minutes=1))
        return 1

    @client.create_function(fn_id="parent", trigger=inngest.TriggerEvent(event="parent"))
    def parent(ctx: inngest.ContextSync, step: inngest.StepSync) -> object:
        return step.invoke("call-child", function=child)

    client.send_sync(inngest.Event(name="parent"))
    drain()
    run = FunctionRun.objects.get(function_id="tests-parent")
    response = admin_client.get(f"/admin/django_inngest/functionrun/{run.id}/change/")
    [row] = response.context["timeline"].rows
    assert (row.op, row.waiting_for) == ("invoke", "the invoked run to end")


def test_a_skipped_run_says_why_and_links_the_run_already_going_on(
    admin_client: Client, isolated_registry: object
) -> None:
    client = inngest.Inngest(app_id="tests")

    @client.create_function(
        fn_id="one-at-a-time",
        trigger=inngest.TriggerEvent(event="sync"),
        singleton=inngest.Singleton(mode="skip"),
    )
    def one_at_a_time(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.sleep("work", timedelta(minutes=5))

    client.send_sync(inngest.Event(name="sync"))
    drain()
    client.send_sync(inngest.Event(name="sync"))
    drain()
    going_on = FunctionRun.objects.get(status="SLEEPING")
    skipped = FunctionRun.objects.get(status="SKIPPED")
    html = page(admin_client, skipped)
    section = html[html.index('id="run-skipped"') :]
    assert "Not run: singleton." in section
    assert f'href="/admin/django_inngest/functionrun/{going_on.id}/change/"' in section
