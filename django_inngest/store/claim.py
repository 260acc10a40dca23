"""Claiming due runs under a lease (firing due timers on the way, parking runs whose concurrency
key is full), and the leases themselves: heartbeats, expiry and release.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Min, Q, QuerySet

from django_inngest.core.engine import FINAL_STEP_STATUSES, Memo
from django_inngest.core.events import Event as EventValue
from django_inngest.core.flow import RunPlan
from django_inngest.models import (
    Event,
    FunctionRun,
    QueueItem,
    RunStatus,
    RunStep,
)
from django_inngest.store import postgresql
from django_inngest.store._sql import (
    RUN,
    alias,
    atomic,
    db_connection,
    from_ms,
    table_name,
)
from django_inngest.store.checkpoints import load_memos
from django_inngest.store.concurrency import admit, free_slots
from django_inngest.store.dialect import dialect, notify
from django_inngest.store.events import event_map, event_value
from django_inngest.store.fleet import seen
from django_inngest.store.flow import (
    NO_ROUTING,
    Intake,
    Lease,
    LeasedRun,
    Planner,
    Route,
    Routing,
    fire_timers,
    routing_of,
)
from django_inngest.store.matching import FanOut, fan_out_in_transaction

# --- claiming ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ClaimedRun:
    run_id: str
    function_id: str
    attempt: int
    events: list[EventValue]
    event_rows: list[dict[str, Any]]
    memos: dict[str, Memo]
    priority: int = 0
    lease_losses: int = 0
    """Times in a row its lease was lost without progress: a worker runs such a run alone."""


#: What `lease_due_items` returns of each item (and its score, last).
CLAIMED = (
    "id",
    "kind",
    "run_id",
    "ref",
    "priority",
    "ckey1",
    "climit1",
    "ckey2",
    "climit2",
    "lease_losses",
)


def claim(
    worker_id: str,
    *,
    limit: int,
    now: datetime,
    lease_seconds: float,
    routing: Routing = NO_ROUTING,
    serves: Collection[str] | None = None,
    queues: frozenset[str] | None = None,
) -> list[ClaimedRun]:
    """Lease up to `limit` due runs to `worker_id`, in score order, in one transaction.
    With `function_ids` (`testing.drain(functions=...)`), only runs of those functions are
    leased; timers are fired whatever their function.

    Due timers taken on the way fire here (debounce, batch, start and finish timeouts), their
    runs planned by `routing`. A run whose concurrency key is saturated is parked until a slot
    frees instead of being leased. Items `routing.priority_window()` ahead in score order are
    looked at. With `serves`, only runs of those functions are leased (timers fire
    whatever their function).
    With `queues`, runs of tasks in other queues are left to others.
    """
    priority_window = routing.priority_window()
    horizon = now + timedelta(seconds=priority_window)
    ready = QueueItem.objects.using(alias()).filter(
        lease_expires_at__isnull=True, parked_on__isnull=True
    )
    if queues is not None:
        ready = ready.filter(Q(queue__isnull=True) | Q(queue__in=queues))
    if not dialect().NOTIFIES and not (
        _served(ready, serves).filter(score__lte=horizon, available_at__lte=now).exists()
    ):
        return []  # a polling worker's idle pass reads without taking the write lock
    with atomic():
        started = _lease(
            worker_id,
            limit,
            now,
            lease_seconds,
            routing,
            priority_window,
            serves,
            queues,
        )
    return _claimed(started)


@dataclass(frozen=True, kw_only=True)
class PickUp:
    fanned: FanOut
    claimed: list[ClaimedRun]


def pick_up(
    routing: Routing | Route,
    worker_id: str,
    *,
    limit: int,
    now: datetime,
    lease_seconds: float,
    fan_out_limit: int,
    planner: Planner | None = None,
    pending: Callable[[str], bool] | None = None,
    priority_window: int = 0,
    serves: Collection[str] | None = None,
    queues: frozenset[str] | None = None,
) -> PickUp:
    """`fan_out` then `claim`, in one transaction. When no run was already due, the runs the
    match creates and this worker has slots for are leased to it as they are created; the
    other workers are woken only for runs left queued. `planner`, `pending` and
    `priority_window` are for a bare `route` function (`routing_of`)."""
    routing = routing_of(routing, planner, pending, priority_window)
    priority_window = routing.priority_window()
    # A full worker leases nothing, so its event match need not look for runs already due.
    lease = None
    if limit > 0:
        lease = Lease(
            worker_id=worker_id,
            slots=limit,
            seconds=lease_seconds,
            priority_window=priority_window,
            serves=None if serves is None else frozenset(serves),
            queues=queues,
        )
    with atomic():
        fanned = fan_out_in_transaction(routing, now=now, limit=fan_out_limit, lease=lease)
        leased = {leased.run.id for leased in fanned.leased}
        queued = set(fanned.run_ids) - leased
        started = _Started(runs=[], priorities={})
        if limit > len(leased) and (fanned.backlog or queued or not fanned.events):
            started = _lease(
                worker_id,
                limit - len(leased),
                now,
                lease_seconds,
                routing,
                priority_window,
                serves,
                queues,
            )
        if fanned.resumed or queued - set(started.run_ids):
            notify()
    claimed = [_created(leased, leased.event_rows) for leased in fanned.leased]
    return PickUp(fanned=fanned, claimed=claimed + _claimed(started))


def _created(leased: LeasedRun, rows: list[dict[str, Any]]) -> ClaimedRun:
    """A run leased as it was created, with its events `rows`: it has no steps yet."""
    return ClaimedRun(
        run_id=leased.run.id,
        function_id=leased.run.function_id,
        attempt=leased.run.attempt,
        events=[event_value(row) for row in rows],
        event_rows=rows,
        memos={},
        priority=leased.priority,
    )


def pick_up_event(
    event: Mapping[str, Any],
    routing: Routing | Route,
    worker_id: str,
    *,
    limit: int,
    now: datetime,
    lease_seconds: float,
    planner: Planner | None = None,
    pending: Callable[[str], bool] | None = None,
    priority_window: int = 0,
    serves: Collection[str] | None = None,
    queues: frozenset[str] | None = None,
) -> list[ClaimedRun] | None:
    """`pick_up` of one event known from its notification (`described_event`), in one
    statement on PostgreSQL: the event is taken and its runs created and leased to
    `worker_id` together, without reading it first.

    Only when that is all `pick_up` would do: each run it starts can start now, without flow
    control before or at the start (batch, rate limit, debounce, a sender's event id,
    singleton, throttle, concurrency), within `limit`; no run waits for an event of its name;
    no run is already due. None otherwise, or when another worker took the event first:
    nothing was written and `pick_up` does the rest. Nor when a function it starts is not
    among those the worker `serves`, or when an app synced since `route` last looked.
    Nor when a run would be of a task queue the worker leaves to others (`queues`).
    `planner`, `pending` and `priority_window` are for a bare `route` function (`routing_of`).
    """
    if not dialect().NOTIFIES:
        return None
    routing = routing_of(routing, planner, pending, priority_window)
    seen.routed = None
    plans = list(routing.route(event_map(event), event["id"]))
    routed_with = seen.routed
    if (
        len(plans) > limit
        or (serves is not None and any(plan.function_id not in serves for plan in plans))
        or from_ms(event["ts"]) > now
        or any(not _starts_at_once(plan, event) for plan in plans)
        or (queues is not None and any(plan.queue not in (None, *queues) for plan in plans))
    ):
        return None
    priority_window = routing.priority_window()
    lease = Lease(
        worker_id=worker_id, slots=limit, seconds=lease_seconds, priority_window=priority_window
    )
    intake = Intake(now, routing, lease)
    for plan in plans:
        intake.start(plan, [event])
    taken = postgresql.take_notified_event(
        event,
        horizon=now + timedelta(seconds=priority_window),
        now=now,
        routed_with=routed_with,
        rows=intake.rows(),
        lease_seconds=lease_seconds,
    )
    if taken is None:
        return None
    # The event as stored (key order as a stored event's), as `pick_up` would read it.
    stored = {**event, "data": json.loads(taken[0])}
    return [_created(leased, [stored]) for leased in intake.leased]


def _starts_at_once(plan: RunPlan, event: Mapping[str, Any]) -> bool:
    return bool(plan.skipped) or (  # a skipped function writes only why
        plan.batch is None
        and plan.rate_limit is None
        and plan.debounce is None
        and not (plan.dedupe and event["user_id"])
        and plan.singleton is None
        and plan.throttle is None
        and not plan.concurrency
        and all(spec.event_name != event["name"] for spec in plan.pauses)
    )


@dataclass(frozen=True, kw_only=True)
class _Started:
    runs: list[dict[str, Any]]
    priorities: dict[str, int]
    losses: dict[str, int] = field(default_factory=dict)

    @property
    def run_ids(self) -> list[str]:
        return list(self.priorities)


def _lease(
    worker_id: str,
    limit: int,
    now: datetime,
    lease_seconds: float,
    routing: Routing,
    priority_window: int,
    serves: Collection[str] | None = None,
    queues: frozenset[str] | None = None,
) -> _Started:
    """`claim`'s writes, inside the caller's transaction."""
    db = alias()
    statements = dialect()
    horizon = now + timedelta(seconds=priority_window)
    items: list[dict[str, Any]] = []
    for _ in range(2):  # a second look picks up the runs that fired timers just created
        if len(items) >= limit:
            break
        rows = statements.lease_due_items(
            worker_id,
            limit=limit - len(items),
            now=now,
            horizon=horizon,
            lease_seconds=lease_seconds,
            serves=serves,
            queues=queues,
        )
        # RETURNING does not keep the subquery's order; both backends return score in a form
        # that sorts by time (a datetime, or SQLite's fixed-width text).
        taken = [
            dict(zip(CLAIMED, row, strict=False))
            for row in sorted(rows, key=lambda r: (r[-1], r[0]))
        ]
        timers = [item for item in taken if item["kind"] != QueueItem.Kind.RUN]
        runs = _one_suspect([item for item in taken if item["kind"] == QueueItem.Kind.RUN], items)
        items += admit(runs)
        if not timers:
            break
        fire_timers(timers, Intake(now, routing))
    priorities = {item["run_id"]: item["priority"] for item in items}
    losses = {item["run_id"]: item["lease_losses"] for item in items if item["lease_losses"]}
    if not priorities:
        return _Started(runs=[], priorities={})
    runs = statements.start_runs(list(priorities), now)
    ended = set(priorities) - {run["id"] for run in runs}
    if ended:  # a queue item outlived its run: nothing to do but drop it
        QueueItem.objects.using(db).filter(run_id__in=ended).delete()
    QueueItem.objects.using(db).bulk_create(
        [
            QueueItem(
                run_id=run["id"],
                kind=QueueItem.Kind.FINISH_TIMEOUT,
                available_at=now + run["finish_timeout"],
                score=now + run["finish_timeout"],
            )
            for run in runs
            if run["finish_timeout"] is not None and run["started_at"] is None
        ]
    )
    return _Started(runs=runs, priorities=priorities, losses=losses)


def _one_suspect(taken: list[dict[str, Any]], kept: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most one run that lost its lease before goes to one worker, which runs it alone:
    the others taken with it go back to the queue at once (no loss counted), so that one
    run killing its worker again does not take the others down with it."""
    seen = any(item["lease_losses"] for item in kept)
    extra = []
    for item in taken:
        if item["lease_losses"]:
            if seen:
                extra.append(item)
            seen = True
    if not extra:
        return taken  # the usual case: no statement more
    QueueItem.objects.using(alias()).filter(id__in=[item["id"] for item in extra]).update(
        lease_owner=None, lease_expires_at=None
    )
    return [item for item in taken if item not in extra]


