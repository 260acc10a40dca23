"""How the admin shows values: status badges, durations and JSON payloads.

Payloads are pretty-printed as text and escaped by the templates; a large one is cut to
`PAYLOAD_LIMIT` characters with a link to a page that serves the whole value as JSON.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.http import JsonResponse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from django_inngest.models import RunStatus

PAYLOAD_LIMIT = 4000
"""Characters of a pretty-printed payload shown inline before it is cut."""

STATUS_LABELS = dict(RunStatus.choices)


def status_badge(status: str) -> SafeString:
    """A coloured label; the colour comes from the `inngest-status-<status>` CSS class."""
    label = STATUS_LABELS.get(status, status.title())
    return format_html(
        '<span class="inngest-status inngest-status-{}">{}</span>', status.lower(), label
    )


def format_duration(delta: timedelta | None) -> str:
    """A short human duration: ``850 ms``, ``12.4 s``, ``3 m 05 s``, ``2 h 10 m``, ``3 d 4 h``."""
    if delta is None:
        return "—"
    total = delta.total_seconds()
    if total < 0:
        total = 0.0
    if total < 1:
        return f"{round(total * 1000)} ms"
    if total < 60:
        return f"{total:.1f} s"
    seconds = int(total)
    if seconds < 3600:
        return f"{seconds // 60} m {seconds % 60:02d} s"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} m"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def elapsed(
    started_at: datetime | None, ended_at: datetime | None, now: datetime
) -> timedelta | None:
    """How long something ran: to its end, or until now while it goes on."""
    if started_at is None:
        return None
    return (ended_at or now) - started_at


def to_json_text(value: Any) -> str:
    """`value` as indented JSON, non-ASCII kept as is, anything JSON cannot hold shown as its
    `str()`."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


@dataclass(frozen=True, kw_only=True)
class Payload:
    """A JSON value ready for a `<pre>`: the text shown and whether it was cut."""

    text: str
    size: int
    """Characters of the whole pretty-printed value."""
    truncated: bool
    full_url: str | None
    """Where the whole value is served, when it was cut."""

    @property
    def hidden(self) -> int:
        """How many characters of the JSON text the page leaves out."""
        return self.size - len(self.text)


def payload(value: Any, *, full_url: str | None = None, limit: int = PAYLOAD_LIMIT) -> Payload:
    """`value` as JSON text cut at `limit` characters, with `full_url` linking to the whole when it
    was cut."""
    text = to_json_text(value)
    if len(text) <= limit:
        return Payload(text=text, size=len(text), truncated=False, full_url=None)
    return Payload(text=text[:limit], size=len(text), truncated=True, full_url=full_url)


def json_value_response(value: Any) -> JsonResponse:
    """A stored value served as JSON; browsers show it as text, never as HTML."""
    response = JsonResponse(
        value, safe=False, json_dumps_params={"indent": 2, "ensure_ascii": False}
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Disposition"] = "inline"
    return response


def error_parts(error: Any) -> dict[str, str]:
    """name, message, code and stack of a stored error object, tolerating odd shapes."""
    if not isinstance(error, dict):
        return {"name": "Error", "message": to_json_text(error), "code": "", "stack": ""}
    return {key: str(error.get(key) or "") for key in ("name", "message", "code", "stack")} | {
        "name": str(error.get("name") or "Error")
    }
