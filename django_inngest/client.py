"""The `Inngest` client: declare functions and send events.

`send_sync()` writes through the caller's database connection, so an event sent inside
`transaction.atomic()` exists exactly when the caller's own writes commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from asgiref.sync import sync_to_async

from django_inngest import conf
from django_inngest.core import clock, config
from django_inngest.core.events import Event, prepare
from django_inngest.core.function import Function, Handler
from django_inngest.registry import registry

F = TypeVar("F", bound=Handler)


class Inngest:
    """A client for one app id; functions it declares get ids ``"{app_id}-{fn_id}"``."""

    def __init__(self, app_id: str, *, logger: logging.Logger | None = None) -> None:
        if not isinstance(app_id, str) or not app_id.strip():
            raise ValueError(f"Inngest(app_id=...) needs a non-empty string, not {app_id!r}")
        self.app_id = app_id
        self._logger = logger or logging.getLogger("django_inngest.functions")

    def __repr__(self) -> str:
        return f"<Inngest app_id={self.app_id!r}>"

    @property
    def logger(self) -> logging.Logger:
        return self._logger

    def set_logger(self, logger: logging.Logger) -> None:
        """The logger `ctx.logger` forwards to."""
        self._logger = logger

    def create_function(
        self,
        *,
        fn_id: str,
        trigger: config.Trigger | Sequence[config.Trigger],
        name: str | None = None,
        retries: int | None = None,
        on_failure: Handler | None = None,
        cancel: Sequence[config.Cancel] | None = None,
        concurrency: Sequence[config.Concurrency] | None = None,
        throttle: config.Throttle | None = None,
        rate_limit: config.RateLimit | None = None,
        debounce: config.Debounce | None = None,
        batch_events: config.Batch | None = None,
        priority: config.Priority | None = None,
        idempotency: str | None = None,
        singleton: config.Singleton | None = None,
        timeouts: config.Timeouts | None = None,
    ) -> Callable[[Handler], Function]:
        """Decorate a handler ``fn(ctx)`` or ``fn(ctx, step)``, async or not."""
        options: dict[str, Any] = {
            "fn_id": fn_id,
            "trigger": trigger,
            "name": name,
            "retries": retries,
            "on_failure": on_failure,
            "cancel": cancel,
            "concurrency": concurrency,
            "throttle": throttle,
            "rate_limit": rate_limit,
            "debounce": debounce,
            "batch_events": batch_events,
            "priority": priority,
            "idempotency": idempotency,
            "singleton": singleton,
            "timeouts": timeouts,
        }

        def decorate(handler: Handler) -> Function:
            function = Function(app_id=self.app_id, handler=handler, **options)
            function.client = self
            if function.on_failure is not None:
                function.on_failure.client = self
            registry.register(function)
            return function

        return decorate

    def send_sync(self, events: Event | Sequence[Event]) -> list[str]:
        """Store events in the caller's transaction and return their ids (ULIDs).

        Every event is checked first; if one is invalid, nothing is stored.
        """
        from django_inngest import store  # models load after apps are ready

        settings = conf.get()
        prepared = prepare(events, now_ms=clock.now_ms(), max_bytes=settings.MAX_EVENT_BYTES)
        store.insert_events(prepared, received_at=clock.now())
        return [event.id for event in prepared]

    async def send(self, events: Event | Sequence[Event]) -> list[str]:
        """`send_sync` for async code, on the thread Django's async ORM calls use."""
        ids: list[str] = await sync_to_async(self.send_sync)(events)
        return ids


_default: Inngest | None = None


def default_client() -> Inngest:
    """The client of module-level `create_function` / `send_sync`: ``INNGEST["APP_ID"]``."""
    global _default
    app_id = conf.get().APP_ID
    if _default is None or _default.app_id != app_id:
        _default = Inngest(app_id)
    return _default


def create_function(**options: Any) -> Callable[[Handler], Function]:
    return default_client().create_function(**options)


def send_sync(events: Event | Sequence[Event]) -> list[str]:
    return default_client().send_sync(events)


async def send(events: Event | Sequence[Event]) -> list[str]:
    return await default_client().send(events)
