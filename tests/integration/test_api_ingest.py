"""``POST e/<event_key>``: Inngest's event API over HTTP (SPEC §1.1, §1.4, §6.3): keys,
limits and bad input, each refused with a 4xx that names the problem and writes nothing."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.test import Client, override_settings
from django.test.client import ClientHandler, RequestFactory
from rest_framework.response import Response

import django_inngest as inngest
from django_inngest.api import ingest
from django_inngest.api.views import SendEventsView
from django_inngest.core import ids
from django_inngest.models import Event, FunctionRun
from django_inngest.testing import drain
from tests.settings import INNGEST as TEST_INNGEST

KEY = "test-event-key"
MiB = 1024 * 1024


def post(
    client: Client,
    body: Any,
    *,
    key: str = KEY,
    prefix: str = "/inngest",
    raw: bool = False,
    **headers: str,
) -> Any:
    data = body if raw else json.dumps(body)
    return client.post(
        f"{prefix}/e/{key}", data=data, content_type="application/json", headers=headers
    )


def inngest_settings(**changes: Any) -> Any:
    return override_settings(INNGEST={**TEST_INNGEST, **changes})


@pytest.mark.django_db
def test_one_event_is_stored_and_its_id_returned(client: Client) -> None:
    response = post(client, {"name": "shop/order.placed", "data": {"order": 7}, "id": "o-7"})
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == 200 and "error" not in body
    [event_id] = body["ids"]
    event = Event.objects.get()
    assert (event.id, event.name, event.data, event.user_id) == (
        event_id,
        "shop/order.placed",
        {"order": 7},
        "o-7",
    )


@pytest.mark.django_db
def test_an_array_of_events_is_stored_in_order_and_an_empty_array_is_fine(client: Client) -> None:
    response = post(client, [{"name": f"e/{index}", "data": {"n": index}} for index in range(3)])
    assert response.status_code == 200
    returned = response.json()["ids"]
    assert [Event.objects.get(id=event_id).name for event_id in returned] == ["e/0", "e/1", "e/2"]
    assert post(client, []).json() == {"ids": [], "status": 200}


@pytest.mark.django_db
def test_the_event_endpoint_works_at_the_site_root_and_under_the_prefix(client: Client) -> None:
    assert post(client, {"name": "a"}, prefix="").status_code == 200
    assert post(client, {"name": "a"}, prefix="/inngest").status_code == 200
    assert Event.objects.count() == 2


@pytest.mark.django_db
def test_sent_events_start_their_functions(client: Client, inngest_client: inngest.Inngest) -> None:
    inngest_client.create_function(fn_id="double", trigger=inngest.TriggerEvent(event="math/n"))(
        lambda ctx: ctx.event.data["n"] * 2
    )
    post(client, [{"name": "math/n", "data": {"n": 2}}, {"name": "math/n", "data": {"n": 5}}])
    drain()
    assert sorted(FunctionRun.objects.values_list("status", "output")) == [
        ("COMPLETED", 4),
        ("COMPLETED", 10),
    ]


# --- bad events ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("bad_event", "message"),
    [
        (
            {"name": "inngest/function.failed"},
            "event 2: event name 'inngest/function.failed' is reserved",
        ),
        ({"name": "INNGEST/x"}, "event 2: event name 'INNGEST/x' is reserved"),
        ({"data": {}}, "event 2: an event needs a non-empty string 'name', got None"),
        ({"name": ""}, "event 2: an event needs a non-empty string 'name', got ''"),
        ({"name": "a", "data": [1]}, "event 2: event 'data' must be a JSON object, got [1]"),
        (
            {"name": "a", "ts": 1000},
            "event 2: event 'a' has ts=1000, outside 1980-01-01..2100-01-01",
        ),
        ({"name": "a", "ts": 4_200_000_000_000}, "outside 1980-01-01..2100-01-01"),
        ({"name": "a", "ts": "now"}, "event 2: event 'ts' must be an integer of milliseconds"),
        ({"name": "a", "id": 3}, "event 2: event 'id' must be a string, got 3"),
        ({"name": "x" * 513}, "event 2: event name is 513 characters, over the limit of 512"),
        (
            {"name": "a", "data": {"k": "\x00"}},
            """event 2: data of event 'a' cannot be stored: data["k"] contains a NUL character""",
        ),
        ("text", "event 2: an event must be a JSON object, not 'text'"),
        (None, "event 2: an event must be a JSON object, not None"),
    ],
)
def test_one_bad_event_refuses_the_whole_request_naming_its_index(
    client: Client, bad_event: Any, message: str
) -> None:
    response = post(client, [{"name": "ok"}, {"name": "ok"}, bad_event, {"name": "ok"}])
    assert response.status_code == 400
    body = response.json()
    assert (body["ids"], body["status"]) == ([], 400)
    assert message in body["error"]
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_data_is_stored_without_the_reserved_inngest_key(client: Client) -> None:
    post(client, {"name": "a", "data": {"_inngest": {"fake": True}, "kept": 1}})
    assert Event.objects.get().data == {"kept": 1}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "the body is empty"),
        (b"   ", "the body is empty"),
        (b"{not json", "the body is not valid JSON: Expecting property name"),
        (b'{"name": "a", "data": {"x": NaN}}', "NaN is not a JSON number"),
        (b'{"name": "a", "data": {"x": Infinity}}', "Infinity is not a JSON number"),
        (b"\xff\xfe\x00garbage", "the body is not valid JSON"),
        (b"42", "the body must be an event object or an array of events, not int 42"),
        (b'"name"', "not str 'name'"),
        (b"[" * 100_000 + b"]" * 100_000, "the body nests deeper than 100 levels"),
        (
            b'{"name": "a", "data": ' + b'{"k": ' * 101 + b"1" + b"}" * 102,
            "event 0: event 0: nests",
        ),
    ],
)
def test_bodies_that_are_not_events_are_refused_with_400(
    client: Client, body: bytes, message: str
) -> None:
    response = post(client, body, raw=True)
    assert response.status_code == 400, response.content
    assert message.replace("event 0: event 0: ", "event 0: ") in response.json()["error"]
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_data_nested_100_levels_deep_is_accepted(client: Client) -> None:
    data: dict[str, Any] = {}
    for _ in range(98):
        data = {"k": data}
    assert post(client, {"name": "deep", "data": data}).status_code == 200


@pytest.mark.django_db
def test_other_methods_are_refused_with_405_in_the_event_api_shape(client: Client) -> None:
    assert client.get(f"/inngest/e/{KEY}").json() == {
        "ids": [],
        "status": 405,
        "error": 'Method "GET" not allowed.',
    }
    assert client.put(f"/inngest/e/{KEY}", data="{}").status_code == 405


# --- keys ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_unknown_key_is_refused_with_401_and_writes_nothing(client: Client) -> None:
    for key in ("wrong", KEY + "x", KEY.upper(), "test-event-ke", "ключ"):
        response = post(client, {"name": "a"}, key=key)
        assert response.status_code == 401
        assert response.json()["ids"] == []
        assert "event key not found" in response.json()["error"]
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_both_keys_of_a_rotation_are_accepted(client: Client) -> None:
    assert post(client, {"name": "a"}, key="test-event-key").status_code == 200
    assert post(client, {"name": "a"}, key="next-event-key").status_code == 200
    with inngest_settings(EVENT_KEYS=["next-event-key"]):
        assert post(client, {"name": "a"}, key="test-event-key").status_code == 401
    assert Event.objects.count() == 2


@pytest.mark.django_db
def test_without_keys_nothing_is_accepted_unless_development_mode_is_on(client: Client) -> None:
    with inngest_settings(EVENT_KEYS=[]):
        assert post(client, {"name": "a"}, key="NO_EVENT_KEY_SET").status_code == 401
    with inngest_settings(EVENT_KEYS=[], ACCEPT_ANY_EVENT_KEY=True):
        assert post(client, {"name": "a"}, key="NO_EVENT_KEY_SET").status_code == 200
        assert post(client, {"name": "a"}, key="anything").status_code == 200
    assert Event.objects.count() == 2


@pytest.mark.django_db
def test_the_key_is_checked_before_the_body_is_read(client: Client) -> None:
    response = post(client, b"{broken", key="wrong", raw=True)
    assert response.status_code == 401


# --- limits -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_event_over_the_size_limit_is_refused_naming_size_and_limit(client: Client) -> None:
    with inngest_settings(MAX_EVENT_BYTES=1000, MAX_REQUEST_BYTES=10_000):
        fits = post(client, {"name": "a", "data": {"k": "x" * 900}})
        assert fits.status_code == 200
        response = post(client, [{"name": "a"}, {"name": "big", "data": {"k": "x" * 1000}}])
    assert response.status_code == 400
    assert (
        "event 1: event 'big' is 1011 bytes, over the limit of 1000 bytes"
        in (response.json()["error"])
    )
    assert Event.objects.count() == 1


@pytest.mark.django_db
def test_the_default_event_limit_is_512_kib(client: Client) -> None:
    padding = 512 * 1024 - len('{"k":""}') - len("a")
    assert post(client, {"name": "a", "data": {"k": "x" * padding}}).status_code == 200
    response = post(client, {"name": "a", "data": {"k": "x" * (padding + 1)}})
    assert response.status_code == 400
    assert "over the limit of 524288 bytes" in response.json()["error"]


@pytest.mark.django_db
def test_more_events_than_allowed_in_one_request_are_refused_with_413(client: Client) -> None:
    with inngest_settings(MAX_EVENTS_PER_REQUEST=10):
        assert post(client, [{"name": "a"}] * 10).status_code == 200
        response = post(client, [{"name": "a"}] * 11)
    assert response.status_code == 413
    assert response.json() == {
        "ids": [],
        "status": 413,
        "error": "11 events in one request, over the limit of 10",
    }
    assert Event.objects.count() == 10


@pytest.mark.django_db
def test_5000_events_fit_in_one_request_by_default_and_5001_do_not(client: Client) -> None:
    assert len(post(client, [{"name": "a"}] * 5000).json()["ids"]) == 5000
    assert post(client, [{"name": "a"}] * 5001).status_code == 413
    assert Event.objects.count() == 5000


class CountingStream(io.RawIOBase):
    """A request body of `size` bytes made on demand, counting what the server reads."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.size - self.served)
        buffer[:count] = b" " * count
        self.served += count
        return count


