"""Flow control before a run exists and the runs it creates: `Intake`, the locked state rows of
rate limits, throttles, debounces, batches and singletons, event-id de-duplication, and the
timers (debounce, batch, start and finish timeouts) that claims fire.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from django.db.models import Model
from django.db.models.fields import AutoFieldMixin
from django.db.models.sql import InsertQuery

from django_inngest import killpoints
from django_inngest.core import ids
from django_inngest.core.errors import RunEndedError, RunNotFoundError
from django_inngest.core.flow import Gcra, RunPlan
from django_inngest.models import (
    ENDED_STATUSES,
    Event,
    EventSkip,
    FlowState,
    FunctionRun,
    IdempotencyKey,
    Pause,
    QueueItem,
    RunStatus,
)
from django_inngest.store._sql import (
    EVENT_ID_TTL,
    alias,
    db_connection,
    db_datetime,
    from_ms,
    table_name,
)
from django_inngest.store.checkpoints import pause_row
from django_inngest.store.dialect import dialect
from django_inngest.store.events import event_map
from django_inngest.store.runs import cancel_run

Route = Callable[[Mapping[str, Any], str], Iterable[RunPlan]]
"""(event, its id) -> the plans of the runs it starts."""
Planner = Callable[[str, Mapping[str, Any], str, bool], RunPlan | None]
"""(function id, first event, its id, batched) -> the plan of a run, None if unknown."""


class Routing(Protocol):
    """What the store asks of the runtime about functions, through one object: a worker's
    `fleet.Catalog`, or `Routes` of the process's registry (`testing.drain`)."""

    def route(self, event: Mapping[str, Any], event_id: str) -> Iterable[RunPlan]:
        """The plans of the runs an event starts."""

    def planner(
        self, function_id: str, event: Mapping[str, Any], event_id: str, batched: bool
    ) -> RunPlan | None:
        """The plan of a run a timer starts (a debounce or a batch), None if unknown."""

    def listens_to(self, name: str) -> bool:
        """Whether events of `name` need matching (stored as pending)."""

    def priority_window(self) -> int:
        """The largest priority factor in use, in seconds: how far ahead claims look."""


def _no_routes(event: Mapping[str, Any], event_id: str) -> Iterable[RunPlan]:
    return ()


@dataclass(frozen=True, kw_only=True)
class Routes:
    """A `Routing` of loose functions (`store.fan_out(route, ...)` in tests and scripts); by
    default no event starts a run, no timer plans one, and every event needs matching."""

    routes: Route = _no_routes
    plans: Planner | None = None
    pending: Callable[[str], bool] | None = None
    window: int = 0

    def route(self, event: Mapping[str, Any], event_id: str) -> Iterable[RunPlan]:
        return self.routes(event, event_id)

    def planner(
        self, function_id: str, event: Mapping[str, Any], event_id: str, batched: bool
    ) -> RunPlan | None:
        return None if self.plans is None else self.plans(function_id, event, event_id, batched)

    def listens_to(self, name: str) -> bool:
        return self.pending is None or self.pending(name)

    def priority_window(self) -> int:
        return self.window


NO_ROUTING = Routes()


def routing_of(
    routing: Routing | Route,
    planner: Planner | None = None,
    pending: Callable[[str], bool] | None = None,
    priority_window: int = 0,
) -> Routing:
    """`routing`, or the `Routes` of a bare `route` function and the other loose functions."""
    # callable(), not isinstance() of a runtime-checkable protocol: this is on the worker's
    # hot path, and such an isinstance costs tens of microseconds.
    if not callable(routing):
        return routing
    return Routes(routes=routing, plans=planner, pending=pending, window=priority_window)


