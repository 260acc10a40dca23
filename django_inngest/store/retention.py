"""Retention: deleting runs that ended long enough ago (with their steps), the events no run
refers to any more, and the small state that no longer limits anything (`inngest_prune`, and
workers with `PRUNE_INTERVAL_SECONDS`).

Runs and events go in batches, each in its own short transaction, sized so that none holds its
locks on the hot tables for longer than `LOCK_BUDGET_SECONDS`: a batch that took longer halves
the next one, a quick one doubles it. The space freed is reused by PostgreSQL after VACUUM
(autovacuum's job); SQLite reuses free pages, and `VACUUM` gives them back to the file system.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q

from django_inngest import conf
from django_inngest.core import ids
from django_inngest.models import (
    CronTick,
    Event,
    FlowState,
    FunctionRun,
    IdempotencyKey,
    Pause,
    QueueItem,
    RunStatus,
    RunStep,
)
from django_inngest.store._sql import (
    alias,
    atomic,
    db_connection,
    table_name,
)
from django_inngest.store.dialect import dialect

#: The longest a batch may hold its locks on the hot tables.
LOCK_BUDGET_SECONDS = 0.1
FIRST_BATCH, SMALLEST_BATCH, LARGEST_BATCH = 500, 10, 10_000
#: Runs kept for the completed period; the others (failed, cancelled) for the failed period.
COMPLETED_LIKE = (RunStatus.COMPLETED, RunStatus.SKIPPED)
FAILED_LIKE = (RunStatus.FAILED, RunStatus.CANCELLED)
PRUNE_STATE_KEY = "inngest:prune"


@dataclass(frozen=True, kw_only=True)
class Retention:
    """How long ended runs are kept, by how they ended; unreferenced events follow `completed`."""

    completed: timedelta
    failed: timedelta


@dataclass(kw_only=True)
class Pruned:
    """What a prune deleted (or, dry, would delete)."""

    runs: int = 0
    steps: int = 0
    events: int = 0
    keys: int = 0
    states: int = 0
    pauses: int = 0
    cron_ticks: int = 0
    batches: int = 0
    longest_batch_seconds: float = 0.0
    dry_run: bool = False
    sizes: list[int] = field(default_factory=list)
    """The size of each batch of runs or events, in order."""

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        text = (
            f"{verb} {self.runs} runs ({self.steps} steps), {self.events} events, {self.keys} "
            f"de-duplication keys, {self.pauses} expired listeners, {self.states} flow-control "
            f"states and {self.cron_ticks} cron ticks"
        )
        if not self.dry_run and self.batches:
            text += (
                f" in {self.batches} batches (longest {self.longest_batch_seconds * 1000:.0f} ms)"
            )
        return text


def retention_of_settings(days: float | None = None) -> Retention:
    """The retention periods of `INNGEST` (`days`, when given, for both)."""
    settings = conf.get()
    completed = settings.RETENTION_COMPLETED_DAYS if days is None else days
    failed = settings.RETENTION_FAILED_DAYS if days is None else days
    return Retention(completed=timedelta(days=completed), failed=timedelta(days=failed))


def prune(
    *,
    now: datetime,
    retention: Retention,
    dry_run: bool = False,
    first_batch: int = FIRST_BATCH,
) -> Pruned:
    """Delete what `retention` no longer keeps; with `dry_run`, only count it."""
    pruned = Pruned(dry_run=dry_run)
    cutoffs = (
        (COMPLETED_LIKE, now - retention.completed),
        (FAILED_LIKE, now - retention.failed),
    )
    events_cutoff = now - retention.completed
    if dry_run:
        _count(pruned, cutoffs, events_cutoff, now)
        return pruned
    # Each batch looks past the last id of the one before (keyset order): the index entries
    # of deleted rows stay until VACUUM, and scanning them again would make a prune quadratic.
    batch = first_batch
    for statuses, cutoff in cutoffs:
        after = ""
        while run_ids := _old_runs(statuses, cutoff, batch, after):
            batch = _timed(pruned, batch, functools.partial(_delete_runs, pruned, run_ids))
            after = run_ids[-1]
    after = ""
    while event_ids := _old_events(events_cutoff, batch, after):
        batch = _timed(pruned, batch, functools.partial(_delete_events, pruned, event_ids))
        after = event_ids[-1]
    _prune_small_tables(pruned, now, events_cutoff)
    return pruned


def prune_when_due(*, now: datetime, interval: float, retention: Retention) -> Pruned | None:
    """`prune` when no worker has started one in the last `interval` seconds (one worker per
    interval takes the turn, recorded in a flow-control row); None otherwise."""
    if not dialect().take_prune_turn(PRUNE_STATE_KEY, now, now - timedelta(seconds=interval)):
        return None
    return prune(now=now, retention=retention)


def _timed(pruned: Pruned, batch: int, delete: Callable[[], None]) -> int:
    """Run one batch's transaction; returns the size of the next batch."""
    started = time.monotonic()
    with atomic():
        delete()
    took = time.monotonic() - started
    pruned.batches += 1
    pruned.longest_batch_seconds = max(pruned.longest_batch_seconds, took)
    pruned.sizes.append(batch)
    if took > LOCK_BUDGET_SECONDS:
        return max(SMALLEST_BATCH, batch // 2)
    if took < LOCK_BUDGET_SECONDS / 4:
        return min(LARGEST_BATCH, batch * 2)
    return batch


def _ended_before_q(statuses: Sequence[str], cutoff: datetime) -> Q:
    # A run created after the cutoff cannot have ended before it: the id range uses the index.
    floor = ids.ulid_floor(int(cutoff.timestamp() * 1000))
    return Q(status__in=statuses, ended_at__lt=cutoff, id__lt=floor)


def _ended_before(statuses: Sequence[str], cutoff: datetime) -> Any:
    return FunctionRun.objects.using(alias()).filter(_ended_before_q(statuses, cutoff))


def _old_runs(statuses: Sequence[str], cutoff: datetime, limit: int, after: str) -> list[str]:
    found = _ended_before(statuses, cutoff).filter(id__gt=after).order_by("id")
    return list(found.values_list("id", flat=True)[:limit])


def _delete_runs(pruned: Pruned, run_ids: list[str]) -> None:
    """Delete the runs and what hangs off them; links to them from other rows become NULL."""
    marks = ", ".join(["%s"] * len(run_ids))
    run = table_name(FunctionRun)
    with db_connection().cursor() as cursor:
        cursor.execute(f"DELETE FROM {table_name(RunStep)} WHERE run_id IN ({marks})", run_ids)
        pruned.steps += max(0, cursor.rowcount)
        for table in (table_name(Pause), table_name(QueueItem)):
            cursor.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", run_ids)
        cursor.execute(
            f"UPDATE {table_name(CronTick)} SET run_id = NULL WHERE run_id IN ({marks})", run_ids
        )
        cursor.execute(
            f"UPDATE {run} SET original_run_id = NULL WHERE original_run_id IN ({marks})",
            run_ids,
        )
        cursor.execute(f"DELETE FROM {run} WHERE id IN ({marks})", run_ids)
        pruned.runs += max(0, cursor.rowcount)


def _unreferenced_events(cutoff: datetime, doomed: Q | None = None) -> Any:
    """Events received before `cutoff` that no run refers to (but runs matching `doomed`)."""
    floor = ids.ulid_floor(int(cutoff.timestamp() * 1000))
    referring = FunctionRun.objects.using(alias()).filter(event_id=OuterRef("id"))
    if doomed is not None:
        referring = referring.exclude(doomed)
    # NOT EXISTS, not NOT IN: an anti-join, where NOT IN over many runs is quadratic.
    return (
        Event.objects.using(alias())
        .filter(id__lt=floor, received_at__lt=cutoff, pending=False)
        .filter(~Exists(referring))
    )


def _old_events(cutoff: datetime, limit: int, after: str) -> list[str]:
    found = _unreferenced_events(cutoff).filter(id__gt=after).order_by("id")
    return list(found.values_list("id", flat=True)[:limit])


def _delete_events(pruned: Pruned, event_ids: list[str]) -> None:
    marks = ", ".join(["%s"] * len(event_ids))
    runs = table_name(FunctionRun)
    with db_connection().cursor() as cursor:
        # Re-checked: a rerun may have linked one meanwhile.
        cursor.execute(
            f"DELETE FROM {table_name(Event)} WHERE id IN ({marks}) AND NOT EXISTS "
            f"(SELECT 1 FROM {runs} r WHERE r.event_id = {table_name(Event)}.id)",
            event_ids,
        )
        pruned.events += max(0, cursor.rowcount)


def _count(
    pruned: Pruned,
    cutoffs: Sequence[tuple[Sequence[str], datetime]],
    events_cutoff: datetime,
    now: datetime,
) -> None:
    db = alias()
    condition = Q()
    for statuses, cutoff in cutoffs:
        condition |= _ended_before_q(statuses, cutoff)
    doomed = FunctionRun.objects.using(db).filter(condition)
    pruned.runs = doomed.count()
    pruned.steps = RunStep.objects.using(db).filter(run_id__in=doomed.values("id")).count()
    pruned.events = _unreferenced_events(events_cutoff, condition).count()
    pruned.keys = IdempotencyKey.objects.using(db).filter(expires_at__lte=now).count()
    pruned.pauses = (
        Pause.objects.using(db).filter(expires_at__lte=now, kind=Pause.Kind.CANCEL).count()
    )
    stale = now - timedelta(hours=1)
    pruned.states = sum(
        1
        for state in FlowState.objects.using(db).filter(updated_at__lt=stale).iterator()
        if _state_is_idle(state, now)
    )
    pruned.cron_ticks = CronTick.objects.using(db).filter(scheduled_at__lt=events_cutoff).count()


def _prune_small_tables(pruned: Pruned, now: datetime, cutoff: datetime) -> None:
    """Expired de-duplication keys and cancellation listeners, idle flow-control state and
    old cron ticks: small tables, one short transaction."""
    db = alias()
    with atomic():
        pruned.keys, _ = IdempotencyKey.objects.using(db).filter(expires_at__lte=now).delete()
        pruned.pauses, _ = (
            Pause.objects.using(db).filter(expires_at__lte=now, kind=Pause.Kind.CANCEL).delete()
        )
        stale = now - timedelta(hours=1)
        for state in FlowState.objects.using(db).filter(updated_at__lt=stale).iterator():
            if _state_is_idle(state, now):
                pruned.states += (
                    FlowState.objects.using(db)
                    .filter(key=state.key, updated_at=state.updated_at)
                    .delete()[0]
                )
        # Safe: each schedule's `last_tick_at` stops its old ticks from firing again.
        pruned.cron_ticks, _ = CronTick.objects.using(db).filter(scheduled_at__lt=cutoff).delete()


def _state_is_idle(state: FlowState, now: datetime) -> bool:
    """Whether a flow-control row would behave the same if it were missing."""
    if state.kind == "gcra":
        tat = state.data.get("tat")
        return tat is None or datetime.fromisoformat(tat) <= now
    if state.kind == "singleton":
        holder = state.data.get("run_id")
        return (
            not holder or not FunctionRun.objects.using(alias()).filter(id=holder).active().exists()
        )
    if state.kind == "concurrency":
        return not QueueItem.objects.using(alias()).filter(parked_on=state.key).exists()
    return False  # debounce and batch buffers end when they fire; the prune turn stays