@pytest.mark.django_db
def test_a_10_mib_body_is_refused_with_413_without_reading_it() -> None:
    """Through Django's whole WSGI stack (middleware included), as gunicorn would call it."""
    body = CountingStream(10 * MiB)
    environ = RequestFactory()._base_environ(  # type: ignore[attr-defined]
        PATH_INFO=f"/inngest/e/{KEY}",
        REQUEST_METHOD="POST",
        CONTENT_TYPE="application/json",
        CONTENT_LENGTH=str(10 * MiB),
    )
    environ["wsgi.input"] = body
    response = ClientHandler()(environ)
    assert response.status_code == 413
    assert json.loads(response.content) == {
        "ids": [],
        "status": 413,
        "error": f"the body is {10 * MiB} bytes, over the limit of {5 * MiB} bytes",
    }
    assert body.served == 0
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_a_body_without_content_length_is_read_only_up_to_the_limit() -> None:
    """ASGI servers may pass a chunked body with no Content-Length: it is counted as read."""
    body = CountingStream(10 * MiB)
    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/inngest/e/{KEY}",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    request = ASGIRequest(scope, body)  # type: ignore[arg-type]
    response = SendEventsView.as_view()(request, event_key=KEY)
    assert isinstance(response, Response)
    assert response.status_code == 413
    assert response.data["error"] == f"the body is over the limit of {5 * MiB} bytes"
    assert body.served <= 5 * MiB + 64 * 1024
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_the_request_size_limit_is_a_setting(client: Client) -> None:
    events = [{"name": "a", "data": {"k": "x" * 100}}] * 20
    size = len(json.dumps(events))
    with inngest_settings(MAX_REQUEST_BYTES=size):
        assert post(client, events).status_code == 200
    with inngest_settings(MAX_REQUEST_BYTES=size - 1):
        response = post(client, events)
    assert response.status_code == 413
    assert response.json()["error"] == (
        f"the body is {size} bytes, over the limit of {size - 1} bytes"
    )


