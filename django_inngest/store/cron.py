"""Cron schedules: keeping the stored schedules in step with the declared ones, and firing each
tick's run exactly once across workers.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from django_inngest import killpoints
from django_inngest.core.events import PreparedEvent
from django_inngest.core.flow import RunPlan
from django_inngest.models import CronSchedule, CronTick
from django_inngest.store._sql import alias, atomic, db_connection, db_datetime, table_name
from django_inngest.store.dialect import notify
from django_inngest.store.events import insert_events
from django_inngest.store.flow import Intake, Routes

ScheduleKey = tuple[str, str, str]
"""(function id, cron as written, zone name): one cron trigger of one function."""


@dataclass(frozen=True, kw_only=True)
class ScheduleState:
    created_at: datetime
    last_tick_at: datetime | None


def sync_cron_schedules(
    declared: Iterable[ScheduleKey], *, now: datetime, apps: Collection[str] | None = None
) -> dict[ScheduleKey, ScheduleState]:
    """Make the stored schedules exactly `declared` (what a starting worker's code declares):
    keep those that exist, add the new ones, delete the rest; with `apps`, only the rest
    of those apps (another app's schedules are its own). Returns the state of each."""
    db = alias()
    wanted = set(declared)
    prefixes = None if apps is None else tuple(f"{app}-" for app in apps)
    with atomic():
        stored = {
            (row["function_id"], row["cron"], row["timezone"]): row["id"]
            for row in CronSchedule.objects.using(db).values(
                "id", "function_id", "cron", "timezone"
            )
            if prefixes is None or row["function_id"].startswith(prefixes)
        }
        gone = [row_id for key, row_id in stored.items() if key not in wanted]
        if gone:
            CronSchedule.objects.using(db).filter(id__in=gone).delete()
        CronSchedule.objects.using(db).bulk_create(
            [
                CronSchedule(function_id=key[0], cron=key[1], timezone=key[2], created_at=now)
                for key in sorted(wanted - stored.keys())
            ],
            ignore_conflicts=True,
        )
    return cron_schedule_states()


def cron_schedule_states() -> dict[ScheduleKey, ScheduleState]:
    return {
        (row["function_id"], row["cron"], row["timezone"]): ScheduleState(
            created_at=row["created_at"], last_tick_at=row["last_tick_at"]
        )
        for row in CronSchedule.objects.using(alias()).values(
            "function_id", "cron", "timezone", "created_at", "last_tick_at"
        )
    }


class TickOutcome(enum.Enum):
    FIRED = "fired"
    ALREADY_FIRED = "already fired"
    """Another worker (or an earlier pass) fired this tick."""
    SCHEDULE_GONE = "schedule gone"
    """A worker started since with code that no longer declares this schedule."""


def fire_cron_tick(
    key: ScheduleKey,
    *,
    scheduled_at: datetime,
    fire_at: datetime,
    event: PreparedEvent,
    plan: RunPlan,
    worker_id: str,
    now: datetime,
    pending: Callable[[str], bool] | None = None,
) -> TickOutcome:
    """Start the run of one tick unless it already started, in one transaction: lock the
    schedule's row (gone: a newer deploy removed it; its last tick not earlier: fired), then
    insert the unique (function, scheduled time) `CronTick` row, which two schedules of one
    function falling on one instant share. Racing workers serialize on the lock; one starts
    the run. The run is created as an event's would be after batching, rate limiting and
    debouncing, which cron runs skip (singleton, throttle, priority, concurrency, timeouts and
    cancellation apply)."""
    db = alias()
    function_id, cron, timezone = key
    with atomic():
        schedule = (
            CronSchedule.objects.using(db)
            .select_for_update()
            .filter(function_id=function_id, cron=cron, timezone=timezone)
            .values("id", "last_tick_at")
            .first()
        )
        if schedule is None:
            return TickOutcome.SCHEDULE_GONE
        if schedule["last_tick_at"] is not None and schedule["last_tick_at"] >= scheduled_at:
            return TickOutcome.ALREADY_FIRED  # even if its CronTick row was pruned since
        with db_connection().cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table_name(CronTick)} (function_id, scheduled_at, cron, fire_at, "
                f"fired_by) VALUES (%s, %s, %s, %s, %s) "
                f"ON CONFLICT (function_id, scheduled_at) DO NOTHING RETURNING id",
                [function_id, db_datetime(scheduled_at), cron, db_datetime(fire_at), worker_id],
            )
            inserted = cursor.fetchone()
        if inserted is None:
            return TickOutcome.ALREADY_FIRED
        insert_events([event], received_at=now, pending=lambda name: False)
        intake = Intake(now, Routes(pending=pending))
        intake.start(plan, [{"id": event.id, "user_id": event.user_id, "ts": event.ts}])
        run_ids = [run.id for run in intake.runs]
        intake.flush()
        CronTick.objects.using(db).filter(id=inserted[0]).update(run_id=run_ids[-1])
        CronSchedule.objects.using(db).filter(id=schedule["id"]).update(last_tick_at=scheduled_at)
        killpoints.park("cron-tick")
        notify()
    return TickOutcome.FIRED
