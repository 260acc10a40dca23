"""Generated requests (hypothesis) against the event endpoint and REST v1: none gets a 5xx,
and a refused one writes nothing. Each example runs in its own rolled-back transaction."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any, ClassVar
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

import django_inngest as inngest
from django_inngest.models import Cancellation, Event, FunctionRun
from django_inngest.registry import registry
from django_inngest.testing import drain

# cel-python raises the interpreter's recursion limit each time it builds an environment (for
# the `if` of bulk cancellations); hypothesis notices and warns that it will not reset it.
pytestmark = pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")

KEY = "test-event-key"
BEARER = {"Authorization": "Bearer signkey-test-0123456789abcdef"}
SEED = "1790000000000,AAECAwQFBgcICQ=="

edge_text = st.sampled_from(
    ["", " ", "a", "inngest/x", "INNGEST/function.failed", "x" * 600, "\x00", "a\x00b",
     "\ud800", "\udfff", "é", "🙂", "\\u0000", "null", "event.data.(", "t", "app/*"]
)  # fmt: skip
text = st.one_of(st.text(max_size=12), edge_text)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)
timestamps = st.one_of(
    st.none(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, 315_532_800_000, 315_532_799_999, 4_102_444_800_000, 1_790_000_000_000]),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)
events = st.fixed_dictionaries(
    {},
    optional={
        "name": st.one_of(text, text, json_values),
        "data": st.one_of(json_values, st.dictionaries(text, json_values, max_size=4)),
        "id": st.one_of(text, json_values),
        "ts": timestamps,
        "user": json_values,
        "v": text,
    },
)
raw_bodies = st.sampled_from(
    [b"", b"{", b"[", b"NaN", b'{"name": "a", "data": {"x": -Infinity}}', b"\xff\xfe",
     b"[" * 5000, b'{"name": "a"}' * 2, b'{"name": "a", "data": {"k": "\\ud800"}}',
     b'{"name": "a", "data": {"k": "\\u0000"}}', b'{"name": "a", "ts": 1e400}',
     b'{"name": "a", "data": {"n": ' + b"9" * 5000 + b"}}"]
)  # fmt: skip


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


bodies = st.one_of(
    events.map(dumps),
    st.lists(st.one_of(events, events, json_values), max_size=6).map(dumps),
    json_values.map(dumps),
    st.binary(max_size=40),
    raw_bodies,
)
keys = st.sampled_from([KEY, "next-event-key", "wrong", "ключ", "a/b", " ", "test-event-key "])
seeds = st.one_of(
    st.none(),
    st.sampled_from([SEED, "0,AA==", "1,", ",", "1790000000000,@@@", "99999999999999999,AAAA"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
)
content_types = st.sampled_from(
    ["application/json", "text/plain", "application/x-www-form-urlencoded", ""]
)
FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class EventEndpointFuzzTests(TestCase):
    @FUZZ
    @given(body=bodies, key=keys, seed=seeds, content_type=content_types)
    def test_no_request_gets_a_5xx_and_a_refused_one_writes_nothing(
        self, body: bytes, key: str, seed: str | None, content_type: str
    ) -> None:
        before = Event.objects.count()
        headers = {"x-inngest-event-id-seed": seed} if seed is not None else {}
        response = self.client.generic(
            "POST",
            f"/inngest/e/{quote(key.encode('utf-8', 'surrogatepass'), safe='')}",
            data=body,
            content_type=content_type,
            headers=headers,
        )
        assert response.status_code < 500, response.content
        answer = response.json()
        stored = Event.objects.count() - before
        if response.status_code == 200:
            assert answer["status"] == 200
            assert stored == len(answer["ids"])
        else:
            assert 400 <= response.status_code < 500
            assert (answer["ids"], answer["status"]) == ([], response.status_code)
            assert isinstance(answer["error"], str) and answer["error"]
            assert stored == 0


datetimes = st.one_of(
    st.none(),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["2030-01-01T00:00:00Z", "0000-01-01", "9999-12-31T23:59:59-14:00", "soon"]),
    text,
)
cancellation_bodies = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "app_id": st.one_of(st.just("fuzz"), text, json_values),
            "function_id": st.one_of(st.sampled_from(["sleeper", "fuzz-sleeper"]), text),
            "started_after": datetimes,
            "started_before": datetimes,
            "if": st.one_of(
                st.sampled_from(["event.data.n == 1", "true", "event.data.(", "1 +", "x" * 5000]),
                text,
                json_values,
            ),
        },
    ),
    json_values,
)
run_ids = st.one_of(text, st.just("RUN"))


class RestFuzzTests(TestCase):
    """One sleeping run exists; generated requests try to read, cancel and rerun it."""

    run_id: ClassVar[str]

    @classmethod
    def setUpClass(cls) -> None:
        cls._isolation = registry.isolated()
        cls._isolation.__enter__()
        client = inngest.Inngest(app_id="fuzz")

        @client.create_function(fn_id="sleeper", trigger=inngest.TriggerEvent(event="fuzz/nap"))
        def sleeper(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
            step.sleep("nap", timedelta(hours=1))

        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        cls._isolation.__exit__(None, None, None)

    @classmethod
    def setUpTestData(cls) -> None:
        inngest.Inngest(app_id="fuzz").send_sync(inngest.Event(name="fuzz/nap", data={"n": 1}))
        drain()
        cls.run_id = FunctionRun.objects.get().id

    def state(self) -> tuple[Any, ...]:
        return (
            Cancellation.objects.count(),
            sorted(FunctionRun.objects.values_list("id", "status")),
        )

    def check(self, response: Any, before: tuple[Any, ...]) -> None:
        assert response.status_code < 500, response.content
        if response.status_code >= 400:
            assert response.json()["status"] == response.status_code
            assert self.state() == before

    @FUZZ
    @given(body=cancellation_bodies)
    def test_bulk_cancellation_requests_never_get_a_5xx(self, body: Any) -> None:
        before = self.state()
        response = self.client.post(
            "/inngest/v1/cancellations", data=dumps(body), content_type="application/json",
            headers=BEARER,
        )  # fmt: skip
        self.check(response, before)

    @FUZZ
    @given(
        method=st.sampled_from(["GET", "DELETE", "POST", "PUT", "PATCH", "HEAD", "OPTIONS"]),
        run_id=run_ids,
        resource=st.sampled_from(["runs/{}", "runs/{}/rerun", "events/{}", "events/{}/runs"]),
        body=st.one_of(st.binary(max_size=30), json_values.map(dumps)),
        authenticated=st.booleans(),
    )
    def test_run_and_event_requests_never_get_a_5xx(
        self, method: str, run_id: str, resource: str, body: bytes, authenticated: bool
    ) -> None:
        before = self.state()
        target = (
            self.run_id
            if run_id == "RUN"
            else quote(run_id.encode("utf-8", "surrogatepass"), safe="")
        )
        response = self.client.generic(
            method,
            "/inngest/v1/" + resource.format(target) if target else "/inngest/v1/runs/",
            data=body,
            content_type="application/json",
            headers=BEARER if authenticated else {},
        )
        assert response.status_code < 500, response.content
        if response.status_code >= 400 and response.headers["Content-Type"] == "application/json":
            assert self.state() == before
