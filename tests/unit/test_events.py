"""The Event value object and the checks before an event is stored (SPEC §1.4)."""

from __future__ import annotations

import re

import pytest

import django_inngest as inngest
from django_inngest.core.errors import InvalidEventError
from django_inngest.core.events import prepare

NOW = 1_790_000_000_000


def test_event_data_defaults_to_an_empty_object_and_rejects_lists() -> None:
    """V3."""
    assert inngest.Event(name="x").data == {}
    assert inngest.Event(name="x", data=None).data == {}  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError, match=r"JSON object .*\[1, 2, 3\]"):
        inngest.Event(name="x", data=[1, 2, 3])  # type: ignore[arg-type]


def test_from_raw_builds_an_event_from_json_and_names_bad_fields() -> None:
    event = inngest.Event.from_raw({"name": "a", "data": {"k": 1}, "id": "x", "ts": 5, "user": {}})
    assert event == inngest.Event(name="a", data={"k": 1}, id="x", ts=5)
    with pytest.raises(InvalidEventError, match="'name'"):
        inngest.Event.from_raw({"data": {}})
    with pytest.raises(InvalidEventError, match="'ts'"):
        inngest.Event.from_raw({"name": "a", "ts": "soon"})


def test_prepare_assigns_ulids_and_receive_time() -> None:
    prepared = prepare(
        [inngest.Event(name="a"), inngest.Event(name="b", ts=NOW - 5)], now_ms=NOW, max_bytes=1000
    )
    assert [p.ts for p in prepared] == [NOW, NOW - 5]
    assert all(len(p.id) == 26 for p in prepared)
    assert prepared[0].id < prepared[1].id


def test_reserved_names_are_rejected_whatever_their_case() -> None:
    """V4 (in-process send)."""
    with pytest.raises(InvalidEventError, match="'Inngest/anything' is reserved"):
        prepare(inngest.Event(name="Inngest/anything"), now_ms=NOW, max_bytes=1000)


def test_oversized_events_are_rejected_naming_size_and_limit() -> None:
    with pytest.raises(
        InvalidEventError, match=r"event 1: event 'big' is \d+ bytes, over the limit of 100 bytes"
    ):
        prepare(
            [inngest.Event(name="ok"), inngest.Event(name="big", data={"x": "y" * 200})],
            now_ms=NOW,
            max_bytes=100,
        )


def test_non_json_data_and_bad_timestamps_are_rejected() -> None:
    with pytest.raises(
        InvalidEventError,
        match=re.escape("""data of event 'a' cannot be stored: data["when"] is an object"""),
    ):
        prepare(inngest.Event(name="a", data={"when": object()}), now_ms=NOW, max_bytes=1000)
    with pytest.raises(InvalidEventError, match=r"outside 1980-01-01\.\.2100-01-01"):
        prepare(inngest.Event(name="a", ts=1234), now_ms=NOW, max_bytes=1000)
    with pytest.raises(InvalidEventError, match="empty"):
        prepare(inngest.Event(name=""), now_ms=NOW, max_bytes=1000)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"name": "a", "data": []}, "'data' must be a JSON object, got []"),
        ({"name": "a", "data": "text"}, "'data' must be a JSON object, got 'text'"),
        ({"name": "a", "data": 0}, "'data' must be a JSON object, got 0"),
        ({"name": "a", "id": 7}, "'id' must be a string, got 7"),
        ({"name": "a", "id": False}, "'id' must be a string, got False"),
        ({"name": "a", "ts": False}, "'ts' must be an integer of milliseconds, got False"),
        ({"name": "a", "ts": 1.5}, "'ts' must be an integer of milliseconds, got 1.5"),
        ({"name": 5}, "non-empty string 'name', got 5"),
    ],
)
def test_from_raw_refuses_fields_of_the_wrong_type_instead_of_guessing(
    raw: dict[str, object], problem: str
) -> None:
    with pytest.raises(InvalidEventError, match=re.escape(problem)):
        inngest.Event.from_raw(raw)


def test_from_raw_reads_null_fields_as_not_given() -> None:
    event = inngest.Event.from_raw({"name": "a", "data": None, "id": None, "ts": None})
    assert event == inngest.Event(name="a")


def test_text_no_database_can_store_is_refused_before_anything_is_written() -> None:
    """NUL and lone surrogates are valid JSON escapes, but PostgreSQL refuses them."""
    cases = [
        (
            inngest.Event(name="a", data={"k": "x\x00y"}),
            """data["k"] contains a NUL character (\\u0000)""",
        ),
        (
            inngest.Event(name="a", data={"k\x00": 1}),
            'data has a key with a NUL character (\\u0000): "k\\u0000"',
        ),
        (
            inngest.Event(name="a", data={"k": ["\ud800"]}),
            """data["k"][0] contains a lone surrogate ("\\ud800")""",
        ),
        (inngest.Event(name="a\x00"), "event name 'a\\x00' contains a NUL character"),
        (inngest.Event(name="a", id="\udfff"), "event id '\\udfff' contains a lone surrogate"),
    ]
    for event, problem in cases:
        with pytest.raises(InvalidEventError, match=re.escape(problem)):
            prepare([inngest.Event(name="ok"), event], now_ms=NOW, max_bytes=1000)


def test_a_backslash_followed_by_u0000_is_ordinary_text() -> None:
    [prepared] = prepare(inngest.Event(name="a", data={"k": "\\u0000"}), now_ms=NOW, max_bytes=1000)
    assert prepared.data == {"k": "\\u0000"}


def test_sender_ids_longer_than_the_column_are_refused() -> None:
    with pytest.raises(InvalidEventError, match="event 0: event id is 256 characters, over"):
        prepare(inngest.Event(name="a", id="x" * 256), now_ms=NOW, max_bytes=1000)
    [prepared] = prepare(inngest.Event(name="a", id="x" * 255), now_ms=NOW, max_bytes=1000)
    assert prepared.user_id == "x" * 255


def test_event_size_counts_utf8_bytes() -> None:
    [prepared] = prepare(inngest.Event(name="a", data={"k": "é" * 40}), now_ms=NOW, max_bytes=100)
    assert prepared.data == {"k": "é" * 40}
    with pytest.raises(InvalidEventError, match="over the limit of 100 bytes"):
        prepare(inngest.Event(name="a", data={"k": "é" * 60}), now_ms=NOW, max_bytes=100)
