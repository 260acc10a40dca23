"""The `Event` value object and the rules an event must pass before it is stored (SPEC §1.4)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django_inngest.core import ids
from django_inngest.core.errors import InvalidEventError

#: Names reserved for events the engine emits itself.
SYSTEM_PREFIX = "inngest/"
FUNCTION_FINISHED = "inngest/function.finished"
FUNCTION_FAILED = "inngest/function.failed"
FUNCTION_CANCELLED = "inngest/function.cancelled"
FUNCTION_INVOKED = "inngest/function.invoked"
SCHEDULED_TIMER = "inngest/scheduled.timer"

MAX_NAME_LENGTH = 512
MAX_ID_LENGTH = 255
_MIN_TS = int(datetime(1980, 1, 1, tzinfo=UTC).timestamp() * 1000)
_MAX_TS = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True, kw_only=True)
class Event:
    """An event: a name, a JSON object of data, an optional id for de-duplication, a time."""

    name: str
    """What happened, such as ``"shop/order.placed"``."""
    data: Mapping[str, Any] = field(default_factory=dict)
    """A JSON object."""
    id: str = ""
    """The sender's id: events with the same id start each function at most once in 24 h."""
    ts: int = 0
    """Milliseconds since the epoch; 0 means "when received". A future time delays the runs."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise TypeError(f"Event name must be a string, not {self.name!r}")
        data = {} if self.data is None else self.data
        if not isinstance(data, Mapping):
            raise InvalidEventError(f"Event data must be a JSON object (a mapping), not {data!r}")
        object.__setattr__(self, "data", dict(data))
        if not isinstance(self.id, str):
            raise TypeError(f"Event id must be a string, not {self.id!r}")
        if isinstance(self.ts, bool) or not isinstance(self.ts, int):
            raise TypeError(f"Event ts must be an int (milliseconds), not {self.ts!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "data": dict(self.data), "id": self.id, "ts": self.ts}

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Event:
        """Build an event from its JSON form (unknown keys such as ``user`` are ignored)."""
        if not isinstance(raw, Mapping):
            raise InvalidEventError(f"an event must be a JSON object, not {raw!r}")
        name = raw.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidEventError(f"an event needs a non-empty string 'name', got {name!r}")
        # null stands for "not given"; any other value must have the right type.
        event_id = raw.get("id")
        if event_id is None:
            event_id = ""
        if not isinstance(event_id, str):
            raise InvalidEventError(f"event 'id' must be a string, got {event_id!r}")
        ts = raw.get("ts")
        if ts is None:
            ts = 0
        if isinstance(ts, float) and ts.is_integer():
            ts = int(ts)
        if isinstance(ts, bool) or not isinstance(ts, int):
            raise InvalidEventError(f"event 'ts' must be an integer of milliseconds, got {ts!r}")
        data = raw.get("data")
        if data is not None and not isinstance(data, Mapping):
            raise InvalidEventError(f"event 'data' must be a JSON object, got {_short(data)}")
        return cls(name=name, data=data or {}, id=event_id, ts=ts)


@dataclass(frozen=True, kw_only=True)
class PreparedEvent:
    """An event checked for sending, with the id it will be stored under."""

    id: str
    """Our ULID for the event."""
    name: str
    data: dict[str, Any]
    user_id: str
    ts: int


def prepare(
    events: Event | Sequence[Event],
    *,
    now_ms: int,
    max_bytes: int,
    allow_system: bool = False,
) -> list[PreparedEvent]:
    """Check events before any is stored; the first bad one raises and nothing is written."""
    items = [events] if isinstance(events, Event) else list(events)
    prepared = []
    for index, event in enumerate(items):
        if not isinstance(event, Event):
            raise InvalidEventError(f"expected an Event, got {event!r}", index=index)
        prepared.append(_prepare_one(event, index, now_ms, max_bytes, allow_system))
    return prepared


def _prepare_one(
    event: Event, index: int, now_ms: int, max_bytes: int, allow_system: bool
) -> PreparedEvent:
    name = event.name
    if not name:
        raise InvalidEventError("event name is empty", index=index)
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidEventError(
            f"event name is {len(name)} characters, over the limit of {MAX_NAME_LENGTH}: "
            f"{name[:40]!r}...",
            index=index,
        )
    if not allow_system and name.lower().startswith(SYSTEM_PREFIX):
        raise InvalidEventError(
            f"event name {name!r} is reserved: names starting with {SYSTEM_PREFIX!r} are sent "
            "only by the engine",
            index=index,
        )
    if len(event.id) > MAX_ID_LENGTH:
        raise InvalidEventError(
            f"event id is {len(event.id)} characters, over the limit of {MAX_ID_LENGTH}: "
            f"{event.id[:40]!r}...",
            index=index,
        )
    for field_name, text in (("name", name), ("id", event.id)):
        problem = _text_problem(text)
        if problem:
            raise InvalidEventError(f"event {field_name} {text[:80]!r} {problem}", index=index)
    data = {key: value for key, value in event.data.items() if key != "_inngest" or allow_system}
    try:
        encoded = json.dumps(data, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
        size = len(encoded.encode("utf-8")) + len(name.encode("utf-8")) + len(event.id)
    except UnicodeEncodeError:
        raise InvalidEventError(
            f"data of event {name!r} contains a lone surrogate (text that is not valid Unicode)",
            index=index,
        ) from None
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidEventError(
            f"data of event {name!r} is not JSON: {error}", index=index
        ) from error
    # NUL is valid JSON but no database column takes it (PostgreSQL refuses it in jsonb).
    if "\\u0000" in encoded and _contains_nul(data):
        raise InvalidEventError(
            f"data of event {name!r} contains a NUL character (\\u0000), which cannot be stored",
            index=index,
        )
    if size > max_bytes:
        raise InvalidEventError(
            f"event {name!r} is {size} bytes, over the limit of {max_bytes} bytes", index=index
        )
    ts = event.ts or now_ms
    if not _MIN_TS <= ts < _MAX_TS:
        raise InvalidEventError(
            f"event {name!r} has ts={event.ts!r}, outside 1980-01-01..2100-01-01 "
            "(ts is in milliseconds)",
            index=index,
        )
    return PreparedEvent(
        id=ids.ulid(), name=name, data=json.loads(encoded), user_id=event.id, ts=ts
    )


def _text_problem(text: str) -> str:
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (it is not valid Unicode)"
    return ""


def _contains_nul(value: Any) -> bool:
    """Whether a NUL character appears in any string or key of a JSON value."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, Mapping):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple):
            pending.extend(item)
    return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


