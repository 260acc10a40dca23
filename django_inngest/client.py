"""The `Inngest` client: declare functions and send events.

`send_sync()` writes through the caller's database connection, so an event sent inside
`transaction.atomic()` exists exactly when the caller's own writes commit.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Concatenate, ParamSpec, TypeVar, Unpack

from asgiref.sync import sync_to_async

from django_inngest import conf
from django_inngest.core import clock, ids
from django_inngest.core.errors import RunEndedError
from django_inngest.core.events import Event, prepare
from django_inngest.core.expressions import Expression, compile_expression
from django_inngest.core.function import (
    Function,
    FunctionOptions,
    Handler,
    check_option_names,
    spell_out_options,
)
from django_inngest.registry import registry

P = ParamSpec("P")
R = TypeVar("R")

REPLAY_STATUSES = ("FAILED", "CANCELLED")
"""The statuses a bulk replay reruns."""
MAX_REPLAY = 10_000
"""The most runs one bulk replay reruns."""


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
        """The logger `ctx.logger` of this client's functions forwards to."""
        return self._logger

    def set_logger(self, logger: logging.Logger) -> None:
        """The logger `ctx.logger` forwards to."""
        self._logger = logger

    def create_function(self, **options: Unpack[FunctionOptions]) -> Callable[[Handler], Function]:
        """Decorate a handler ``fn(ctx)`` or ``fn(ctx, step)``, async or not, into a `Function`
        of this client's app, registered for workers to run. The keywords are
        `FunctionOptions`'; a wrong type raises `FunctionDefinitionError` at decoration."""
        check_option_names(options, "create_function")

        def decorate(handler: Handler) -> Function:
            function = Function(app_id=self.app_id, handler=handler, client=self, **options)
            registry.register(function)
            return function

        return decorate

    def send_sync(
        self, events: Event | Sequence[Event], *, id_seed: str | None = None
    ) -> list[str]:
        """Store events in the caller's transaction and return their ids (ULIDs).

        Every event is checked first; if one is invalid, nothing is stored. With `id_seed`
        (the ``x-inngest-event-id-seed`` header of Inngest's SDKs) the ids derive from the
        seed, so sending again with the same seed stores nothing new and returns the same ids.
        """
        from django_inngest import store  # models load after apps are ready

        settings = conf.get()
        seed = ids.EventIdSeed.parse(id_seed) if id_seed is not None else None
        prepared = prepare(events, now_ms=clock.now_ms(), max_bytes=settings.MAX_EVENT_BYTES)
        if seed is not None:
            prepared = [
                dataclasses.replace(event, id=seed.event_id(index))
                for index, event in enumerate(prepared)
            ]
        store.insert_events(prepared, received_at=clock.now(), ignore_existing=seed is not None)
        return [event.id for event in prepared]

    async def send(
        self, events: Event | Sequence[Event], *, id_seed: str | None = None
    ) -> list[str]:
        """`send_sync` for async code, on the thread Django's async ORM calls use."""
        ids: list[str] = await sync_to_async(self.send_sync)(events, id_seed=id_seed)
        return ids

    def cancel(self, run_id: str) -> None:
        """Cancel a run that has not ended: a step in flight finishes but its result is
        dropped, nothing more runs, `inngest/function.cancelled` is emitted, `on_failure`
        is not called. Raises `RunNotFoundError` or `RunEndedError`."""
        from django_inngest import store
        from django_inngest.registry import registry

        store.cancel_run(run_id, now=clock.now(), pending=registry.listens_to)

    def cancel_runs(
        self,
        function_id: str,
        *,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
        if_exp: str | None = None,
    ) -> list[str]:
        """Cancel the runs of `function_id` (the full id) enqueued in a window whose triggering
        event matches `if_exp`; returns the ids of the runs cancelled."""
        from django_inngest import store
        from django_inngest.registry import registry

        expression = compile_expression(if_exp) if if_exp is not None else None
        cancelled = []
        for run in store.active_runs(
            function_id, started_after=started_after, started_before=started_before or clock.now()
        ):
            if expression is not None and not _matches(expression, run):
                continue
            try:
                store.cancel_run(run["id"], now=clock.now(), pending=registry.listens_to)
            except RunEndedError:
                continue  # it ended meanwhile
            cancelled.append(run["id"])
        return cancelled

    def replay_candidates(
        self,
        function_id: str,
        *,
        statuses: Sequence[str] = ("FAILED",),
        started_after: datetime | None = None,
        started_before: datetime | None = None,
    ) -> list[str]:
        """The runs a bulk replay of `function_id` (the full id) would rerun: those that
        ended in `statuses` (FAILED and/or CANCELLED), enqueued in [after, before), oldest
        first. More than `MAX_REPLAY` is an error: narrow the window."""
        from django_inngest import store

        wrong = [status for status in statuses if status not in REPLAY_STATUSES]
        if not statuses or wrong:
            raise ValueError(
                f"a replay reruns runs that are {' or '.join(REPLAY_STATUSES)}, not {wrong or []!r}"
            )
        before = started_before or clock.now()
        if started_after is not None and started_after >= before:
            raise ValueError(
                f"started_after {started_after.isoformat()} is not before "
                f"started_before {before.isoformat()}"
            )
        found = store.runs_in_window(
            function_id,
            statuses=statuses,
            enqueued_after=started_after,
            enqueued_before=before,
            limit=MAX_REPLAY + 1,
        )
        if len(found) > MAX_REPLAY:
            raise ValueError(
                f"more than {MAX_REPLAY} runs of {function_id!r} match; replay a shorter window"
            )
        return found

    def replay(
        self,
        function_id: str,
        *,
        statuses: Sequence[str] = ("FAILED",),
        started_after: datetime | None = None,
        started_before: datetime | None = None,
    ) -> list[str]:
        """Bulk replay, as Inngest's: rerun every run `replay_candidates` finds, each as
        `rerun()` does (a new run with the same events, linked to it); returns the new ids."""
        return [
            self.rerun(run_id)
            for run_id in self.replay_candidates(
                function_id,
                statuses=statuses,
                started_after=started_after,
                started_before=started_before,
            )
        ]

    def rerun(self, run_id: str, *, from_step: str | None = None) -> str:
        """Start a new run with the same events, linked to the original; returns its id.
        With `from_step`, the results of steps completed before that step are kept."""
        from django_inngest import store

        return store.rerun(run_id, now=clock.now(), from_step=from_step)