def _served(items: QuerySet[QueueItem], serves: Collection[str] | None) -> QuerySet[QueueItem]:
    if serves is None:
        return items
    return items.filter(~Q(kind=RUN) | Q(run__function_id__in=list(serves)))


def _claimed(started: _Started) -> list[ClaimedRun]:
    """The leased runs with their events and memos, read after the commit."""
    runs, priorities = started.runs, started.priorities
    if not runs:
        return []
    unread = [run for run in runs if "events" not in run]  # read after the commit
    if unread:
        _read_events(unread)
    # A run that never started has no steps, unless it reruns another run from a step.
    memos = load_memos([run["id"] for run in runs if run["started_at"] or run["original_run_id"]])
    claimed = []
    order = {run_id: index for index, run_id in enumerate(priorities)}
    for run in sorted(runs, key=lambda r: order[r["id"]]):
        rows = run["events"]
        claimed.append(
            ClaimedRun(
                run_id=run["id"],
                function_id=run["function_id"],
                attempt=run["attempt"],
                events=[event_value(row) for row in rows],
                event_rows=[dict(row) for row in rows],
                memos=memos.get(run["id"], {}),
                priority=priorities[run["id"]],
                lease_losses=started.losses.get(run["id"], 0),
            )
        )
    return claimed


def _read_events(runs: list[dict[str, Any]]) -> None:
    """The events of runs whose start did not return them (SQLite's `start_runs`)."""
    event_ids = list({event_id for run in runs for event_id in run["event_ids"]})
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"SELECT id, user_id, name, data, ts FROM {table_name(Event)} "
            f"WHERE id IN ({', '.join(['%s'] * len(event_ids))})",
            event_ids,
        )
        found = {
            row[0]: dict(zip(("id", "user_id", "name", "data", "ts"), row, strict=True))
            for row in cursor.fetchall()
        }
    for row in found.values():
        row["data"] = json.loads(row["data"])
    for run in runs:
        run["events"] = [found[event_id] for event_id in run["event_ids"] if event_id in found]