@dataclass(frozen=True, kw_only=True)
class Lease:
    """Up to `slots` new runs that can start now are leased, as they are created, to the
    worker creating them (`pick_up`)."""

    worker_id: str
    slots: int
    seconds: float
    priority_window: int
    serves: frozenset[str] | None = None
    """The functions the worker has the code of (None: all); only their runs are leased."""
    queues: frozenset[str] | None = None
    """The queues of tasks the worker takes (None: all); runs without a queue always."""

    def takes(self, queue: str | None) -> bool:
        return queue is None or self.queues is None or queue in self.queues


@dataclass(frozen=True, kw_only=True)
class LeasedRun:
    run: FunctionRun
    priority: int
    event_rows: list[dict[str, Any]]


class Intake:
    """Runs created in one transaction: written in bulk, with their queue items and pauses."""

    def __init__(
        self,
        now: datetime,
        routing: Routing,
        lease: Lease | None = None,
        lease_expires_at: datetime | None = None,
    ) -> None:
        self.now = now
        self.routing = routing
        self.lease = lease
        self.lease_expires_at = lease_expires_at
        self.leased: list[LeasedRun] = []
        self.runs: list[FunctionRun] = []
        self.items: list[QueueItem] = []
        self.pauses: list[Pause] = []
        self.skips: list[EventSkip] = []
        self.unwritten: set[str] = set()
        self.created: list[str] = []
        """The ids of the runs queued (or leased) so far."""

    def start(self, plan: RunPlan, rows: Sequence[Mapping[str, Any]]) -> None:
        """Singleton, then create and queue the run (throttle, priority, timers)."""
        if plan.skipped:
            self.skip(plan, rows)
            return
        holder_state = None
        if plan.singleton is not None:
            key, mode = plan.singleton
            holder_state = _lock_state(key, "singleton", self.now)
            holder = holder_state.data.get("run_id")
            if holder and self._active(holder):
                if mode == "skip":
                    self._skipped(plan, rows, holder)
                    return
                self.flush()
                with contextlib.suppress(RunEndedError, RunNotFoundError):
                    cancel_run(holder, now=self.now, pending=self.routing.listens_to)
        run = self._add(plan, rows)
        if holder_state is not None:
            holder_state.data = {"run_id": run.id}
            holder_state.updated_at = self.now
            holder_state.save(using=alias())

    def skip(self, plan: RunPlan, rows: Sequence[Mapping[str, Any]]) -> None:
        """Record, with each event, that the function was skipped for it and why."""
        self.skips += [
            EventSkip(
                event_id=row["id"],
                function_id=plan.function_id,
                reason=plan.skipped,
                created_at=self.now,
            )
            for row in rows
        ]

    def _active(self, run_id: str) -> bool:
        return run_id in self.unwritten or (
            FunctionRun.objects.using(alias()).filter(id=run_id).active().exists()
        )

    def _skipped(self, plan: RunPlan, rows: Sequence[Mapping[str, Any]], holder: str) -> None:
        self.runs.append(
            FunctionRun(
                id=ids.ulid(),
                function_id=plan.function_id,
                status=RunStatus.SKIPPED,
                event_id=rows[0]["id"],
                event_ids=[row["id"] for row in rows],
                created_at=self.now,
                ended_at=self.now,
                output={"reason": "singleton", "existing_run_id": holder},
            )
        )

    def _add(self, plan: RunPlan, rows: Sequence[Mapping[str, Any]]) -> FunctionRun:
        now = self.now
        run = FunctionRun(
            id=ids.ulid(),
            function_id=plan.function_id,
            status=RunStatus.QUEUED,
            event_id=rows[0]["id"],
            event_ids=[row["id"] for row in rows],
            created_at=now,
            finish_timeout=plan.finish_timeout,
        )
        available = max(now, from_ms(rows[0]["ts"])) if len(rows) == 1 else now
        if plan.throttle is not None:
            available = max(available, apply_gcra(plan.throttle, now, drop=False) or now)
        keys: list[tuple[str | None, int | None]] = [*plan.concurrency[:2]]
        keys += [(None, None)] * (2 - len(keys))
        item = QueueItem(
            run=run,
            available_at=available,
            priority=plan.priority,
            score=available - timedelta(seconds=plan.priority),
            ckey1=keys[0][0],
            climit1=keys[0][1],
            ckey2=keys[1][0],
            climit2=keys[1][1],
            queue=plan.queue,
        )
        self.items.append(item)
        lease = self.lease
        if (
            lease is not None
            and len(self.leased) < lease.slots
            and available <= now
            and not plan.concurrency  # a key's slots are counted when claiming
            and (lease.serves is None or plan.function_id in lease.serves)
            and lease.takes(plan.queue)
        ):
            run.status, run.started_at = RunStatus.RUNNING, now
            item.lease_owner, item.lease_expires_at = lease.worker_id, self.lease_expires_at
            if plan.finish_timeout is not None:
                due = now + plan.finish_timeout
                self.items.append(
                    QueueItem(
                        run=run, kind=QueueItem.Kind.FINISH_TIMEOUT, available_at=due, score=due
                    )
                )
            self.leased.append(
                LeasedRun(run=run, priority=plan.priority, event_rows=[dict(r) for r in rows])
            )
        elif plan.start_timeout is not None:
            due = now + plan.start_timeout
            self.items.append(
                QueueItem(run=run, kind=QueueItem.Kind.START_TIMEOUT, available_at=due, score=due)
            )
        # Cancel listeners: events received after the run's own event (its order of receipt,
        # found when the row does not carry it).
        after = rows[0].get("receipt_order")
        self.pauses += [pause_row(run.id, spec, after) for spec in plan.pauses]
        self.runs.append(run)
        self.unwritten.add(run.id)
        return run

    def flush(self, *also: tuple[str, list[Any]]) -> None:
        """Write what was added, and run the statements `also` after it; on PostgreSQL all of
        it as one statement (foreign keys are checked at commit)."""
        self._find_receipts()
        statements = [
            _insert_sql(model, rows)
            for model, rows in (
                (FunctionRun, self.runs),
                (QueueItem, self.items),
                (Pause, self.pauses),
                (EventSkip, self.skips),
            )
            if rows
        ]
        statements += also
        if statements:
            dialect().write_together(statements)
        self.created += [
            run.id for run in self.runs if run.status in (RunStatus.QUEUED, RunStatus.RUNNING)
        ]
        self.runs, self.items, self.pauses, self.skips = [], [], [], []
        self.unwritten.clear()

    def _find_receipts(self) -> None:
        """The order of receipt of the events whose runs' listeners do not have it yet."""
        unknown = [pause for pause in self.pauses if pause.after_receipt is None]
        if not unknown:
            return
        event_of = {run.id: run.event_id for run in self.runs}
        found = dict(
            Event.objects.using(alias())
            .filter(id__in={event_of.get(pause.run_id) for pause in unknown})
            .values_list("id", "receipt_order")
        )
        for pause in unknown:
            pause.after_receipt = found.get(event_of.get(pause.run_id) or "") or 0

    def rows(self) -> list[Model]:
        """What was added and not written yet."""
        return [*self.runs, *self.items, *self.pauses, *self.skips]


