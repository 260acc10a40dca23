"""The small management commands: inngest_send and inngest_prune."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

import django_inngest as inngest
from django_inngest.core.clock import FrozenClock
from django_inngest.models import Event, FlowState, FunctionRun, IdempotencyKey, RunStep
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db


def test_inngest_send_stores_an_event_and_prints_its_id(inngest_client: inngest.Inngest) -> None:
    out = io.StringIO()
    call_command("inngest_send", "shop/ping", "--data", '{"n": 1}', "--id", "x", stdout=out)
    event = Event.objects.get(id=out.getvalue().strip())
    assert (event.name, event.data, event.user_id) == ("shop/ping", {"n": 1}, "x")


def test_inngest_send_refuses_bad_json_and_reserved_names(inngest_client: inngest.Inngest) -> None:
    with pytest.raises(CommandError, match="--data is not JSON"):
        call_command("inngest_send", "a", "--data", "{nope")
    with pytest.raises(CommandError, match="'inngest/x' is reserved"):
        call_command("inngest_send", "inngest/x")
    assert not Event.objects.exists()


def test_prune_deletes_old_runs_events_and_idle_state_and_keeps_the_rest(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    inngest_client.create_function(
        fn_id="old",
        trigger=inngest.TriggerEvent(event="t"),
        rate_limit=inngest.RateLimit(limit=1, period=timedelta(minutes=1)),
    )(lambda ctx: ctx.step.run("s", lambda: 1))
    inngest_client.create_function(fn_id="waiting", trigger=inngest.TriggerEvent(event="w"))(
        lambda ctx: ctx.step.sleep("nap", timedelta(days=60))
    )
    inngest_client.send_sync([inngest.Event(name="t", id="dup"), inngest.Event(name="w")])
    drain()
    clock.advance(timedelta(days=31))
    inngest_client.send_sync(inngest.Event(name="t", data={"new": True}))
    drain()
    assert FlowState.objects.filter(kind="gcra").exists()
    clock.advance(timedelta(hours=2))
    out = io.StringIO()
    call_command("inngest_prune", "--noinput", stdout=out)
    assert "deleted 1 runs" in out.getvalue()
    assert set(FunctionRun.objects.values_list("function_id", "status")) == {
        ("tests-old", "COMPLETED"),
        ("tests-waiting", "SLEEPING"),
    }
    assert FunctionRun.objects.get(function_id="tests-old").event.data == {"new": True}  # type: ignore[union-attr]
    assert RunStep.objects.filter(run__function_id="tests-old").count() == 1
    assert not IdempotencyKey.objects.exists()
    assert Event.objects.filter(name="w").exists(), "the sleeping run still needs its event"
    assert not FlowState.objects.filter(kind="gcra").exists(), "an expired rate is forgotten"