#: Events the engine emits may carry a whole run's output.
SYSTEM_EVENT_MAX_BYTES = 32 * 1024 * 1024


def run_ended_events(
    *,
    function_id: str,
    run_id: str,
    trigger_events: Sequence[Mapping[str, Any]],
    status: str,
    output: Any,
    now_ms: int,
) -> list[PreparedEvent]:
    """What a run emits when it ends (SPEC §3.13): `inngest/function.finished`, plus
    `.failed` or `.cancelled` whose id is the run id, so they start each listener once.

    Runs started by these events emit nothing, so failure handlers cannot loop.
    """
    first = str(trigger_events[0].get("name", "")) if trigger_events else ""
    if first in (FUNCTION_FINISHED, FUNCTION_FAILED, FUNCTION_CANCELLED):
        return []
    data: dict[str, Any] = {
        "function_id": function_id,
        "run_id": run_id,
        "event": dict(trigger_events[0]) if trigger_events else {},
        "events": [dict(event) for event in trigger_events],
        "_inngest": {"status": status},
    }
    data["result" if status == "COMPLETED" else "error"] = output
    if first == FUNCTION_INVOKED:
        data["correlation_id"] = invocation_of(trigger_events[0])
    events = [Event(name=FUNCTION_FINISHED, data=data)]
    if status == "FAILED":
        events.append(Event(name=FUNCTION_FAILED, data=data, id=run_id))
    elif status == "CANCELLED":
        events.append(Event(name=FUNCTION_CANCELLED, data=data, id=run_id))
    return prepare(events, now_ms=now_ms, max_bytes=SYSTEM_EVENT_MAX_BYTES, allow_system=True)


def invocation_of(event: Mapping[str, Any]) -> str | None:
    """The correlation id an `inngest/function.invoked` event carries (parent run and step)."""
    meta = (event.get("data") or {}).get("_inngest") or {}
    value = meta.get("correlation_id")
    return value if isinstance(value, str) else None


def invoked_function(event: Mapping[str, Any]) -> str | None:
    """The function an `inngest/function.invoked` event is for."""
    meta = (event.get("data") or {}).get("_inngest") or {}
    value = meta.get("fn_id")
    return value if isinstance(value, str) else None
