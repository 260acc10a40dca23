"""The cron scheduler. Every worker runs one, and `testing.drain()` does under a frozen clock.

A scheduler remembers, per cron trigger, the next tick to look at, so it reads the clock often
but queries the database only when a tick is due. Each due tick goes to
`store.fire_cron_tick`, where a unique (function, scheduled time) row lets exactly one of the
racing workers start its run. Tick arithmetic (zones, DST, jitter) lives in `core/schedule.py`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django_inngest import conf, store
from django_inngest.core import clock
from django_inngest.core.config import TriggerCron
from django_inngest.core.flow import plan_run
from django_inngest.core.function import Function
from django_inngest.core.schedule import (
    CronError,
    CronSchedule,
    jitter_offset,
    parse_cron,
    parse_go_duration,
    rfc3339,
    timer_event,
)
from django_inngest.registry import registry
from django_inngest.store import ScheduleKey, ScheduleState, TickOutcome

logger = logging.getLogger("django_inngest.scheduler")


@dataclass(frozen=True, kw_only=True)
class Declared:
    """One cron trigger of one function, as this process's code declares it."""

    function: Function
    trigger: TriggerCron
    schedule: CronSchedule
    jitter: timedelta

    @property
    def function_id(self) -> str:
        return self.function.id

    @property
    def key(self) -> ScheduleKey:
        return (self.function_id, self.trigger.cron, self.schedule.zone_name)


def declared_schedules(functions: Iterable[Function]) -> list[Declared]:
    """The cron triggers of `functions` that parse; broken ones are left to `manage.py check`."""
    default_zone = conf.get().CRON_TIMEZONE
    found = []
    for function in functions:
        for trigger in function.triggers:
            if not isinstance(trigger, TriggerCron):
                continue
            try:
                schedule = parse_cron(trigger.cron, default_zone)
                jitter = parse_go_duration(trigger.jitter) if trigger.jitter else timedelta(0)
            except (CronError, ValueError):
                logger.warning("cron trigger ignored fn=%s cron=%r", function.id, trigger.cron)
                continue
            found.append(
                Declared(function=function, trigger=trigger, schedule=schedule, jitter=jitter)
            )
    return found


@dataclass
class _Entry:
    declared: Declared
    handled_through: datetime
    """Ticks at or before this were fired, found fired, or dropped."""
    next_tick: datetime