def test_a_malformed_content_length_is_refused() -> None:
    request = RequestFactory().post("/", data=b"{}", content_type="application/json")
    request.META["CONTENT_LENGTH"] = "ten"
    with pytest.raises(ingest.Rejected, match="Content-Length 'ten' is not a number"):
        ingest.read_body(request, 100)


# --- event id seed ------------------------------------------------------------------------------

SEED = "1790000000000,AAECAwQFBgcICQ=="


@pytest.mark.django_db
def test_a_replayed_send_with_the_same_seed_creates_no_duplicate(
    client: Client, inngest_client: inngest.Inngest
) -> None:
    """SPEC §1.1: the SDK retries a send with the same x-inngest-event-id-seed."""
    inngest_client.create_function(fn_id="count", trigger=inngest.TriggerEvent(event="a"))(
        lambda ctx: ctx.event.data["n"]
    )
    events = [{"name": "a", "data": {"n": 1}}, {"name": "a", "data": {"n": 2}}]
    first = post(client, events, x_inngest_event_id_seed=SEED).json()["ids"]
    drain()
    second = post(client, events, x_inngest_event_id_seed=SEED).json()["ids"]
    drain()
    seed = ids.EventIdSeed.parse(SEED)
    assert first == second == [seed.event_id(0), seed.event_id(1)]
    assert Event.objects.filter(name="a").count() == 2
    assert sorted(FunctionRun.objects.values_list("output", flat=True)) == [1, 2]


