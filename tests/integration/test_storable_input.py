"""Input the store cannot hold is refused where it enters, with an error naming the value and
its path, and nothing written (DESIGN §11): `send_sync`, `send`, `step.send_event`,
`POST e/<key>`, `step.invoke` data and the admin's Invoke form, the same on both backends."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

import django_inngest as inngest
from django_inngest.core.errors import InvalidEventError
from django_inngest.models import Event, FunctionRun
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db

HUGE = 10**400
TOO_BIG = "data of event 't' cannot be stored: data[\"n\"] is an integer of 401 digits, outside the range of a 64-bit float"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"n": HUGE}, 'data["n"] is an integer of 401 digits'),
        ({"a": [{"b": "x\x00"}]}, 'data["a"][0]["b"] contains a NUL character'),
        ({"a": "\ud800"}, 'data["a"] contains a lone surrogate ("\\ud800")'),
        ({"deep": json.loads("[" * 100 + "]" * 100)}, "data nests deeper than 100 levels"),
    ],
)
def test_send_sync_refuses_what_the_store_cannot_hold_and_writes_nothing(
    inngest_client: inngest.Inngest, data: dict[str, Any], problem: str
) -> None:
    with pytest.raises(InvalidEventError) as raised:
        inngest_client.send_sync([inngest.Event(name="ok"), inngest.Event(name="t", data=data)])
    assert f"event 1: data of event 't' cannot be stored: {problem}" in str(raised.value)
    assert not Event.objects.exists()


def test_integers_that_fit_a_float_are_stored_exactly(inngest_client: inngest.Inngest) -> None:
    inngest_client.send_sync(inngest.Event(name="t", data={"n": 2**63 + 1, "m": -(2**70)}))
    assert Event.objects.get().data == {"n": 2**63 + 1, "m": -(2**70)}


def test_async_send_refuses_the_same(inngest_client: inngest.Inngest) -> None:
    with pytest.raises(InvalidEventError, match=re.escape(TOO_BIG)):
        async_to_sync(inngest_client.send)(inngest.Event(name="t", data={"n": HUGE}))
    assert not Event.objects.exists()


def test_step_send_event_refuses_the_same_and_sends_nothing(
    inngest_client: inngest.Inngest,
) -> None:
    @inngest_client.create_function(
        fn_id="sender", trigger=inngest.TriggerEvent(event="go"), retries=0
    )
    def sender(ctx: inngest.ContextSync) -> None:
        ctx.step.send_event(
            "send", [inngest.Event(name="ok"), inngest.Event(name="t", data={"n": HUGE})]
        )

    inngest_client.send_sync(inngest.Event(name="go"))
    drain()
    run = FunctionRun.objects.get()
    assert run.status == "FAILED"
    assert run.output["message"] == f"event 1: {TOO_BIG} (about ±1.8e308)"
    assert list(Event.objects.values_list("name", flat=True).order_by("id"))[:1] == ["go"]
    assert not Event.objects.filter(name__in=["ok", "t"]).exists()


def test_invoke_data_is_refused_in_the_invoking_step(inngest_client: inngest.Inngest) -> None:
    child = inngest_client.create_function(fn_id="child", trigger=inngest.TriggerEvent(event="c"))(
        lambda ctx: None
    )

    @inngest_client.create_function(
        fn_id="parent", trigger=inngest.TriggerEvent(event="p"), retries=0
    )
    def parent(ctx: inngest.ContextSync) -> None:
        ctx.step.invoke("call", function=child, data={"x": ["\x00"]})

    inngest_client.send_sync(inngest.Event(name="p"))
    drain()
    run = FunctionRun.objects.get()
    assert run.status == "FAILED"
    assert run.output["message"] == (
        "step 'call': invoke data cannot be stored: data[\"x\"][0] contains a NUL character (\\u0000)"
    )
    assert not Event.objects.filter(name="inngest/function.invoked").exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"name": "t", "data": {"n": 1' + b"0" * 400 + b"}}", "event 0: " + TOO_BIG),
        (
            b'{"name": "t", "data": {"n": 1e400}}',
            "event 0: data of event 't' cannot be stored: data[\"n\"] is inf, which is not a JSON number",
        ),
        (b'{"name": "t", "data": {"k": ["\\ud800"]}}', 'data["k"][0] contains a lone surrogate'),
    ],
)
def test_the_event_api_answers_400_naming_the_path(
    client: Client, body: bytes, message: str
) -> None:
    response = client.post("/inngest/e/test-event-key", data=body, content_type="application/json")
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert not Event.objects.exists()


def invoke(client: Client, data: str) -> str:
    response = client.post(
        "/admin/django_inngest/functionrun/functions/",
        {"function_id": "tests-f", "event_name": "t", "event_data": data},
    )
    assert response.status_code == 200  # the form again, with its error
    return response.content.decode()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (
            '{"n": 1' + "0" * 400 + "}",
            "This data cannot be stored: data[&quot;n&quot;] is an integer of 401 digits",
        ),
        ('{"n": 1' + "0" * 5000 + "}", "This is not valid JSON: Exceeds the limit (4300 digits)"),
        (
            '{"s": "a\\u0000b"}',
            "This data cannot be stored: data[&quot;s&quot;] contains a NUL character",
        ),
        # Python 3.11's json gives up on 3000 levels (RecursionError: "This JSON nests ..."),
        # 3.13's reads them and the storable check refuses them ("This data cannot be stored").
        ('{"a": ' + "[" * 3000 + "]" * 3000 + "}", "nests deeper than 100 levels"),
        (
            '{"a": ' + "[" * 100 + "]" * 100 + "}",
            "This data cannot be stored: data nests deeper than 100 levels",
        ),
    ],
    ids=["huge int", "too long to read", "NUL", "3000 deep", "101 deep"],
)
def test_the_admin_invoke_form_refuses_it_with_a_form_error(
    inngest_client: inngest.Inngest, admin_client: Client, data: str, error: str
) -> None:
    inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"))(
        lambda ctx: None
    )
    assert error in invoke(admin_client, data)
    assert not Event.objects.exists()


def test_sending_again_an_event_stored_before_the_rule_is_refused_with_a_message(
    admin_client: Client,
) -> None:
    """Data that got in before entry refused it is not sent on by the admin's Send again."""
    from django_inngest.core import clock, ids

    event_id = ids.ulid()
    Event.objects.create(
        id=event_id, name="t", data={"n": HUGE}, ts=clock.now_ms(), received_at=clock.now()
    )
    response = admin_client.post(f"/admin/django_inngest/event/{event_id}/send-again/", follow=True)
    assert response.status_code == 200
    [message] = [str(m) for m in response.context["messages"]]
    assert message.startswith(f"event {event_id}: event 0: {TOO_BIG}")
    assert Event.objects.count() == 1
