"""Trigger filters and wildcard event names (behaviours K2, K3)."""

from __future__ import annotations

import pytest

import django_inngest as inngest
from django_inngest.models import FunctionRun
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db


def test_a_trigger_expression_filters_the_events_that_start_runs(
    inngest_client: inngest.Inngest,
) -> None:
    """K2."""
    inngest_client.create_function(
        fn_id="big", trigger=inngest.TriggerEvent(event="t", expression="event.data.amount > 100")
    )(lambda ctx: ctx.event.data["amount"])
    inngest_client.send_sync([inngest.Event(name="t", data={"amount": a}) for a in (50, 150)])
    drain()
    assert list(FunctionRun.objects.values_list("output", flat=True)) == [150]


@pytest.mark.parametrize(
    ("pattern", "name", "starts"),
    [
        ("app/*", "app/user.created", True),
        ("app/user.*", "app/user.deleted", True),
        ("app/user.*", "app/order.placed", False),
        ("app/*", "other/user.created", False),
    ],
)
def test_wildcard_triggers_match_by_prefix(
    inngest_client: inngest.Inngest, pattern: str, name: str, starts: bool
) -> None:
    """K3."""
    inngest_client.create_function(fn_id="wild", trigger=inngest.TriggerEvent(event=pattern))(
        lambda ctx: ctx.event.name
    )
    inngest_client.send_sync(inngest.Event(name=name))
    drain()
    assert FunctionRun.objects.filter(output=name).exists() is starts


def test_an_event_matching_two_triggers_of_one_function_starts_one_run(
    inngest_client: inngest.Inngest,
) -> None:
    inngest_client.create_function(
        fn_id="twice",
        trigger=[inngest.TriggerEvent(event="app/*"), inngest.TriggerEvent(event="app/x")],
    )(lambda ctx: None)
    inngest_client.send_sync(inngest.Event(name="app/x"))
    assert drain().runs_created == 1


def test_cancellations_can_start_user_functions(inngest_client: inngest.Inngest) -> None:
    """E17 for inngest/function.cancelled."""
    inngest_client.create_function(
        fn_id="long", trigger=inngest.TriggerEvent(event="t"), cancel=[inngest.Cancel(event="stop")]
    )(lambda ctx: ctx.step.sleep("nap", 60_000))
    inngest_client.create_function(
        fn_id="audit", trigger=inngest.TriggerEvent(event="inngest/function.cancelled")
    )(lambda ctx: ctx.event.data["function_id"])
    inngest_client.send_sync(inngest.Event(name="t"))
    drain()
    inngest_client.send_sync(inngest.Event(name="stop"))
    drain()
    assert FunctionRun.objects.get(function_id="tests-audit").output == "tests-long"
