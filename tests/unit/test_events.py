"""The Event value object and the checks before an event is stored (SPEC §1.4)."""

from __future__ import annotations

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
    with pytest.raises(InvalidEventError, match="not JSON"):
        prepare(inngest.Event(name="a", data={"when": object()}), now_ms=NOW, max_bytes=1000)
    with pytest.raises(InvalidEventError, match=r"outside 1980-01-01\.\.2100-01-01"):
        prepare(inngest.Event(name="a", ts=1234), now_ms=NOW, max_bytes=1000)
    with pytest.raises(InvalidEventError, match="empty"):
        prepare(inngest.Event(name=""), now_ms=NOW, max_bytes=1000)
