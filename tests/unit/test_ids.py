"""Step id hashing and ULIDs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django_inngest.core import clock, ids


def test_step_ids_hash_with_sha1_like_inngest() -> None:
    """S3: the SDK spec's example hash."""
    assert ids.hash_step_id("my-step-id") == "e7d8a2f140845095749d60246ff1110c9d01d76a"


def test_repeated_step_ids_hash_with_a_counter_suffix() -> None:
    """S2: the n-th repeat is hashed as "id:n"; the first has no suffix."""
    assert ids.step_key("foo", 0) == "foo"
    assert ids.step_key("foo", 2) == "foo:2"
    assert ids.hash_step_id(ids.step_key("foo", 1)) == ids.hash_step_id("foo:1")


def test_ulids_are_26_crockford_characters_and_increase_within_a_millisecond() -> None:
    frozen = clock.FrozenClock(datetime(2026, 1, 1, tzinfo=UTC))
    previous = clock.install(frozen)
    try:
        values = [ids.ulid() for _ in range(1000)]
    finally:
        clock.install(previous)
    assert all(len(v) == 26 and set(v) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for v in values)
    assert values == sorted(values)
    assert len(set(values)) == 1000


def test_ulid_time_is_the_engine_clock() -> None:
    moment = datetime(2030, 5, 17, 12, 0, tzinfo=UTC)
    previous = clock.install(clock.FrozenClock(moment))
    try:
        value = ids.ulid()
    finally:
        clock.install(previous)
    assert ids.ulid_time_ms(value) == int(moment.timestamp() * 1000)


def test_ulid_floor_sorts_after_ids_of_earlier_milliseconds_and_before_its_own() -> None:
    """Runs and events are selected by time with `id >= ulid_floor(ms)` on the primary key."""
    moment = datetime(2031, 5, 17, 12, 0, tzinfo=UTC)
    ms = int(moment.timestamp() * 1000)
    frozen = clock.FrozenClock(moment - timedelta(milliseconds=1))
    previous = clock.install(frozen)
    try:
        just_before = ids.ulid()
        frozen.set(moment)
        at_moment = ids.ulid()
    finally:
        clock.install(previous)
    floor = ids.ulid_floor(ms)
    assert just_before < floor <= at_moment
    assert ids.ulid_time_ms(floor) == ms
