"""Building functions and events for core unit tests (no Django, no database)."""

from __future__ import annotations

from typing import Any

from django_inngest.core import clock, ids
from django_inngest.core.config import TriggerEvent
from django_inngest.core.events import Event
from django_inngest.core.function import Function, Handler
from django_inngest.core.local import LocalResult, run_locally


def make(handler: Handler, **options: Any) -> Function:
    options.setdefault("trigger", TriggerEvent(event="t"))
    options.setdefault("fn_id", handler.__name__)
    return Function(app_id="test", handler=handler, **options)


def event(data: dict[str, Any] | None = None, name: str = "t") -> Event:
    return Event(name=name, data=data or {}, id=ids.ulid(), ts=clock.now_ms())


def run(function: Function, data: dict[str, Any] | None = None, **kwargs: Any) -> LocalResult:
    return run_locally(function, [event(data)], **kwargs)