spell_out_options(Inngest.create_function)


def _matches(expression: Expression, run: Mapping[str, Any]) -> bool:
    """Whether a run's event matches; an error over one run's event leaves that run alone."""
    try:
        return expression.matches(run["event"])
    except Exception:
        logging.getLogger("django_inngest").warning(
            "bulk cancellation left run_id=%s alone: its event cannot be evaluated",
            run["id"],
            exc_info=True,
        )
        return False


_default: Inngest | None = None


def default_client() -> Inngest:
    """The client of module-level `create_function` / `send_sync`: ``INNGEST["APP_ID"]``."""
    global _default
    app_id = conf.get().APP_ID
    if _default is None or _default.app_id != app_id:
        _default = Inngest(app_id)
    return _default


def _on_default_client(method: Callable[Concatenate[Inngest, P], R]) -> Callable[P, R]:
    """The client method `method`, called on `default_client()`: same keywords, same types."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        return method(default_client(), *args, **kwargs)

    signature = inspect.signature(method)
    call.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]  # without `self`
    )
    call.__qualname__ = method.__name__
    return call


create_function = _on_default_client(Inngest.create_function)
"""`Inngest.create_function` on the default client (app id ``INNGEST["APP_ID"]``)."""
send_sync = _on_default_client(Inngest.send_sync)
"""`Inngest.send_sync` on the default client."""


async def send(events: Event | Sequence[Event], *, id_seed: str | None = None) -> list[str]:
    """`Inngest.send` on the default client (a coroutine function, as the client's)."""
    return await default_client().send(events, id_seed=id_seed)