class CronScheduler:
    """Fires the due ticks of the cron triggers of some functions, on behalf of one worker."""

    def __init__(self, functions: Iterable[Function], *, worker_id: str) -> None:
        self.worker_id = worker_id
        functions = list(functions)
        self.apps = {function.app_id for function in functions} or None
        """The apps whose schedules this code declares (other apps' are left alone); None,
        for code without functions, is every app."""
        self.declared = {item.key: item for item in declared_schedules(functions)}
        self._entries: dict[ScheduleKey, _Entry] = {}

    def start(self, now: datetime) -> None:
        """Replace the stored schedules by this code's (a worker starting), then load them.

        Schedules that this code no longer declares are deleted, so workers still running
        older code stop firing them at their next tick.
        """
        self._load(store.sync_cron_schedules(self.declared, now=now, apps=self.apps))

    def _load(self, states: dict[ScheduleKey, ScheduleState]) -> None:
        self._entries = {}
        for key, declared in self.declared.items():
            state = states.get(key)
            if state is None:
                continue
            handled = max(state.created_at, state.last_tick_at or state.created_at)
            self._entries[key] = _Entry(
                declared=declared,
                handled_through=handled,
                next_tick=declared.schedule.next_after(handled),
            )

    @property
    def active(self) -> bool:
        return bool(self._entries)

    @property
    def watched(self) -> int:
        """How many schedules this scheduler fires."""
        return len(self._entries)

    def next_due(self) -> datetime | None:
        """When the earliest tick this scheduler watches falls due."""
        return min((entry.next_tick for entry in self._entries.values()), default=None)

    def tick(self, now: datetime, *, only: Collection[str] | None = None) -> int:
        """Fire what is due at `now`; returns how many runs this worker started.

        Only the latest due tick of each schedule is considered: after downtime, one missed
        tick fires (`CRON_CATCH_UP`), never a backlog. With `only`, the schedules of other
        function ids are left as they are.
        """
        settings = conf.get()
        grace = timedelta(seconds=settings.CRON_GRACE_SECONDS)
        started = 0
        for key, entry in list(self._entries.items()):
            if entry.next_tick > now:
                continue
            if only is not None and key[0] not in only:
                continue
            declared = entry.declared
            latest = declared.schedule.latest_at_or_before(now)
            late = now - latest > grace
            if late and not settings.CRON_CATCH_UP:
                logger.info(
                    "cron tick missed and dropped fn=%s scheduled=%s",
                    declared.function_id,
                    rfc3339(latest),
                )
            else:
                outcome = self._fire(declared, latest, now)
                if outcome is TickOutcome.SCHEDULE_GONE:
                    logger.warning(
                        "cron schedule removed by a newer deploy; no longer firing it "
                        "fn=%s cron=%r",
                        declared.function_id,
                        declared.trigger.cron,
                    )
                    del self._entries[key]
                    continue
                if outcome is TickOutcome.FIRED:
                    started += 1
                    logger.info(
                        "cron tick fired fn=%s scheduled=%s catch_up=%s",
                        declared.function_id,
                        rfc3339(latest),
                        late,
                    )
            entry.handled_through = latest
            entry.next_tick = declared.schedule.next_after(latest)
        return started

    def _fire(self, declared: Declared, scheduled_at: datetime, now: datetime) -> TickOutcome:
        planned = scheduled_at
        if declared.jitter:
            planned += jitter_offset(
                f"{declared.function_id}:{rfc3339(scheduled_at)}", declared.jitter
            )
        fire_at = max(planned, now)
        event = timer_event(
            cron=declared.trigger.cron,
            scheduled_at=scheduled_at,
            fire_at=fire_at,
            now_ms=clock.now_ms(),
        )
        seen_as = store.event_map(
            {
                "id": event.id,
                "user_id": event.user_id,
                "name": event.name,
                "data": event.data,
                "ts": event.ts,
            }
        )
        return store.fire_cron_tick(
            declared.key,
            scheduled_at=scheduled_at,
            fire_at=fire_at,
            event=event,
            plan=plan_run(
                declared.function,
                seen_as,
                event.id,
                priority_bound=conf.get().PRIORITY_RANGE,
            ),
            worker_id=self.worker_id,
            now=now,
            pending=registry.listens_to,
        )


def fire_due_ticks(
    functions: Iterable[Function],
    *,
    now: datetime,
    worker_id: str,
    only: Collection[str] | None = None,
) -> int:
    """Sync the schedules of `functions` and fire what is due at `now` (`testing.drain()`),
    only for the function ids in `only` when given."""
    scheduler = CronScheduler(functions, worker_id=worker_id)
    if not scheduler.declared:
        return 0
    scheduler.start(now)
    return scheduler.tick(now, only=only)


@dataclass(frozen=True, kw_only=True)
class CronStatus:
    """What `inngest_status` shows for one cron trigger."""

    function_id: str
    cron: str
    zone: str
    next_tick: datetime
    """In the schedule's zone."""
    last_tick: datetime | None
    """The scheduled time of the latest tick fired, in the schedule's zone."""


def cron_status(functions: Iterable[Function], *, now: datetime) -> list[CronStatus]:
    states = store.cron_schedule_states()
    found = []
    for declared in declared_schedules(functions):
        state = states.get(declared.key)
        last = state.last_tick_at if state else None
        schedule = declared.schedule
        found.append(
            CronStatus(
                function_id=declared.function_id,
                cron=declared.trigger.cron,
                zone=schedule.zone_name,
                next_tick=schedule.to_local(schedule.next_after(now)),
                last_tick=schedule.to_local(last) if last else None,
            )
        )
    return found