# --- leases -----------------------------------------------------------------------------------


def heartbeat(worker_id: str, lease_seconds: float) -> int:
    """Extend every lease `worker_id` holds, in one statement."""
    expiry_sql, expiry_params = dialect().lease_expiry(lease_seconds)
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"UPDATE {table_name(QueueItem)} SET lease_expires_at = {expiry_sql} "
            f"WHERE lease_owner = %s",
            [*expiry_params, worker_id],
        )
        return int(cursor.rowcount)


def return_expired_leases(
    worker_id: str | None = None, *, max_losses: int | None = None, lease_seconds: float = 30.0
) -> int:
    """Put back in the queue the runs whose worker stopped renewing their lease, counting the
    loss (see `_lose`); a run lost `max_losses` times without progress is leased to
    `worker_id` instead, for it to end (`lost_runs`). Returns how many leases expired."""
    now_sql, now_params = dialect().database_now()
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {table_name(QueueItem)} WHERE lease_expires_at < {now_sql} LIMIT 1",
            now_params,
        )
        if cursor.fetchone() is None:
            return 0  # the usual case: a read, not a write transaction, every sweep
    keeper = worker_id if max_losses is not None else None
    with atomic():
        returned = _lose(
            f"lease_expires_at < {now_sql}", now_params, keeper, max_losses or 0, lease_seconds
        )
    return len(returned)


