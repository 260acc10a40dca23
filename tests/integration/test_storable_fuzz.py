"""Arbitrary JSON-like values (deep nesting, huge numbers, NUL, lone surrogates, long strings)
through `send_sync`, the event API and step returns (hypothesis): never a 5xx, never an
exception other than a clear validation error, never a run left unended after `drain()`.
Each example runs in its own rolled-back transaction."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

import django_inngest as inngest
from django_inngest.core.errors import InvalidEventError
from django_inngest.core.events import storable_json
from django_inngest.models import ENDED_STATUSES, Event, FunctionRun
from django_inngest.registry import registry
from django_inngest.testing import drain

pytestmark = pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")


def nest(levels: int, inner: Any) -> Any:
    for level in range(levels):
        inner = [inner] if level % 2 else {"k": inner}
    return inner


edge_text = st.sampled_from(
    ["", "\x00", "a\x00b", "\ud800", "x\udfffy", "\ud83d\ude42", "🙂", "é", "\\u0000", "9" * 400,
     "x" * 100_000, "[" * 200]
)  # fmt: skip
text = st.one_of(st.text(max_size=20), st.text(st.characters(codec=None), max_size=8), edge_text)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**1100), max_value=2**1100),
    st.sampled_from([10**400, -(10**309), 2**63, 2**1024, int(1.7976931348623157e308)]),
    st.floats(),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, text)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=10,
)
deep = st.tuples(st.integers(min_value=90, max_value=1200), scalars).map(lambda p: nest(*p))
data_objects = st.dictionaries(text, st.one_of(values, deep), max_size=4)

FUZZ = settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def echo_function(client: inngest.Inngest) -> None:
    """A function that returns its event's data from a step, and then as its output."""

    @client.create_function(fn_id="echo", trigger=inngest.TriggerEvent(event="t"), retries=0)
    def echo(ctx: inngest.ContextSync) -> Any:
        return ctx.step.run("echo", lambda: ctx.event.data)


def assert_every_run_ended() -> None:
    drain()
    left = FunctionRun.objects.exclude(status__in=ENDED_STATUSES)
    assert not left.exists(), list(left.values("id", "status"))


def storable(value: Any) -> bool:
    try:
        storable_json(value, "data")
    except InvalidEventError:
        raise AssertionError("not expected") from None
    except ValueError:
        return False
    return True


class StorableFuzzTests(TestCase):
    @FUZZ
    @given(data=data_objects)
    def test_send_sync_stores_it_or_refuses_it_clearly_and_runs_end(self, data: Any) -> None:
        with registry.isolated():
            client = inngest.Inngest(app_id="tests")
            echo_function(client)
            try:
                client.send_sync(inngest.Event(name="t", data=data))
            except InvalidEventError as error:
                refusal = str(error)
            else:
                refusal = ""
            if refusal:
                assert "cannot be stored" in refusal or "bytes, over the limit" in refusal
                assert not Event.objects.exists()
                return
            assert storable(data)
            assert_every_run_ended()
            run = FunctionRun.objects.get()
            assert run.status == "COMPLETED", run.output
            assert run.output == Event.objects.get(name="t").data

    @FUZZ
    @given(data=data_objects, raw=st.booleans())
    def test_the_event_api_answers_below_500_and_runs_end(self, data: Any, raw: bool) -> None:
        body = json.dumps({"name": "t", "data": data}, allow_nan=True)
        with registry.isolated():
            echo_function(inngest.Inngest(app_id="tests"))
            response = self.client.post(
                "/inngest/e/test-event-key",
                data=body.encode("utf-8", "surrogatepass") if raw else body,
                content_type="application/json",
            )
            assert response.status_code < 500, response.content
            if response.status_code != 200:
                assert response.json()["error"]
                assert not Event.objects.exists()
                return
            assert_every_run_ended()
            assert FunctionRun.objects.get().status == "COMPLETED"

    @FUZZ
    @given(value=st.one_of(values, deep, st.builds(object), st.sets(st.integers(), max_size=2)))
    def test_a_step_returning_anything_ends_its_run_completed_or_failed_explained(
        self, value: Any
    ) -> None:
        with registry.isolated():
            client = inngest.Inngest(app_id="tests")

            @client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"), retries=1)
            def handler(ctx: inngest.ContextSync) -> Any:
                return ctx.step.run("give", lambda: value)

            client.send_sync(inngest.Event(name="t"))
            assert_every_run_ended()
            run = FunctionRun.objects.get()
            if storable(value):
                assert run.status == "COMPLETED"
                assert run.output == json.loads(storable_json(value, "data"))
            else:
                assert run.status == "FAILED"
                assert run.output["code"] == "output_unserializable"
                assert run.output["message"].startswith(
                    'step "give" returned data that cannot be stored: output'
                )
