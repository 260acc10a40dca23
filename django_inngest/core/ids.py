"""Identifiers: ULIDs for events and runs, hashed step ids (SPEC §2.2)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import random
import re
import threading
from dataclasses import dataclass

from django_inngest.core import clock
from django_inngest.core.errors import InvalidEventIdSeedError

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = -1
_last_random = 0
# Random parts come from a generator of our own, seeded from the OS once (a system call per id
# costs more than the rest of `ulid()`), reseeded in forked children so that two processes
# never share a sequence, and out of reach of the user's `random.seed()`.
_random = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _random.seed(os.urandom(32)))


def ulid() -> str:
    """A 26-character ULID whose time is the engine clock's; monotonic within a process."""
    global _last_ms, _last_random
    ms = clock.now_ms()
    with _lock:
        if ms <= _last_ms:
            # Same (or earlier) millisecond: keep order by incrementing the random part.
            ms = _last_ms
            _last_random = (_last_random + 1) & ((1 << 80) - 1)
        else:
            _last_ms = ms
            _last_random = _random.getrandbits(79)
        value = (ms << 80) | _last_random
    return _encode(value)


def sequence_state() -> tuple[int, int]:
    """Where the monotonic sequence of `ulid()` stands; see `restore_sequence`."""
    with _lock:
        return _last_ms, _last_random


def restore_sequence(state: tuple[int, int]) -> None:
    """Put the sequence back where `sequence_state()` saw it. A frozen clock moved forward
    leaves the sequence in its future, and every later id would carry that future time."""
    global _last_ms, _last_random
    with _lock:
        _last_ms, _last_random = state


def ulid_floor(ms: int) -> str:
    """The smallest ULID of millisecond `ms`: ULIDs sort by time, so ranges of ids are ranges
    of creation times."""
    return _encode(ms << 80)


def _encode(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


_SEED = re.compile(r"([0-9]{1,15}),([A-Za-z0-9+/=_-]{1,128})")
_MAX_ULID_MS = (1 << 48) - 1


@dataclass(frozen=True, kw_only=True)
class EventIdSeed:
    """A sender's seed for the ids of the events of one send (``x-inngest-event-id-seed``).

    The same seed always gives the same ids, so a send that is retried stores nothing twice.
    """

    millis: int
    """The time of the send, in milliseconds: the time part of every id."""
    entropy: bytes
    """Random bytes chosen by the sender for this send."""

    @classmethod
    def parse(cls, value: str) -> EventIdSeed:
        """Read ``"<milliseconds>,<base64 of 8 to 64 random bytes>"``."""
        match = _SEED.fullmatch(value)
        if match is None:
            raise InvalidEventIdSeedError(value, "expected '<milliseconds>,<base64 bytes>'")
        millis = int(match[1])
        if not 0 < millis <= _MAX_ULID_MS:
            raise InvalidEventIdSeedError(value, f"{millis} is not a time in milliseconds")
        try:
            standard = match[2].replace("-", "+").replace("_", "/")  # URL-safe alphabet too
            entropy = base64.b64decode(standard, validate=True)
        except binascii.Error as error:
            raise InvalidEventIdSeedError(
                value, f"the random part is not base64: {error}"
            ) from None
        if not 8 <= len(entropy) <= 64:
            raise InvalidEventIdSeedError(
                value, f"the random part is {len(entropy)} bytes; 8 to 64 are needed"
            )
        return cls(millis=millis, entropy=entropy)

    def event_id(self, index: int) -> str:
        """The ULID of the `index`-th event of the send."""
        digest = hashlib.sha256(self.entropy + index.to_bytes(4, "big")).digest()
        return _encode((self.millis << 80) | int.from_bytes(digest[:10], "big"))


def ulid_time_ms(value: str) -> int:
    """The millisecond timestamp encoded in a ULID."""
    number = 0
    for char in value[:10].upper():
        number = number * 32 + _CROCKFORD.index(char)
    return number


def hash_step_id(step_id: str) -> str:
    """SHA-1 hex of a step id, as Inngest stores it."""
    return hashlib.sha1(step_id.encode("utf-8")).hexdigest()


def step_key(step_id: str, index: int) -> str:
    """The id hashed for the `index`-th use (0-based) of `step_id` in one run."""
    return step_id if index == 0 else f"{step_id}:{index}"


def stable_hash(*parts: str) -> str:
    """A short, stable digest of several strings (idempotency keys and the like)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()
