"""Every write, lock and transaction of the engine, in modules by concept; import from here.

Transactions are short and never span user code: claim, checkpoint and end each take one.
Every write that advances a run first checks that the writer still holds the run's lease
(`lease_owner = me`), so a worker whose lease expired, or whose run was cancelled, drops its
work. Due times use the engine clock; lease expiry uses the database's clock on PostgreSQL.
"""

# The modules, lowest first: _sql, events, concurrency, checkpoints, runs, flow, matching, claim,
# cron. Each imports only from those listed before it, so they cannot import in a cycle.
from django_inngest.store._sql import (
    CHANNEL,
    EVENT_ID_TTL,
    EVENTS,
    QUEUE,
    RUN,
    alias,
    from_ms,
    is_postgresql,
    notify,
    write_turn,
)
from django_inngest.store.checkpoints import StepWrite, load_memos, save_step, save_steps, time_out
from django_inngest.store.claim import (
    ClaimedRun,
    LostRun,
    PickUp,
    claim,
    heartbeat,
    lose_lease,
    lost_runs,
    next_due_at,
    pick_up,
    pick_up_event,
    release,
    return_expired_leases,
)
from django_inngest.store.concurrency import release_parked_with_room
from django_inngest.store.cron import (
    ScheduleKey,
    ScheduleState,
    TickOutcome,
    cron_schedule_states,
    fire_cron_tick,
    sync_cron_schedules,
)
from django_inngest.store.events import (
    described_event,
    event_map,
    event_value,
    has_pending_events,
    insert_events,
)
from django_inngest.store.flow import Planner
from django_inngest.store.matching import FanOut, Route, fan_out
from django_inngest.store.runs import (
    BATCH_RUN_WINDOW,
    Pruned,
    RunEnd,
    active_runs,
    cancel_run,
    end_run,
    end_runs,
    ended_pending,
    prune,
    record_cancellation,
    rerun,
    retry_run,
    run_ids_of_event,
    suspend_run,
)

__all__ = [
    "BATCH_RUN_WINDOW",
    "CHANNEL",
    "EVENTS",
    "EVENT_ID_TTL",
    "QUEUE",
    "RUN",
    "ClaimedRun",
    "FanOut",
    "LostRun",
    "PickUp",
    "Planner",
    "Pruned",
    "Route",
    "RunEnd",
    "ScheduleKey",
    "ScheduleState",
    "StepWrite",
    "TickOutcome",
    "active_runs",
    "alias",
    "cancel_run",
    "claim",
    "cron_schedule_states",
    "described_event",
    "end_run",
    "end_runs",
    "ended_pending",
    "event_map",
    "event_value",
    "fan_out",
    "fire_cron_tick",
    "from_ms",
    "has_pending_events",
    "heartbeat",
    "insert_events",
    "is_postgresql",
    "load_memos",
    "lose_lease",
    "lost_runs",
    "next_due_at",
    "notify",
    "pick_up",
    "pick_up_event",
    "prune",
    "record_cancellation",
    "release",
    "release_parked_with_room",
    "rerun",
    "retry_run",
    "return_expired_leases",
    "run_ids_of_event",
    "save_step",
    "save_steps",
    "suspend_run",
    "sync_cron_schedules",
    "time_out",
    "write_turn",
]