def _insert_sql(model: type[Model], rows: Sequence[Model]) -> tuple[str, list[Any]]:
    """The INSERT that `bulk_create` would send for `rows` (ids set, or made by the database)."""
    fields = [
        field
        for field in model._meta.concrete_fields
        if not (field.primary_key and isinstance(field, AutoFieldMixin))
    ]
    # Django has no public way to get an INSERT's SQL without running it, and the rows go in
    # one statement with others (`write_together`); InsertQuery is how `bulk_create` makes it.
    query = InsertQuery(model)
    query.insert_values(fields, list(rows))
    [(sql, params)] = query.get_compiler(alias()).as_sql()
    return sql, list(params)


# --- flow-control state -----------------------------------------------------------------------


def _lock_state(key: str, kind: str, now: datetime) -> FlowState:
    """The state row of `key` (created when missing), locked until the transaction ends.

    On PostgreSQL the row another worker created (so ours was not inserted) may be gone again
    by the time it is read, flushed by a third worker: then it is looked for, or made, again.
    """
    db = alias()
    # No effect on SQLite, whose transaction holds the database's write lock.
    query = FlowState.objects.using(db).filter(key=key).select_for_update()
    while True:
        state = query.first()
        if state is not None:
            return state
        FlowState.objects.using(db).bulk_create(
            [FlowState(key=key, kind=kind, data={}, updated_at=now)], ignore_conflicts=True
        )


