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
    """Session, user, run, steps, events, reruns: nothing per step or per event."""
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
        with django_assert_num_queries(6):  # type: ignore[operator]
            page(admin_client, run)


def test_an_unknown_run_is_not_found(admin_client: Client) -> None:
    response = admin_client.get("/admin/django_inngest/functionrun/01NOPE/change/")
    assert response.status_code == 404
