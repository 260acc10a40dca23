"""What the fleet is doing, for `inngest_status` and the admin dashboard: live and gone
workers, versions, the backlog (events not yet matched, runs due but not taken) and missed
cron ticks; and `check()`, the one-line verdict of `inngest_status --check`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django_inngest import conf, store
from django_inngest.core import clock
from django_inngest.core.schedule import CronError, parse_cron
from django_inngest.models import WorkerRecord

#: A worker not seen for this many heartbeats counts as gone (as in the worker's sweep).
GONE_AFTER_HEARTBEATS = 3


@dataclass(frozen=True, kw_only=True)
class WorkerState:
    """One worker as the fleet sees it: its record, how long since its last heartbeat, and whether
    it counts as gone."""

    record: WorkerRecord
    silent_for: timedelta
    """Time since its last heartbeat."""
    gone: bool


@dataclass(frozen=True, kw_only=True)
class MissedTick:
    """A cron tick that came due and has no run yet: which function and schedule, and since when."""

    function_id: str
    cron: str
    zone: str
    due_at: datetime
    late_by: timedelta


@dataclass(frozen=True, kw_only=True)
class FleetStatus:
    """What `inngest_status` and the dashboard show: the workers, the backlog of due work, and
    missed cron ticks, at `now`."""

    now: datetime
    workers: list[WorkerState]
    backlog: store.Backlog
    missed_ticks: list[MissedTick]
    warnings: list[str] = field(default_factory=list)

    @property
    def live(self) -> list[WorkerState]:
        """The workers that sent a heartbeat recently enough to count as running."""
        return [worker for worker in self.workers if not worker.gone]

    @property
    def pending_age(self) -> timedelta | None:
        """How long the oldest event not yet matched against the functions has waited; None when
        none waits."""
        oldest = self.backlog.oldest_pending_at
        return None if oldest is None else max(timedelta(0), self.now - oldest)

    @property
    def oldest_due(self) -> store.DueRuns | None:
        """The due runs of the queue that has waited longest, or None."""
        return min(self.backlog.due, key=lambda due: due.oldest_due_at, default=None)

    def lateness(self, due: store.DueRuns) -> timedelta:
        """How long past due the oldest of `due` is (never negative)."""
        return max(timedelta(0), self.now - due.oldest_due_at)


def fleet_status(now: datetime | None = None) -> FleetStatus:
    """Read the fleet's state from the database at `now` (the engine's clock by default)."""
    settings = conf.get()
    now = now or clock.now()
    gone_after = timedelta(seconds=settings.HEARTBEAT_SECONDS * GONE_AFTER_HEARTBEATS)
    workers = [
        WorkerState(
            record=record,
            silent_for=max(timedelta(0), now - record.last_seen_at),
            gone=now - record.last_seen_at > gone_after,
        )
        for record in store.workers()
    ]
    status = FleetStatus(
        now=now,
        workers=workers,
        backlog=store.backlog(now, settings.PRIORITY_RANGE),
        missed_ticks=missed_ticks(now),
    )
    live = status.live
    if not live:
        status.warnings.append("no live worker: nothing runs")
    versions = sorted({worker.record.version for worker in live})
    if len(versions) > 1:
        counts = ", ".join(
            f"{version[:12]} ({sum(w.record.version == version for w in live)})"
            for version in versions
        )
        status.warnings.append(f"{len(versions)} versions live: {counts}")
    return status


def missed_ticks(now: datetime) -> list[MissedTick]:
    """Cron ticks that should have fired more than `CRON_GRACE_SECONDS` ago and have not."""
    settings = conf.get()
    grace = timedelta(seconds=settings.CRON_GRACE_SECONDS)
    found = []
    for row in store.cron_schedules():
        try:
            schedule = parse_cron(row.cron, row.timezone)
        except CronError:
            continue  # reported by `manage.py check` where the code lives
        handled = max(row.created_at, row.last_tick_at or row.created_at)
        due = schedule.next_after(handled)
        if now - due > grace:
            found.append(
                MissedTick(
                    function_id=row.function_id,
                    cron=row.cron,
                    zone=schedule.zone_name,
                    due_at=due,
                    late_by=now - due,
                )
            )
    return found


def seconds(delta: timedelta) -> str:
    """`delta` as whole seconds, such as ``42s``."""
    return f"{delta.total_seconds():.0f}s"


def check(status: FleetStatus, *, max_worker_silence: float, max_backlog_age: float) -> str | None:
    """Why the fleet is unhealthy, in one line; None when it is not."""
    newest = min((worker.silent_for for worker in status.workers), default=None)
    if newest is None:
        return "no worker has been seen (no worker row)"
    if newest.total_seconds() > max_worker_silence:
        return (
            f"no worker seen for {seconds(newest)} (more than --max-worker-silence "
            f"{max_worker_silence:g})"
        )
    oldest_due = status.oldest_due
    if oldest_due is not None and status.lateness(oldest_due).total_seconds() > max_backlog_age:
        return (
            f"{oldest_due.count} runs of {oldest_due.function_id} due, the oldest "
            f"{seconds(status.lateness(oldest_due))} late (more than --max-backlog-age "
            f"{max_backlog_age:g})"
        )
    age = status.pending_age
    if age is not None and age.total_seconds() > max_backlog_age:
        return (
            f"{status.backlog.pending_events} events not yet matched, the oldest for "
            f"{seconds(age)} (more than --max-backlog-age {max_backlog_age:g})"
        )
    return None