def _try_lock_state(key: str) -> FlowState | Literal[False] | None:
    """The state row locked; None when it does not exist; False when another holds it."""
    query = FlowState.objects.using(alias()).filter(key=key)
    if not db_connection().features.has_select_for_update_skip_locked:
        return query.first()  # SQLite: the transaction holds the database's write lock
    locked = query.select_for_update(skip_locked=True).first()
    if locked is None and query.exists():
        return False
    return locked


def apply_gcra(rate: Gcra, now: datetime, *, drop: bool) -> datetime | None:
    """When one more request may start (and count it); with `drop`, None when over the limit."""
    state = _lock_state(rate.key, "gcra", now)
    tat = datetime.fromisoformat(state.data["tat"]) if state.data.get("tat") else None
    start, new_tat = rate.decide(tat, now)
    if drop and start > now:
        return None
    state.data = {"tat": new_tat.isoformat()}
    state.updated_at = now
    state.save(using=alias())
    return start


def debounce_event(plan: RunPlan, row: Mapping[str, Any], now: datetime) -> None:
    """Keep the latest event and push the firing back (never past first event + timeout)."""
    spec = plan.debounce
    assert spec is not None
    state = _lock_state(spec.key, "debounce", now)
    data = state.data
    if data.get("event_ts") is not None and row["ts"] < data["event_ts"]:
        return  # an older event does not replace a newer one
    first = datetime.fromisoformat(data["first_at"]) if data.get("first_at") else now
    fire_at = now + spec.period
    if spec.timeout is not None:
        fire_at = min(fire_at, first + spec.timeout)
    state.data = {
        "function_id": plan.function_id,
        "event_id": row["id"],
        "event_ts": row["ts"],
        "first_at": first.isoformat(),
        "fire_at": fire_at.isoformat(),
    }
    state.updated_at = now
    state.save(using=alias())
    killpoints.park("debounce")
    _set_timer(QueueItem.Kind.DEBOUNCE, spec.key, fire_at)


def _set_timer(kind: str, ref: str, at: datetime) -> None:
    db = alias()
    if not QueueItem.objects.using(db).filter(kind=kind, ref=ref).update(available_at=at, score=at):
        QueueItem.objects.using(db).create(kind=kind, ref=ref, available_at=at, score=at)


def add_to_batch(plan: RunPlan, row: Mapping[str, Any], intake: Intake) -> None:
    spec = plan.batch
    assert spec is not None
    state = _lock_state(spec.key, "batch", intake.now)
    event_ids = list(state.data.get("event_ids", []))
    if row["id"] in event_ids:
        return
    event_ids.append(row["id"])
    if len(event_ids) >= spec.max_size:
        _flush_batch(state, plan.function_id, event_ids, intake)
        return
    first = state.data.get("first_at") or intake.now.isoformat()
    state.data = {"function_id": plan.function_id, "event_ids": event_ids, "first_at": first}
    state.updated_at = intake.now
    state.save(using=alias())
    if len(event_ids) == 1:
        _set_timer(QueueItem.Kind.BATCH, spec.key, intake.now + spec.timeout)