@pytest.mark.django_db
def test_the_module_level_send_sync_and_send_take_a_seed_as_the_clients_do() -> None:
    seed = ids.EventIdSeed.parse(SEED)
    sent = inngest.send_sync(inngest.Event(name="seeded"), id_seed=SEED)
    again = async_to_sync(inngest.send)(inngest.Event(name="seeded"), id_seed=SEED)
    assert sent == again == [seed.event_id(0)]
    assert Event.objects.filter(name="seeded").count() == 1


@pytest.mark.django_db
def test_different_seeds_and_no_seed_store_new_events(client: Client) -> None:
    post(client, {"name": "a"}, x_inngest_event_id_seed=SEED)
    post(client, {"name": "a"}, x_inngest_event_id_seed="1790000000000,AQECAwQFBgcICQ==")
    post(client, {"name": "a"})
    post(client, {"name": "a"})
    assert Event.objects.count() == 4


@pytest.mark.django_db
def test_a_malformed_seed_is_refused_and_writes_nothing(client: Client) -> None:
    response = post(client, {"name": "a"}, x_inngest_event_id_seed="yesterday")
    assert response.status_code == 400
    assert response.json()["error"] == (
        "invalid event id seed 'yesterday': expected '<milliseconds>,<base64 bytes>'"
    )
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_a_bad_event_in_a_seeded_send_writes_nothing_and_a_fixed_retry_succeeds(
    client: Client,
) -> None:
    bad = post(client, [{"name": "a"}, {"name": "inngest/no"}], x_inngest_event_id_seed=SEED)
    assert bad.status_code == 400
    good = post(client, [{"name": "a"}, {"name": "b"}], x_inngest_event_id_seed=SEED)
    assert good.status_code == 200
    assert sorted(Event.objects.values_list("name", flat=True)) == ["a", "b"]


@pytest.mark.django_db(transaction=True)
def test_copies_of_a_seeded_send_arriving_at_once_store_the_events_once() -> None:
    events = [inngest.Event(name="a", data={"n": n}) for n in range(3)]
    results: list[list[str]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def send() -> None:
        try:
            start.wait()
            results.append(inngest.Inngest(app_id="race").send_sync(events, id_seed=SEED))
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(results) == 4 and all(result == results[0] for result in results)
    assert Event.objects.count() == 3
