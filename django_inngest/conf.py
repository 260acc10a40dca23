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
from django_inngest.core.schedule import CronError, zone_or_error


@dataclass(frozen=True, kw_only=True)
class InngestSettings:
    """The ``INNGEST`` setting, each key with its default; read it with `get()`."""

    APP_ID: str = "django"
    """The app id of the default client: function ids are ``"{APP_ID}-{fn_id}"``."""
    DATABASE: str = "default"
    """The database alias holding events, runs and the queue."""
    RETRY_BACKOFF: tuple[float, ...] = INNGEST_TABLE
    """Seconds to wait before each retry; the last value repeats."""
    RETRY_JITTER: float = DEFAULT_JITTER_SECONDS
    """Up to this many random seconds are added to each retry delay; 0 disables it."""
    MAX_EVENT_BYTES: int = 512 * 1024
    """The largest event accepted, in bytes (Inngest's default)."""
    MAX_EVENTS_PER_REQUEST: int = 5000
    """The most events one HTTP request may carry (Inngest's limit)."""
    MAX_REQUEST_BYTES: int = 5 * 1024 * 1024
    """The largest body the event endpoint reads; larger ones are refused unread."""
    EVENT_KEYS: tuple[str, ...] = ()
    """Keys accepted by ``POST .../e/<event_key>``; list two while rotating."""
    ACCEPT_ANY_EVENT_KEY: bool = False
    """Development only: the event endpoint accepts any key."""
    SIGNING_KEYS: tuple[str, ...] = ()
    """Keys accepted as ``Authorization: Bearer <key>`` by the REST API (full access)."""
    LEASE_SECONDS: float = 30.0
    """How long a claimed run stays a worker's without a heartbeat."""
    HEARTBEAT_SECONDS: float = 10.0
    SWEEP_SECONDS: float = 10.0
    """How often a worker returns expired leases to the queue."""
    MAX_LEASE_LOSSES: int = 5
    """A run whose lease is lost this many times in a row without a new step result (its
    worker killed, its database writes failing) ends FAILED with a `WorkerLostError`."""
    POLL_INTERVAL: float | None = None
    """Seconds between checks for new work: SQLite 0.1 (a file check, not a query);
    PostgreSQL 10 as a fallback to LISTEN/NOTIFY."""
    IDLE_QUERY_INTERVAL: float = 5.0
    """On SQLite, the longest time an idle worker goes without querying."""
    WORKER_CONCURRENCY: int = 10
    PRIORITY_RANGE: int = 600
    """Priority factors are kept within ±this many seconds."""
    RETENTION_COMPLETED_DAYS: float = 7
    """`inngest_prune` deletes completed (and skipped) runs ended longer ago than this, and
    events received longer ago that no run refers to."""
    RETENTION_FAILED_DAYS: float = 14
    """`inngest_prune` deletes failed (and cancelled) runs ended longer ago than this."""
    PRUNE_INTERVAL_SECONDS: float | None = None
    """When set, workers prune by themselves this often (one worker per interval); off by
    default: deleting history is the operator's decision."""
    CRON_TIMEZONE: str = "UTC"
    """The zone of cron schedules written without a ``TZ=`` prefix."""
    CRON_CATCH_UP: bool = True
    """After the scheduler was not running, fire the latest missed tick of each cron schedule
    once; False drops missed ticks."""
    CRON_GRACE_SECONDS: float = 10.0
    """A tick first seen by a scheduler more than this late counts as missed."""
    ORPHAN_GRACE_SECONDS: float = 600.0
    """A run of a function in no app's current sync fails with ``FunctionNotFound`` once no
    live worker has served the function for this long."""
    LISTEN_DATABASE: str | None = None
    """A database alias with a session-capable connection (not through a transaction-mode
    pooler) that PostgreSQL workers LISTEN on; everything else uses ``DATABASE``."""


_NUMBERS = (int, float)
_TYPES: dict[str, tuple[type, ...]] = {
    "APP_ID": (str,),
    "DATABASE": (str,),
    "RETRY_BACKOFF": (list, tuple),
    "RETRY_JITTER": _NUMBERS,
    "MAX_EVENT_BYTES": (int,),
    "MAX_EVENTS_PER_REQUEST": (int,),
    "MAX_REQUEST_BYTES": (int,),
    "EVENT_KEYS": (list, tuple),
    "ACCEPT_ANY_EVENT_KEY": (bool,),
    "SIGNING_KEYS": (list, tuple),
    "LEASE_SECONDS": _NUMBERS,
    "HEARTBEAT_SECONDS": _NUMBERS,
    "SWEEP_SECONDS": _NUMBERS,
    "MAX_LEASE_LOSSES": (int,),
    "POLL_INTERVAL": (*_NUMBERS, type(None)),
    "IDLE_QUERY_INTERVAL": _NUMBERS,
    "WORKER_CONCURRENCY": (int,),
    "PRIORITY_RANGE": (int,),
    "RETENTION_COMPLETED_DAYS": _NUMBERS,
    "RETENTION_FAILED_DAYS": _NUMBERS,
    "PRUNE_INTERVAL_SECONDS": (*_NUMBERS, type(None)),
    "CRON_TIMEZONE": (str,),
    "CRON_CATCH_UP": (bool,),
    "CRON_GRACE_SECONDS": _NUMBERS,
    "ORPHAN_GRACE_SECONDS": _NUMBERS,
    "LISTEN_DATABASE": (str, type(None)),
}