def lose_lease(run_id: str, worker_id: str, *, max_losses: int, lease_seconds: float) -> int | None:
    """Give back a run `worker_id` could not go on with (its database writes failed), counting
    the loss; at `max_losses` losses without progress, keep it to end it (`lost_runs`). The
    run's number of losses, None when `worker_id` no longer held it."""
    with atomic():
        lost = _lose(
            "run_id = %s AND kind = %s AND lease_owner = %s",
            [run_id, RUN, worker_id],
            worker_id,
            max_losses,
            lease_seconds,
        )
    return lost[0][1] if lost else None


def _lose(
    where: str,
    params: list[Any],
    keeper: str | None,
    max_losses: int,
    lease_seconds: float,
) -> list[tuple[str | None, int]]:
    """Take the lease of the queue items `where` selects, inside the caller's transaction.

    A run item's loss is counted: one more when the run has no more step results than at its
    previous loss, else the count starts again at one, so that only losses in a row without
    progress add up (and a checkpoint costs nothing extra). An item whose count reaches
    `max_losses` is leased to `keeper` instead of being returned; the rest go back to the
    queue. Returns (run id, losses) per item."""
    queue, step = table_name(QueueItem), table_name(RunStep)
    final = sorted(FINAL_STEP_STATUSES)
    expiry_sql, expiry_params = dialect().lease_expiry(lease_seconds)
    kept, kept_params = ("x.losses >= %s", [max(max_losses, 1)]) if keeper else ("1 = 0", [])
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"UPDATE {queue} SET lease_losses = x.losses, steps_at_loss = x.steps, "
            f"lease_owner = CASE WHEN {kept} THEN %s ELSE NULL END, "
            f"lease_expires_at = CASE WHEN {kept} THEN {expiry_sql} ELSE NULL END "
            f"FROM (SELECT id, steps, CASE WHEN kind <> %s THEN 0 "
            f"WHEN steps = steps_at_loss THEN lease_losses + 1 ELSE 1 END AS losses "
            f"FROM (SELECT q.id, q.kind, q.lease_losses, q.steps_at_loss, "
            f"(SELECT count(*) FROM {step} s WHERE s.run_id = q.run_id "
            f"AND s.status IN ({', '.join(['%s'] * len(final))})) AS steps "
            f"FROM {queue} q WHERE {where}) AS counted) "
            f"AS x WHERE {queue}.id = x.id AND {where} "
            f"RETURNING {queue}.run_id, {queue}.ckey1, {queue}.ckey2, {queue}.lease_owner, "
            f"{queue}.lease_losses",
            [
                *kept_params,
                keeper,
                *kept_params,
                *expiry_params,
                RUN,
                *final,
                *params,
                *params,
            ],
        )
        rows = cursor.fetchall()
    requeue([(run_id, ckey1, ckey2) for run_id, ckey1, ckey2, owner, _ in rows if owner is None])
    return [(run_id, losses) for run_id, _, _, _, losses in rows]


