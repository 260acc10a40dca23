"""The only reader of `settings.INNGEST`: typed values with defaults, re-read when tests
override settings. Mistakes are reported by `manage.py check` (see `checks.py`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from django.conf import settings as django_settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from django_inngest.core.backoff import DEFAULT_JITTER_SECONDS, INNGEST_TABLE


@dataclass(frozen=True, kw_only=True)
class InngestSettings:
    APP_ID: str = "django"
    """The app id of the default client: function ids are ``"{APP_ID}-{fn_id}"``."""
    DATABASE: str = "default"
    """The database alias holding events, runs and the queue."""
    RETRY_BACKOFF: tuple[float, ...] = INNGEST_TABLE
    """Seconds to wait before each retry; the last value repeats."""
    RETRY_JITTER: float = DEFAULT_JITTER_SECONDS
    """Up to this many random seconds are added to each retry delay; 0 disables it."""
    MAX_EVENT_BYTES: int = 512 * 1024
    LEASE_SECONDS: float = 30.0
    """How long a claimed run stays a worker's without a heartbeat."""
    HEARTBEAT_SECONDS: float = 10.0
    SWEEP_SECONDS: float = 5.0
    """How often a worker returns expired leases to the queue."""
    POLL_INTERVAL: float | None = None
    """Seconds between checks for new work: SQLite 0.1 (a file check, not a query);
    PostgreSQL 5 as a fallback to LISTEN/NOTIFY."""
    IDLE_QUERY_INTERVAL: float = 5.0
    """On SQLite, the longest time an idle worker goes without querying."""
    WORKER_CONCURRENCY: int = 10


_NUMBERS = (int, float)
_TYPES: dict[str, tuple[type, ...]] = {
    "APP_ID": (str,),
    "DATABASE": (str,),
    "RETRY_BACKOFF": (list, tuple),
    "RETRY_JITTER": _NUMBERS,
    "MAX_EVENT_BYTES": (int,),
    "LEASE_SECONDS": _NUMBERS,
    "HEARTBEAT_SECONDS": _NUMBERS,
    "SWEEP_SECONDS": _NUMBERS,
    "POLL_INTERVAL": (*_NUMBERS, type(None)),
    "IDLE_QUERY_INTERVAL": _NUMBERS,
    "WORKER_CONCURRENCY": (int,),
}


def raw() -> dict[str, Any]:
    value = getattr(django_settings, "INNGEST", {})
    return dict(value) if isinstance(value, dict) else {}


def problems() -> list[str]:
    """Every mistake in `settings.INNGEST`, each naming the key and the value."""
    value = getattr(django_settings, "INNGEST", {})
    if not isinstance(value, dict):
        return [f"INNGEST must be a dict, not {value!r}"]
    found = []
    for key, item in value.items():
        if key not in _TYPES:
            known = ", ".join(sorted(_TYPES))
            found.append(f"INNGEST[{key!r}] is not a known setting (known: {known})")
            continue
        types = _TYPES[key]
        if isinstance(item, bool) or not isinstance(item, types):
            found.append(f"INNGEST[{key!r}]={item!r} has the wrong type")
            continue
        if (
            key == "RETRY_BACKOFF"
            and isinstance(item, list | tuple)
            and (
                not item
                or any(isinstance(s, bool) or not isinstance(s, _NUMBERS) or s < 0 for s in item)
            )
        ):
            found.append(f"INNGEST['RETRY_BACKOFF']={item!r} must be a non-empty list of seconds")
        elif isinstance(item, _NUMBERS) and item < 0:
            found.append(f"INNGEST[{key!r}]={item!r} must not be negative")
    lease = value.get("LEASE_SECONDS", InngestSettings.LEASE_SECONDS)
    heartbeat = value.get("HEARTBEAT_SECONDS", InngestSettings.HEARTBEAT_SECONDS)
    if isinstance(lease, _NUMBERS) and isinstance(heartbeat, _NUMBERS) and heartbeat >= lease:
        found.append(
            f"INNGEST['HEARTBEAT_SECONDS']={heartbeat!r} must be shorter than "
            f"LEASE_SECONDS={lease!r}, or leases expire while their runs are alive"
        )
    return found


@functools.cache
def get() -> InngestSettings:
    values = {key: item for key, item in raw().items() if key in _TYPES}
    if "RETRY_BACKOFF" in values:
        values["RETRY_BACKOFF"] = tuple(values["RETRY_BACKOFF"])
    return InngestSettings(**values)


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "INNGEST":
        get.cache_clear()
