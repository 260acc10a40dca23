"""Identifiers: ULIDs for events and runs, hashed step ids (SPEC §2.2)."""

from __future__ import annotations

import hashlib
import os
import threading

from django_inngest.core import clock

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = -1
_last_random = 0


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
            _last_random = int.from_bytes(os.urandom(10), "big") >> 1
        value = (ms << 80) | _last_random
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def ulid_time_ms(value: str) -> int:
    """The millisecond timestamp encoded in a ULID."""
    number = 0
    for char in value[:10].upper():
        number = number * 32 + _CROCKFORD.index(char)
    return number


def ulid_floor(ms: int) -> str:
    """The smallest ULID of millisecond `ms`: ids ``>=`` it were made at or after `ms`."""
    value = ms << 80
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


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