@dataclass(frozen=True, kw_only=True)
class LostRun:
    """A run lost too often, held by the worker that is to end it."""

    claimed: ClaimedRun
    losses: int
    last_step: str | None
    """The id of the last step it completed."""


def lost_runs(worker_id: str, max_losses: int) -> list[LostRun]:
    """The runs `worker_id` holds because they were lost `max_losses` times without progress."""
    db = alias()
    items = dict(
        QueueItem.objects.using(db)
        .filter(lease_owner=worker_id, kind=RUN, lease_losses__gte=max_losses)
        .values_list("run_id", "lease_losses")
    )
    if not items:
        return []
    runs = list(
        FunctionRun.objects.using(db)
        .filter(id__in=list(items))
        .values("id", "function_id", "attempt", "event_ids")
    )
    rows = {
        row["id"]: row
        for row in Event.objects.using(db)
        .filter(id__in={event_id for run in runs for event_id in run["event_ids"]})
        .values("id", "user_id", "name", "data", "ts")
    }
    last_steps: dict[str, str] = {}
    for run_id, step_id in (
        RunStep.objects.using(db)
        .filter(run_id__in=list(items), status__in=FINAL_STEP_STATUSES)
        .order_by("ended_at", "id")
        .values_list("run_id", "step_id")
    ):
        last_steps[run_id] = step_id  # the latest wins
    lost = []
    for run in runs:
        events = [dict(rows[event_id]) for event_id in run["event_ids"] if event_id in rows]
        claimed = ClaimedRun(
            run_id=run["id"],
            function_id=run["function_id"],
            attempt=run["attempt"],
            events=[event_value(row) for row in events],
            event_rows=events,
            memos={},
        )
        lost.append(
            LostRun(claimed=claimed, losses=items[run["id"]], last_step=last_steps.get(run["id"]))
        )
    return lost


def release(worker_id: str) -> int:
    """Give back every run `worker_id` holds (a worker shutting down)."""
    with atomic():
        with db_connection().cursor() as cursor:
            cursor.execute(
                f"UPDATE {table_name(QueueItem)} SET lease_owner = NULL, lease_expires_at = NULL "
                f"WHERE lease_owner = %s RETURNING run_id, ckey1, ckey2",
                [worker_id],
            )
            returned = cursor.fetchall()
        requeue(returned)
    return len(returned)


def requeue(returned: Sequence[tuple[str | None, str | None, str | None]]) -> None:
    """Runs whose lease went back: queued again, their concurrency slots free."""
    run_ids = [run_id for run_id, _, _ in returned if run_id]
    if run_ids:
        FunctionRun.objects.using(alias()).filter(id__in=run_ids, status=RunStatus.RUNNING).update(
            status=RunStatus.QUEUED
        )
    free_slots(key for _, *keys in returned for key in keys)


def next_due_at(priority_window: int = 0, serves: Collection[str] | None = None) -> datetime | None:
    """About when the next ready queue item becomes due (read from the ready index); with
    `serves`, of runs of those functions and timers."""
    ready = _served(QueueItem.objects.using(alias()), serves).filter(
        lease_expires_at__isnull=True, parked_on__isnull=True
    )
    first: datetime | None = ready.aggregate(first=Min("score"))["first"]
    if first is None or not priority_window:
        return first
    window = timedelta(seconds=priority_window)
    due: datetime | None = ready.filter(score__lte=first + window).aggregate(
        due=Min("available_at")
    )["due"]
    return max(due or first, first - window)