def _flush_batch(state: FlowState, function_id: str, event_ids: list[str], intake: Intake) -> None:
    """Start one run with the batch's events, in arrival order, and forget the batch."""
    db = alias()
    QueueItem.objects.using(db).filter(kind=QueueItem.Kind.BATCH, ref=state.key).delete()
    state.delete(using=db)
    killpoints.park("batch-flush")
    found = {
        row["id"]: row
        for row in Event.objects.using(db)
        .filter(id__in=event_ids)
        .values("id", "user_id", "name", "data", "ts")
    }
    rows = [found[event_id] for event_id in event_ids if event_id in found]
    if not rows:
        return
    plan = intake.routing.planner(function_id, event_map(rows[0]), rows[0]["id"], True)
    if plan is not None:
        intake.start(plan, rows)


def first_in_24h(key: str, now: datetime) -> bool:
    """Record `key` for 24 h; False when it is already recorded and not expired."""
    table = table_name(IdempotencyKey)
    with db_connection().cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (key, expires_at) VALUES (%s, %s) "
            f"ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
            f"WHERE {table}.expires_at <= %s RETURNING key",
            [key, db_datetime(now + EVENT_ID_TTL), db_datetime(now)],
        )
        return cursor.fetchone() is not None


# --- timers -----------------------------------------------------------------------------------


def fire_timers(timers: list[dict[str, Any]], intake: Intake) -> None:
    """Due debounces and batches start their run; timeouts cancel runs that are late."""
    db = alias()
    now = intake.now
    for item in timers:
        kind = item["kind"]
        done = True
        if kind in (QueueItem.Kind.DEBOUNCE, QueueItem.Kind.BATCH):
            state = _try_lock_state(item["ref"])
            if state is False:
                done = False  # an event is updating it; try again next time
            elif state is not None and kind == QueueItem.Kind.DEBOUNCE:
                done = _fire_debounce(state, item, intake)
            elif state is not None:
                _flush_batch(state, state.data["function_id"], state.data["event_ids"], intake)
        elif kind == QueueItem.Kind.START_TIMEOUT:
            run = (
                FunctionRun.objects.using(db)
                .filter(id=item["run_id"])
                .values("started_at", "status")
                .first()
            )
            if run and run["started_at"] is None and run["status"] not in ENDED_STATUSES:
                _cancel_quietly(item["run_id"], intake)
        elif kind == QueueItem.Kind.FINISH_TIMEOUT:
            executing = (
                QueueItem.objects.using(db)
                .filter(run_id=item["run_id"], kind=QueueItem.Kind.RUN, lease_owner__isnull=False)
                .exists()
            )
            if executing:  # what is in flight may still finish the run in time
                later = now + timedelta(seconds=1)
                QueueItem.objects.using(db).filter(id=item["id"]).update(
                    available_at=later, score=later, lease_owner=None, lease_expires_at=None
                )
                continue
            _cancel_quietly(item["run_id"], intake)
        if done:
            QueueItem.objects.using(db).filter(id=item["id"]).delete()
        else:
            QueueItem.objects.using(db).filter(id=item["id"]).update(
                lease_owner=None, lease_expires_at=None
            )
    intake.flush()


def _fire_debounce(state: FlowState, item: Mapping[str, Any], intake: Intake) -> bool:
    """Start the debounced run with the last event; False when its time moved meanwhile."""
    db = alias()
    data = state.data
    fire_at = datetime.fromisoformat(data["fire_at"])
    if fire_at > intake.now:
        _set_timer(QueueItem.Kind.DEBOUNCE, state.key, fire_at)
        return False
    state.delete(using=db)
    row = (
        Event.objects.using(db)
        .filter(id=data["event_id"])
        .values("id", "user_id", "name", "data", "ts", "receipt_order")
        .first()
    )
    if row is not None:
        plan = intake.routing.planner(data["function_id"], event_map(row), row["id"], False)
        if plan is not None:
            intake.start(plan, [row])
    return True


def _cancel_quietly(run_id: str, intake: Intake) -> None:
    intake.flush()
    with contextlib.suppress(RunEndedError, RunNotFoundError):
        cancel_run(run_id, now=intake.now, pending=intake.routing.listens_to)