def raw() -> dict[str, Any]:
    """The ``INNGEST`` setting as the project wrote it ({} when absent or not a dict)."""
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
        if (isinstance(item, bool) and bool not in types) or not isinstance(item, types):
            found.append(f"INNGEST[{key!r}]={item!r} has the wrong type")
            continue
        if key in _KEY_LISTS and isinstance(item, list | tuple):
            found.extend(_key_list_problems(key, item))
            continue
        if key == "RETRY_BACKOFF" and (
            not isinstance(item, list | tuple)
            or not item
            or any(isinstance(s, bool) or not isinstance(s, _NUMBERS) or s < 0 for s in item)
        ):
            found.append(f"INNGEST['RETRY_BACKOFF']={item!r} must be a non-empty list of seconds")
        elif key == "MAX_LEASE_LOSSES" and isinstance(item, int) and item < 1:
            found.append(
                f"INNGEST['MAX_LEASE_LOSSES']={item!r} must be at least 1: a run whose worker "
                "is lost that many times in a row without progress fails"
            )
        elif key == "CRON_TIMEZONE" and not _is_zone(item):
            found.append(f"INNGEST['CRON_TIMEZONE']={item!r} is not a known time zone")
        elif isinstance(item, _NUMBERS) and item < 0:
            found.append(f"INNGEST[{key!r}]={item!r} must not be negative")
    lease = value.get("LEASE_SECONDS", InngestSettings.LEASE_SECONDS)
    heartbeat = value.get("HEARTBEAT_SECONDS", InngestSettings.HEARTBEAT_SECONDS)
    if isinstance(lease, _NUMBERS) and isinstance(heartbeat, _NUMBERS) and heartbeat >= lease:
        found.append(
            f"INNGEST['HEARTBEAT_SECONDS']={heartbeat!r} must be shorter than "
            f"LEASE_SECONDS={lease!r}, or leases expire while their runs are alive"
        )
    listen = value.get("LISTEN_DATABASE")
    if isinstance(listen, str) and listen not in getattr(django_settings, "DATABASES", {}):
        found.append(f"INNGEST['LISTEN_DATABASE']={listen!r} is not a database alias in DATABASES")
    limits = [value.get(name, getattr(InngestSettings, name)) for name in _SIZE_LIMITS]
    if all(isinstance(limit, int) and not isinstance(limit, bool) for limit in limits):
        event_limit, request_limit = limits
        if request_limit < event_limit:
            found.append(
                f"INNGEST['MAX_REQUEST_BYTES']={request_limit!r} is smaller than "
                f"MAX_EVENT_BYTES={event_limit!r}, so the largest event could not be sent over HTTP"
            )
    return found


_KEY_LISTS = ("EVENT_KEYS", "SIGNING_KEYS")
_SIZE_LIMITS = ("MAX_EVENT_BYTES", "MAX_REQUEST_BYTES")


def _key_list_problems(setting: str, keys: list[Any] | tuple[Any, ...]) -> list[str]:
    found = []
    for key in keys:
        if not isinstance(key, str) or not key:
            found.append(
                f"INNGEST[{setting!r}] holds {key!r}; every key must be a non-empty string"
            )
        elif "/" in key or key != key.strip() or not key.isprintable():
            found.append(
                f"INNGEST[{setting!r}] holds {key[:12]!r}...; a key cannot contain '/', "
                "spaces at its ends or control characters"
            )
    return found


def warnings() -> list[str]:
    """Settings that work but are dangerous outside development."""
    found = []
    if raw().get("ACCEPT_ANY_EVENT_KEY") is True and not django_settings.DEBUG:
        found.append(
            "INNGEST['ACCEPT_ANY_EVENT_KEY'] is True while DEBUG is False: anyone who can reach "
            "the event endpoint can send events"
        )
    return found


def uses_tasks_backend() -> bool:
    """Whether `settings.TASKS` (Django's tasks framework) names this package's backend."""
    backends = getattr(django_settings, "TASKS", None)
    return isinstance(backends, dict) and any(
        isinstance(backend, dict)
        and str(backend.get("BACKEND", "")).startswith("django_inngest.tasks.")
        for backend in backends.values()
    )


def _is_zone(name: object) -> bool:
    try:
        zone_or_error(str(name))
    except CronError:
        return False
    return True


@functools.cache
def get() -> InngestSettings:
    """The settings in force, with the defaults for the keys the project left out; read once per
    process (tests clear the cache when they override settings)."""
    values = {key: item for key, item in raw().items() if key in _TYPES}
    for name in ("RETRY_BACKOFF", *_KEY_LISTS):
        if name in values:
            values[name] = tuple(values[name])
    return InngestSettings(**values)


@receiver(setting_changed)
def _forget(*, setting: str, **kwargs: Any) -> None:
    if setting == "INNGEST":
        get.cache_clear()
