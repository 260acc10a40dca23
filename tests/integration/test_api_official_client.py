"""Inngest's own Python SDK (PyPI ``inngest``) sends events to a live server of this project:
its ``event_api_base_url`` points at the server, whose site root mounts the event endpoint."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import inngest as inngest_sdk
import pytest
from inngest._internal.errors import SendEventsError

import django_inngest as inngest
from django_inngest.models import Event, FunctionRun
from django_inngest.testing import drain

SdkFactory = Callable[..., inngest_sdk.Inngest]


@pytest.fixture
def sdk_client(live_server: Any) -> Iterator[SdkFactory]:
    """SDK clients aimed at the live server; their connections are closed afterwards (the SDK
    keeps them open for its whole life)."""
    made: list[inngest_sdk.Inngest] = []

    def make(event_key: str = "test-event-key") -> inngest_sdk.Inngest:
        client = inngest_sdk.Inngest(
            app_id="another-service",
            event_api_base_url=live_server.url,
            event_key=event_key,
            is_production=True,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client._http_client._http_client_sync.close()


@pytest.mark.django_db(transaction=True)
def test_the_official_sdk_sends_events_gets_their_ids_and_the_runs_happen(
    sdk_client: SdkFactory, inngest_client: inngest.Inngest
) -> None:
    @inngest_client.create_function(fn_id="greet", trigger=inngest.TriggerEvent(event="sdk/hi"))
    def greet(ctx: inngest.ContextSync, step: inngest.StepSync) -> str:
        return step.run("greet", lambda: f"hello {ctx.event.data['who']}")

    ids = sdk_client().send_sync(
        [
            inngest_sdk.Event(name="sdk/hi", data={"who": "ada"}),
            inngest_sdk.Event(name="sdk/hi", data={"who": "bob"}, id="bob-1"),
        ]
    )
    assert len(ids) == 2
    stored = {row.id: row for row in Event.objects.filter(id__in=ids)}
    assert [(stored[i].name, stored[i].data, stored[i].user_id) for i in ids] == [
        ("sdk/hi", {"who": "ada"}, ""),
        ("sdk/hi", {"who": "bob"}, "bob-1"),
    ]
    summary = drain()
    assert summary.completed == 2
    runs = FunctionRun.objects.filter(function_id="tests-greet")
    assert {(run.event_id, run.status, run.output) for run in runs} == {
        (ids[0], "COMPLETED", "hello ada"),
        (ids[1], "COMPLETED", "hello bob"),
    }


@pytest.mark.django_db(transaction=True)
def test_the_official_sdk_reports_our_refusals_and_nothing_is_stored(
    sdk_client: SdkFactory,
) -> None:
    with pytest.raises(SendEventsError, match="event 1: event name 'inngest/x' is reserved"):
        sdk_client().send_sync([inngest_sdk.Event(name="ok"), inngest_sdk.Event(name="inngest/x")])
    with pytest.raises(SendEventsError, match="event key not found"):
        sdk_client(event_key="not-ours").send_sync(inngest_sdk.Event(name="ok"))
    assert Event.objects.count() == 0
