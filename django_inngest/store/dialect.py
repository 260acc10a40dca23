"""The seam between the store's concept modules and the database's SQL: the statements whose
text differs between PostgreSQL (`store.postgresql`) and SQLite (`store.sqlite`), named once
here. Concept modules keep the transactions and call `dialect()`; only the two modules that
implement `Dialect` write SQL that one database alone understands.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from django.db.models import QuerySet

from django_inngest.store import postgresql, sqlite
from django_inngest.store._sql import QUEUE, db_connection

if TYPE_CHECKING:
    from django_inngest.models import Event, FunctionRun
    from django_inngest.store.runs import RunEnd


class Dialect(Protocol):
    """What the concept modules ask of a database, statement by statement."""

    @property
    def NOTIFIES(self) -> bool:
        """Whether workers are woken by notifications (and an event can be taken from one)."""

    @property
    def WRITES_IN_ONE_STATEMENT(self) -> bool:
        """Whether one statement can hold several writes (data-modifying CTEs)."""

    def notify(self, about: str) -> None:
        """Wake the other workers when the current transaction commits."""

    def lease_expiry(self, lease_seconds: float) -> tuple[str, list[Any]]:
        """SQL for "now + lease" on the database's clock, with its parameters."""

    def database_now(self) -> tuple[str, list[Any]]:
        """SQL for the database's clock now, with its parameters."""

    def lease_due_items(
        self,
        worker_id: str,
        *,
        limit: int,
        now: datetime,
        horizon: datetime,
        lease_seconds: float,
        serves: Collection[str] | None,
        queues: frozenset[str] | None,
    ) -> list[tuple[Any, ...]]:
        """Lease up to `limit` ready items due by `horizon` (score) and `now` (availability)."""

    def start_runs(self, run_ids: list[str], now: datetime) -> list[dict[str, Any]]:
        """Mark the runs that have not ended RUNNING; return them."""

    def insert_final_steps(self, params: list[Any], rows: int) -> set[tuple[str, str]]:
        """Insert (or finish) steps whose run the writer still holds."""

    def end_runs(
        self, worker_id: str, ends: Sequence[RunEnd]
    ) -> tuple[dict[str, tuple[str | None, ...]], list[RunEnd]]:
        """End the runs `worker_id` still holds."""

    def insert_events(self, rows: Sequence[Event], *, wake: bool, ignore_existing: bool) -> None:
        """Insert events in one statement (and wake workers when `wake`)."""

    def receipt_position(self) -> int:
        """The order of receipt now."""

    def pending_events(
        self, limit: int, due_by: tuple[datetime, datetime] | None
    ) -> list[tuple[Any, ...]]:
        """The oldest pending events, taken for this transaction."""

    def write_together(self, statements: list[tuple[str, list[Any]]]) -> None:
        """Run `statements` in order, in as few round trips as the database allows."""

    def take_prune_turn(self, key: str, now: datetime, since: datetime) -> bool:
        """Record a prune started now unless one started after `since`."""

    def runs_with_event(self, runs: QuerySet[FunctionRun], event_id: str) -> QuerySet[FunctionRun]:
        """Those of `runs` whose events include `event_id`."""


def dialect() -> Dialect:
    """The statements of the engine's database."""
    return postgresql if db_connection().vendor == "postgresql" else sqlite


def notify(about: str = QUEUE) -> None:
    """Wake the other workers when the current transaction commits (PostgreSQL)."""
    dialect().notify(about)
