"""What ``POST e/<event_key>`` checks before any event is stored: the key, the body's size
and its JSON shape. The event rules themselves are `send_sync`'s (core/events.py), so an event
is accepted over HTTP exactly when it would be accepted in process.

A body whose declared length is over ``MAX_REQUEST_BYTES`` is refused unread; any other body is
read in chunks and refused as soon as it passes the limit, so no request can make the server
hold more than the limit in memory. A chunked body (no Content-Length) is read when the server
can pass it (ASGI servers, gunicorn), and refused with 411 when it cannot (other WSGI servers).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any, NoReturn

from django.http import HttpRequest, UnreadablePostError

from django_inngest.conf import InngestSettings
from django_inngest.core.errors import InvalidEventError
from django_inngest.core.events import Event

#: How deep JSON may nest in one event; deeper bodies are refused before anything else
#: walks them (parsers, encoders and expression engines recurse).
MAX_JSON_DEPTH = 100
_CHUNK_BYTES = 64 * 1024


class Rejected(Exception):
    """The request is refused with `status` (a 4xx) and a message for the sender."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_event_key(key: str, settings: InngestSettings) -> None:
    """Accept `key` if it is one of ``EVENT_KEYS``, comparing in constant time."""
    if settings.ACCEPT_ANY_EVENT_KEY:
        return
    # Digests have one length, so the comparison time says nothing of the keys' lengths either.
    given = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    accepted = False
    for candidate in settings.EVENT_KEYS:
        expected = hashlib.sha256(candidate.encode("utf-8")).digest()
        accepted |= hmac.compare_digest(given, expected)
    if not accepted:
        raise Rejected(401, "event key not found: check INNGEST['EVENT_KEYS'] on the server")


def read_body(request: HttpRequest, limit: int) -> bytes:
    """The request body, refused with 413 past `limit` bytes without reading the rest."""
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared:
        try:
            length = int(declared)
        except ValueError:
            raise Rejected(400, f"Content-Length {declared[:40]!r} is not a number") from None
        if length > limit:
            raise Rejected(413, f"the body is {length} bytes, over the limit of {limit} bytes")
    stream: Any = request
    if not declared and "wsgi.input" in request.META:
        # Django's WSGI request reads nothing without a Content-Length. A server that ends
        # the input at the body's end (gunicorn, for a chunked body) says so, and the body is
        # read from it; other WSGI servers cannot pass a chunked body at all.
        if request.META.get("wsgi.input_terminated"):
            stream = request.META["wsgi.input"]
        elif "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            raise Rejected(
                411,
                "this server cannot read a chunked body: send a Content-Length header "
                "(or serve the app with gunicorn, which can)",
            )
    chunks = []
    size = 0
    try:
        while True:
            chunk = stream.read(min(_CHUNK_BYTES, limit + 1 - size))
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise Rejected(413, f"the body is over the limit of {limit} bytes")
            chunks.append(chunk)
    except (OSError, UnreadablePostError) as error:
        raise Rejected(400, f"the body could not be read: {error}") from None
    return b"".join(chunks)


def parse_events(body: bytes, *, max_events: int) -> list[Event]:
    """The events of a body holding one event object or an array of them."""
    if not body.strip():
        raise Rejected(400, "the body is empty: send an event object or an array of events")
    try:
        payload = json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise Rejected(400, f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as error:  # also UnicodeDecodeError
        raise Rejected(400, f"the body is not valid JSON: {error}") from None
    if isinstance(payload, Mapping):
        items: list[Any] = [payload]
    elif isinstance(payload, list):
        items = payload
    else:
        raise Rejected(
            400,
            "the body must be an event object or an array of events, "
            f"not {type(payload).__name__} {_short(payload)}",
        )
    if len(items) > max_events:
        raise Rejected(413, f"{len(items)} events in one request, over the limit of {max_events}")
    events = []
    for index, item in enumerate(items):
        if _deeper_than(item, MAX_JSON_DEPTH):
            raise InvalidEventError(f"nests deeper than {MAX_JSON_DEPTH} levels", index=index)
        try:
            events.append(Event.from_raw(item))
        except (InvalidEventError, TypeError) as error:
            raise InvalidEventError(str(error), index=index) from None
    return events


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def _deeper_than(value: Any, limit: int) -> bool:
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return False


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
