"""The `Event` value object, the rules an event must pass before it is stored (SPEC §1.4), and
the one rule for the JSON the store holds, wherever it comes from (`storable_json`)."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django_inngest.core import ids
from django_inngest.core.errors import InvalidEventError, UnstorableValueError

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
        """The event as Inngest's JSON shape: name, data, id and ts."""
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
        problem = text_problem(text)
        if problem:
            raise InvalidEventError(f"event {field_name} {text[:80]!r} {problem}", index=index)
    data = {key: value for key, value in event.data.items() if key != "_inngest" or allow_system}
    try:
        # Events the engine emits carry outputs already checked, and stored events.
        encoded = (
            storable_json(data, "data", max_depth=None, numbers=False)
            if allow_system
            else storable_json(data, "data")
        )
    except UnstorableValueError as error:
        raise InvalidEventError(
            f"data of event {name!r} cannot be stored: {error}", index=index
        ) from None
    size = len(encoded.encode("utf-8")) + len(name.encode("utf-8")) + len(event.id)
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


def text_problem(text: str) -> str:
    """Why the store cannot hold `text` (a NUL character, a lone surrogate); "" when it can."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        found = json.dumps(text[error.start])
        return f"contains a lone surrogate ({found}), which is not valid Unicode"
    return ""


# --- what the store can hold ------------------------------------------------------------------

#: How deep JSON may nest in what the store keeps from outside (event data, invoke data, step
#: and run outputs), counting the value itself: parsers, encoders and expressions recurse.
MAX_JSON_DEPTH = 100
#: The most a step's output, or a function's return value, may weigh as JSON (Inngest's limit).
MAX_OUTPUT_BYTES = 4 * 1024 * 1024
#: An integer of fewer digits always fits a 64-bit float (the largest is about 1.8e308).
_FLOAT_DIGITS = 309
_LONG_DIGITS = re.compile(rf"(?<!\d)\d{{{_FLOAT_DIGITS}}}")
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_EMPTY_PAIR = re.compile(r"\[\]|\{\}")
#: The walk of a value stops this deep whatever the limit asked for (a value containing itself).
_WALK_DEPTH = 10_000


def storable_json(
    value: Any,
    root: str,
    *,
    max_depth: int | None = MAX_JSON_DEPTH,
    numbers: bool = True,
    max_bytes: int | None = None,
) -> str:
    """`value` as the JSON text the store keeps (compact, characters as they are).

    The one rule for what the store holds, the same on SQLite and PostgreSQL: JSON types only
    (tuples become arrays; int, float, bool and None keys become strings, as `json.dumps` makes
    them); with `numbers`, every number within the range of a 64-bit float, as Inngest's server
    decodes them (integers within it are kept exactly, even past 2**53); no NUL character and no
    lone surrogate in any string or key (PostgreSQL's jsonb refuses both); at most `max_depth`
    levels of nesting; with `max_bytes`, at most that many bytes of UTF-8. Raises
    `UnstorableValueError` naming the path, under `root`, of the first value that breaks it
    (``data["user"]["n"]``) and what it is.
    """
    try:
        encoded: str | None = json.dumps(
            value, separators=(",", ":"), allow_nan=False, ensure_ascii=False
        )
    except (TypeError, ValueError, RecursionError):
        encoded = None
    # Quick looks at the text (C speed); only a value one of them doubts is walked.
    if encoded is not None and not _doubtful(encoded, max_depth, numbers):
        _check_size(encoded, root, max_bytes)
        return encoded
    problem = _first_problem(value, root, max_depth, numbers)
    if problem is not None:
        raise UnstorableValueError(*problem)
    if encoded is None:
        raise UnstorableValueError(root, "cannot be written as JSON")
    _check_size(encoded, root, max_bytes)
    return encoded


def _check_size(encoded: str, root: str, max_bytes: int | None) -> None:
    # A character is 1 to 4 bytes of UTF-8: only a long text is encoded to be measured.
    if max_bytes is None or len(encoded) * 4 <= max_bytes:
        return
    size = len(encoded.encode("utf-8"))
    if size > max_bytes:
        raise UnstorableValueError(
            root, f"is {size:,} bytes of JSON, more than the limit of {max_bytes:,} bytes"
        )


def _doubtful(encoded: str, max_depth: int | None, numbers: bool) -> bool:
    if "\\u0000" in encoded:
        return True
    if not encoded.isascii():
        try:
            encoded.encode("utf-8")
        except UnicodeEncodeError:
            return True
    if numbers and _LONG_DIGITS.search(encoded):
        return True
    return max_depth is not None and _may_nest_deeper(encoded, max_depth)


def _may_nest_deeper(encoded: str, limit: int) -> bool:
    """False when the JSON text surely nests at most `limit` deep: each pass takes away the
    innermost level of brackets. Brackets inside strings may make it answer True wrongly."""
    if encoded.count("[") + encoded.count("{") <= limit:
        return False
    brackets = _NOT_BRACKETS.sub("", encoded)
    for _ in range(limit):
        brackets, removed = _EMPTY_PAIR.subn("", brackets)
        if not brackets:
            return False
        if not removed:
            return True
    return True


def _first_problem(
    value: Any, root: str, max_depth: int | None, numbers: bool
) -> tuple[str, str] | None:
    """(path, problem) of the first value, in document order, that the store cannot hold."""
    limit = _WALK_DEPTH if max_depth is None else min(max_depth, _WALK_DEPTH)
    pending: list[tuple[Any, str, int]] = [(value, root, 0)]
    while pending:
        item, path, depth = pending.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return path, problem
        elif item is None or isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if numbers and not _fits_float(item):
                return path, (
                    f"is an integer of {_digits(item)} digits, outside the range of a 64-bit "
                    "float (about ±1.8e308)"
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                return path, f"is {item!r}, which is not a JSON number"
        elif isinstance(item, dict | list | tuple):
            if depth >= limit:
                return root, f"nests deeper than {limit} levels (at {_shorten(path)})"
            if isinstance(item, dict):
                children = []
                for key, child in item.items():
                    name, problem = _key(key)
                    if problem:
                        return path, problem
                    children.append((child, f"{path}[{_quoted(name)}]", depth + 1))
                pending.extend(reversed(children))
            else:
                pending.extend(
                    (child, f"{path}[{index}]", depth + 1)
                    for index, child in reversed(list(enumerate(item)))
                )
        else:
            name = type(item).__name__
            return path, f"is {'an' if name[:1].lower() in 'aeio' else 'a'} {name}"
    return None


def _key(key: Any) -> tuple[str, str]:
    """A key as JSON writes it, and why the store cannot hold it ("" when it can)."""
    if isinstance(key, str):
        name = key
    elif isinstance(key, float) and not math.isfinite(key):
        return "", f"has a key {key!r}, which is not a JSON number"
    elif key is None or isinstance(key, bool | int | float):
        try:
            name = json.dumps(key)
        except ValueError:  # an int too long to write out
            return "", f"has an integer key of {_digits(int(key or 0))} digits"
    else:
        return "", f"has a key {_short(key)} of type {type(key).__name__}: keys must be strings"
    problem = text_problem(name)
    if problem:
        what = "a NUL character (\\u0000)" if "NUL" in problem else "a lone surrogate"
        return name, f"has a key with {what}: {_quoted(name)}"
    return name, ""


def _fits_float(number: int) -> bool:
    if -(10 ** (_FLOAT_DIGITS - 1)) < number < 10 ** (_FLOAT_DIGITS - 1):
        return True
    try:
        float(number)
    except OverflowError:
        return False
    return True


def _digits(number: int) -> str:
    try:
        return str(len(str(abs(number))))
    except ValueError:  # longer than Python writes out (sys.get_int_max_str_digits())
        return f"more than {sys.get_int_max_str_digits()}"


def _quoted(name: str) -> str:
    """A key as JSON (NUL and lone surrogates escaped), cut short when long."""
    text = json.dumps(name, ensure_ascii=not name.isascii() and bool(text_problem(name)))
    return text if len(text) <= 42 else text[:40] + '"…'


def _shorten(path: str) -> str:
    return path if len(path) <= 80 else path[:60] + "…" + path[-19:]


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
