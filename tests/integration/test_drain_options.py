"""`drain(functions=[...])` runs only some functions; `DrainSummary.waiting` counts waits apart
from sleeps; `drain()` works in a `django.test.TestCase` as docs/testing.md shows (issue 18)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.test import TestCase

import django_inngest as inngest
from django_inngest.core.clock import FrozenClock
from django_inngest.models import FunctionRun
from django_inngest.testing import drain, frozen_clock

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(inngest_client: inngest.Inngest) -> dict[str, inngest.Function]:
    def failed(ctx: inngest.ContextSync) -> str:
        return "refunded"

    @inngest_client.create_function(
        fn_id="charge", trigger=inngest.TriggerEvent(event="shop/order"), on_failure=failed
    )
    def charge(ctx: inngest.ContextSync) -> str:
        if ctx.event.data.get("declined"):
            raise inngest.NonRetriableError("card declined")
        return "charged"

    @inngest_client.create_function(fn_id="audit", trigger=inngest.TriggerEvent(event="shop/order"))
    def audit(ctx: inngest.ContextSync) -> str:
        return "audited"

    @inngest_client.create_function(
        fn_id="every-minute", trigger=inngest.TriggerCron(cron="* * * * *")
    )
    def every_minute(ctx: inngest.ContextSync) -> str:
        return "tick"

    return {"charge": charge, "audit": audit, "cron": every_minute}


def statuses() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for function_id, status in FunctionRun.objects.values_list("function_id", "status"):
        found.setdefault(function_id, []).append(status)
    return found


def test_a_drain_of_one_function_fires_no_other_cron_after_days_pass(
    shop: dict[str, inngest.Function], clock: FrozenClock, inngest_client: inngest.Inngest
) -> None:
    drain(functions=[shop["charge"]])  # the schedules start
    clock.advance(timedelta(days=3))
    inngest_client.send_sync(inngest.Event(name="shop/order"))
    summary = drain(functions=[shop["charge"]])
    assert (summary.cron_ticks, summary.completed) == (0, 1)
    assert statuses() == {"tests-charge": ["COMPLETED"], "tests-audit": ["QUEUED"]}
    later = drain()
    assert (later.cron_ticks, later.completed) == (1, 2), "the others' work was left for later"


def test_functions_may_be_named_by_full_id_or_fn_id_and_their_on_failure_runs_too(
    shop: dict[str, inngest.Function], inngest_client: inngest.Inngest
) -> None:
    inngest_client.send_sync(inngest.Event(name="shop/order", data={"declined": True}))
    summary = drain(functions=["charge"])
    assert summary.failed == 1
    assert statuses()["tests-charge-failure"] == ["COMPLETED"]
    assert statuses()["tests-audit"] == ["QUEUED"]
    assert drain(functions=["tests-audit"]).completed == 1


def test_an_unknown_function_is_refused_naming_it_and_the_registered_ones(
    shop: dict[str, inngest.Function],
) -> None:
    with pytest.raises(ValueError, match=r"'refund' is not a registered function; registered: "):
        drain(functions=["refund"])
    with pytest.raises(ValueError, match="needs at least one function"):
        drain(functions=[])


def test_waiting_runs_are_counted_apart_from_sleeping_ones(
    inngest_client: inngest.Inngest,
) -> None:
    @inngest_client.create_function(fn_id="waits", trigger=inngest.TriggerEvent(event="t"))
    def waits(ctx: inngest.ContextSync) -> None:
        ctx.step.wait_for_event("paid", event="shop/paid", timeout=timedelta(hours=1))

    @inngest_client.create_function(fn_id="naps", trigger=inngest.TriggerEvent(event="t"))
    def naps(ctx: inngest.ContextSync) -> None:
        ctx.step.sleep("nap", timedelta(hours=1))

    inngest_client.send_sync(inngest.Event(name="t"))
    summary = drain()
    assert (summary.sleeping, summary.waiting) == (1, 1)


class DrainInATestCaseTests(TestCase):
    """The `django.test.TestCase` example of docs/testing.md."""

    def test_the_receipt_is_sent_after_packing(self) -> None:
        from django_inngest.registry import registry

        with registry.isolated():
            client = inngest.Inngest(app_id="shop")

            @client.create_function(
                fn_id="receipt", trigger=inngest.TriggerEvent(event="shop/order.placed")
            )
            def receipt(ctx: inngest.ContextSync) -> str:
                ctx.step.sleep("wait-for-packing", timedelta(hours=2))
                return ctx.step.run("send-receipt", lambda: "sent")

            with frozen_clock(datetime(2024, 6, 7, 9, 0, tzinfo=UTC)) as clock:
                client.send_sync(inngest.Event(name="shop/order.placed", data={"order_id": 1}))
                self.assertEqual(drain(functions=[receipt]).sleeping, 1)  # noqa: PT009 (the TestCase style the docs show)
                clock.advance(timedelta(hours=2))
                summary = drain(functions=[receipt])
            self.assertEqual(summary.completed, 1)  # noqa: PT009 (the TestCase style the docs show)
            self.assertEqual(FunctionRun.objects.get().output, "sent")  # noqa: PT009 (the TestCase style the docs show)
