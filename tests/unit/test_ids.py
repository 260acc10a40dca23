"""Step id hashing and ULIDs."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta

import pytest

from django_inngest.core import clock, ids
from django_inngest.core.errors import InvalidEventIdSeedError


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


def test_a_send_seed_gives_the_same_ids_every_time_and_one_per_event_index() -> None:
    """SPEC §1.1: a retried send carries the same seed, so it must get the same ids."""
    seed = ids.EventIdSeed.parse("1790000000000,AAECAwQFBgcICQ==")
    again = ids.EventIdSeed.parse("1790000000000,AAECAwQFBgcICQ==")
    first = [seed.event_id(index) for index in range(100)]
    assert first == [again.event_id(index) for index in range(100)]
    assert len(set(first)) == 100
    assert {ids.ulid_time_ms(value) for value in first} == {1_790_000_000_000}
    other = ids.EventIdSeed.parse("1790000000000,AQECAwQFBgcICQ==")
    assert other.event_id(0) not in first


def test_url_safe_base64_seeds_are_read_like_standard_ones() -> None:
    standard = ids.EventIdSeed.parse("1790000000000,+/+/+/+/+/+/+w==")
    url_safe = ids.EventIdSeed.parse("1790000000000,-_-_-_-_-_-_-w==")
    assert standard == url_safe


@pytest.mark.parametrize(
    ("seed", "reason"),
    [
        ("", "expected '<milliseconds>,<base64 bytes>'"),
        ("1790000000000", "expected '<milliseconds>,<base64 bytes>'"),
        ("soon,AAECAwQFBgcICQ==", "expected '<milliseconds>,<base64 bytes>'"),
        ("0,AAECAwQFBgcICQ==", "0 is not a time in milliseconds"),
        ("999999999999999,AAECAwQFBgcICQ==", "999999999999999 is not a time"),
        ("1790000000000,AAEC*wQF", "expected"),
        ("1790000000000,AAECAwQFBgcICQ", "not base64"),
        ("1790000000000,AAECAw==", "the random part is 4 bytes; 8 to 64 are needed"),
    ],
)
def test_malformed_seeds_are_refused_naming_the_seed_and_the_reason(seed: str, reason: str) -> None:
    with pytest.raises(InvalidEventIdSeedError, match=re.escape(reason)) as caught:
        ids.EventIdSeed.parse(seed)
    assert caught.value.seed == seed
    assert repr(seed[:100]) in str(caught.value)


def test_ids_made_after_a_frozen_clock_moved_forward_carry_the_real_time_again() -> None:
    """A test that sleeps a day under `frozen_clock()` must not push the next tests' ids into
    the future: lookups by id ranges of time would miss them."""
    from django_inngest.testing import frozen_clock

    ids.restore_sequence((-1, 0))  # as in a fresh process: no id made yet
    with frozen_clock() as frozen:
        frozen.advance(timedelta(days=3))
        ahead = ids.ulid()
    after = ids.ulid()
    assert ids.ulid_time_ms(after) < ids.ulid_time_ms(ahead) - 86_400_000
    assert abs(ids.ulid_time_ms(after) - clock.now_ms()) < 60_000


def test_a_forked_process_does_not_repeat_the_random_parts_of_its_parents_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next random part
        os.write(write, str(ids._random.getrandbits(79)).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert int(os.read(read, 64)) != ids._random.getrandbits(79)
