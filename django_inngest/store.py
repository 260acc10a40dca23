"""Every write, lock and transaction of the engine.

Transactions are short and never span user code: claim, checkpoint and end each take one.
Every write that advances a run first checks that the writer still holds the run's lease
(`lease_owner = me`), so a worker whose lease expired, or whose run was cancelled, drops its
work. Due times use the engine clock; lease expiry uses the database's clock on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Count, F, Min, Value
from django.db.models.functions import Coalesce

from django_inngest import conf
from django_inngest.core import ids
from django_inngest.core.engine import (
    FINAL_STEP_STATUSES,
    LeaseLost,
    Memo,
    PauseSpec,
    StepRecord,
    StepStatus,
    pause_result,
)
from django_inngest.core.errors import RunEndedError, RunNotFoundError
from django_inngest.core.events import (
    FUNCTION_FINISHED,
    FUNCTION_INVOKED,
    PreparedEvent,
    invocation_of,
    run_ended_events,
)
from django_inngest.core.events import Event as EventValue
from django_inngest.core.expressions import compile_expression, event_index_keys
from django_inngest.core.flow import Gcra, RunPlan
from django_inngest.models import (
    ENDED_STATUSES,
    Cancellation,
    CronSchedule,
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

CHANNEL = "django_inngest"
EVENT_ID_TTL = timedelta(hours=24)
RUN = QueueItem.Kind.RUN.value


def alias() -> str:
    return conf.get().DATABASE


def _connection() -> BaseDatabaseWrapper:
    return connections[alias()]


def is_postgresql() -> bool:
    return _connection().vendor == "postgresql"


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def _table(model: Any) -> str:
    return str(_connection().ops.quote_name(model._meta.db_table))


def _column(name: str) -> str:
    return str(_connection().ops.quote_name(name))


def _when(value: datetime | None) -> Any:
    """A datetime as a raw-SQL parameter, stored the way the ORM stores it."""
    return _connection().ops.adapt_datetimefield_value(value)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _lease_expiry_sql(lease_seconds: float) -> tuple[str, list[Any]]:
    """SQL for "now + lease" on the database's clock (SQLite: this machine's clock)."""
    if is_postgresql():
        return "clock_timestamp() + %s * interval '1 second'", [lease_seconds]
    return "%s", [_when(datetime.now(UTC) + timedelta(seconds=lease_seconds))]


def _db_now_sql() -> tuple[str, list[Any]]:
    if is_postgresql():
        return "clock_timestamp()", []
    return "%s", [_when(datetime.now(UTC))]


#: What a notification on CHANNEL says: runs may be due, or events wait to be fanned out.
QUEUE, EVENTS = "queue", "events"


def notify(about: str = QUEUE) -> None:
    """Wake PostgreSQL workers when the current transaction commits."""
    if is_postgresql():
        with _connection().cursor() as cursor:
            cursor.execute(f"NOTIFY {CHANNEL}, '{about}'")


# --- events -----------------------------------------------------------------------------------


def insert_events(
    prepared: Sequence[PreparedEvent],
    *,
    received_at: datetime,
    pending: Callable[[str], bool] | None = None,
    ignore_existing: bool = False,
) -> None:
    """Store events through the caller's connection, inside the caller's transaction.

    With `ignore_existing`, an event whose id is already stored is skipped: ids derived from
    a sender's seed make a retried send a no-op, even when two copies arrive at once.
    """
    if not prepared:
        return
    rows = [
        Event(
            id=event.id,
            user_id=event.user_id,
            name=event.name,
            data=event.data,
            ts=event.ts,
            received_at=received_at,
            pending=pending(event.name) if pending else True,
        )
        for event in prepared
    ]
    wake = any(row.pending for row in rows)
    if is_postgresql():
        for start in range(0, len(rows), 1000):  # within the bound-parameter limit
            _insert_events_in_one_statement(
                rows[start : start + 1000], wake=wake and not start, ignore_existing=ignore_existing
            )
        return
    Event.objects.using(alias()).bulk_create(rows, ignore_conflicts=ignore_existing)
    if wake:
        notify(EVENTS)


def _insert_events_in_one_statement(
    rows: Sequence[Event], *, wake: bool, ignore_existing: bool
) -> None:
    """PostgreSQL: the INSERT and the NOTIFY as one statement, so `send_sync` inside the
    caller's transaction costs one round trip."""
    params: list[Any] = []
    for row in rows:
        params += [row.id, row.user_id, row.name, _json(row.data), row.ts]
        params += [_when(row.received_at), row.pending]
    values = ", ".join(["(%s, %s, %s, CAST(%s AS jsonb), %s, %s, %s)"] * len(rows))
    insert = (
        f"INSERT INTO {_table(Event)} (id, user_id, name, data, ts, received_at, pending) "
        f"VALUES {values}{' ON CONFLICT (id) DO NOTHING' if ignore_existing else ''}"
    )
    with _connection().cursor() as cursor:
        if wake:
            cursor.execute(
                f"WITH stored AS ({insert}) SELECT pg_notify('{CHANNEL}', '{EVENTS}')", params
            )
        else:
            cursor.execute(insert, params)


def event_value(row: Mapping[str, Any]) -> EventValue:
    """The `Event` a handler sees for a stored row."""
    return EventValue(
        name=row["name"], data=row["data"], id=row["user_id"] or row["id"], ts=row["ts"]
    )


def event_map(row: Mapping[str, Any]) -> dict[str, Any]:
    """The object expressions see as `event`."""
    return {
        "name": row["name"],
        "data": row["data"],
        "id": row["user_id"] or row["id"],
        "ts": row["ts"],
        "user": {},
    }


@dataclass(frozen=True, kw_only=True)
class FanOut:
    events: int
    runs: int
    resumed: int = 0


Route = Callable[[Mapping[str, Any], str], Iterable[RunPlan]]
Planner = Callable[[str, Mapping[str, Any], str, bool], RunPlan | None]
"""(function id, first event, its id, batched) -> the plan of a run, None if unknown."""


class _Intake:
    """Runs created in one transaction: written in bulk, with their queue items and pauses."""

    def __init__(
        self, now: datetime, planner: Planner, pending: Callable[[str], bool] | None
    ) -> None:
        self.now = now
        self.planner = planner
        self.pending = pending
        self.runs: list[FunctionRun] = []
        self.items: list[QueueItem] = []
        self.pauses: list[Pause] = []
        self.unwritten: set[str] = set()
        self.created = 0

    def start(self, plan: RunPlan, rows: Sequence[Mapping[str, Any]]) -> None:
        """Singleton, then create and queue the run (throttle, priority, timers)."""
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
                    cancel_run(holder, now=self.now, pending=self.pending)
        run = self._add(plan, rows)
        if holder_state is not None:
            holder_state.data = {"run_id": run.id}
            holder_state.updated_at = self.now
            holder_state.save(using=alias())

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
            available = max(available, _apply_gcra(plan.throttle, now, drop=False) or now)
        keys: list[tuple[str | None, int | None]] = [*plan.concurrency[:2]]
        keys += [(None, None)] * (2 - len(keys))
        self.items.append(
            QueueItem(
                run=run,
                available_at=available,
                priority=plan.priority,
                score=available - timedelta(seconds=plan.priority),
                ckey1=keys[0][0],
                climit1=keys[0][1],
                ckey2=keys[1][0],
                climit2=keys[1][1],
            )
        )
        if plan.start_timeout is not None:
            due = now + plan.start_timeout
            self.items.append(
                QueueItem(run=run, kind=QueueItem.Kind.START_TIMEOUT, available_at=due, score=due)
            )
        self.pauses += [_pause_row(run.id, spec) for spec in plan.pauses]
        self.runs.append(run)
        self.unwritten.add(run.id)
        return run

    def flush(self) -> None:
        db = alias()
        FunctionRun.objects.using(db).bulk_create(self.runs)
        QueueItem.objects.using(db).bulk_create(self.items)
        Pause.objects.using(db).bulk_create(self.pauses)
        self.created += sum(1 for run in self.runs if run.status == RunStatus.QUEUED)
        self.runs, self.items, self.pauses = [], [], []
        self.unwritten.clear()


def fan_out(
    route: Route,
    *,
    now: datetime,
    limit: int = 200,
    pending: Callable[[str], bool] | None = None,
    planner: Planner | None = None,
) -> FanOut:
    """Match pending events against functions and waiting runs, in one transaction.

    For each event, in order (SPEC §3): for each function it starts (`route`), batch, rate
    limit (including idempotency), debounce, event-id de-duplication (a sender's id starts each
    function at most once in 24 hours), singleton, then create and queue the run with its
    cancellation listeners; then resume the runs waiting for the event and cancel those it
    cancels. `planner` plans the runs of flushed batches.
    """
    db = alias()
    if not has_pending_events():
        # One read instead of a locking transaction (on SQLite, the write lock) per idle pass.
        return FanOut(events=0, runs=0)
    with transaction.atomic(using=db):
        query = Event.objects.using(db).pending().order_by("id")
        if is_postgresql():
            query = query.select_for_update(skip_locked=True)
        rows = list(query.values("id", "user_id", "name", "data", "ts")[:limit])
        if not rows:
            return FanOut(events=0, runs=0)
        intake = _Intake(now, planner or _no_planner, pending)
        has_pauses: dict[str, bool] = {}
        resumed = 0
        for row in rows:
            for plan in route(event_map(row), row["id"]):
                _take(plan, row, intake)
                for spec in plan.pauses:
                    has_pauses[spec.event_name] = True
            name = row["name"]
            if name not in has_pauses:
                has_pauses[name] = Pause.objects.using(db).filter(event_name=name).exists()
            if has_pauses[name]:
                intake.flush()  # listeners created above must be visible to this event
                resumed += _match_pauses(row, now, pending)
        intake.flush()
        Event.objects.using(db).filter(id__in=[row["id"] for row in rows]).update(pending=False)
        if intake.created or resumed:
            notify()
    return FanOut(events=len(rows), runs=intake.created, resumed=resumed)


def _no_planner(function_id: str, event: Mapping[str, Any], event_id: str, batched: bool) -> None:
    return None


def _take(plan: RunPlan, row: Mapping[str, Any], intake: _Intake) -> None:
    """The flow-control steps before a run exists, for one function and one event."""
    now = intake.now
    if plan.batch is not None:
        _add_to_batch(plan, row, intake)
        return
    if plan.rate_limit is not None and _apply_gcra(plan.rate_limit, now, drop=True) is None:
        if row["name"] == FUNCTION_INVOKED:
            _fail_invocation(row, "invoked function is rate limited", now, intake.pending)
        return
    if plan.debounce is not None:
        _debounce(plan, row, now)
        return
    if (
        plan.dedupe
        and row["user_id"]
        and not _first_in_24h(ids.stable_hash(plan.function_id, row["user_id"]), now)
    ):
        return
    intake.start(plan, [row])


# --- flow-control state -----------------------------------------------------------------------


def _lock_state(key: str, kind: str, now: datetime) -> FlowState:
    """The state row of `key` (created when missing), locked until the transaction ends."""
    db = alias()
    query = FlowState.objects.using(db).filter(key=key)
    if is_postgresql():
        query = query.select_for_update()
    state = query.first()
    if state is None:
        FlowState.objects.using(db).bulk_create(
            [FlowState(key=key, kind=kind, data={}, updated_at=now)], ignore_conflicts=True
        )
        state = query.get()
    return state


def _try_lock_state(key: str) -> FlowState | Literal[False] | None:
    """The state row locked; None when it does not exist; False when another holds it."""
    query = FlowState.objects.using(alias()).filter(key=key)
    if not is_postgresql():
        return query.first()
    locked = query.select_for_update(skip_locked=True).first()
    if locked is None and query.exists():
        return False
    return locked


def _apply_gcra(rate: Gcra, now: datetime, *, drop: bool) -> datetime | None:
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


def _debounce(plan: RunPlan, row: Mapping[str, Any], now: datetime) -> None:
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
    _set_timer(QueueItem.Kind.DEBOUNCE, spec.key, fire_at)


def _set_timer(kind: str, ref: str, at: datetime) -> None:
    db = alias()
    if not QueueItem.objects.using(db).filter(kind=kind, ref=ref).update(available_at=at, score=at):
        QueueItem.objects.using(db).create(kind=kind, ref=ref, available_at=at, score=at)


def _add_to_batch(plan: RunPlan, row: Mapping[str, Any], intake: _Intake) -> None:
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


def _flush_batch(state: FlowState, function_id: str, event_ids: list[str], intake: _Intake) -> None:
    """Start one run with the batch's events, in arrival order, and forget the batch."""
    db = alias()
    QueueItem.objects.using(db).filter(kind=QueueItem.Kind.BATCH, ref=state.key).delete()
    state.delete(using=db)
    found = {
        row["id"]: row
        for row in Event.objects.using(db)
        .filter(id__in=event_ids)
        .values("id", "user_id", "name", "data", "ts")
    }
    rows = [found[event_id] for event_id in event_ids if event_id in found]
    if not rows:
        return
    plan = intake.planner(function_id, event_map(rows[0]), rows[0]["id"], True)
    if plan is not None:
        intake.start(plan, rows)


def _fail_invocation(
    row: Mapping[str, Any], message: str, now: datetime, pending: Callable[[str], bool] | None
) -> None:
    """Give the invoking step an error now, as if the invoked run had failed."""
    correlation = invocation_of(row)
    if correlation is None:
        return
    finished = {
        "id": ids.ulid(),
        "user_id": "",
        "name": FUNCTION_FINISHED,
        "ts": int(now.timestamp() * 1000),
        "data": {
            "correlation_id": correlation,
            "_inngest": {"status": RunStatus.FAILED},
            "error": {"name": "Error", "message": message, "stack": None},
        },
    }
    _match_pauses(finished, now, pending)


def _pause_row(run_id: str, spec: PauseSpec) -> Pause:
    return Pause(
        kind=spec.kind,
        run_id=run_id,
        hashed_id=spec.hashed_id,
        event_name=spec.event_name,
        expression=spec.expression or "",
        match_key=spec.match_key,
        trigger_event=spec.trigger_event,
        after_id=spec.after_id,
        expires_at=spec.expires_at,
    )


def _match_pauses(
    row: Mapping[str, Any], now: datetime, pending: Callable[[str], bool] | None
) -> int:
    """Resume the runs waiting for this event and cancel the runs it cancels; the first event
    to consume a wait wins, whatever the number of workers."""
    db = alias()
    incoming = event_map(row)
    keys = event_index_keys(incoming)
    # Two index lookups joined, rather than one OR that SQLite would answer by a scan.
    waiting = Pause.objects.using(db).filter(
        event_name=row["name"], after_id__lt=row["id"], expires_at__gt=now
    )
    fields = ("id", "kind", "run_id", "hashed_id", "expression", "trigger_event")
    candidates = (
        waiting.filter(match_key__in=keys)
        .values(*fields)
        .union(waiting.filter(match_key__isnull=True).values(*fields), all=True)
        .order_by("id")
    )
    resumed = 0
    for pause in candidates:
        if pause["expression"] and not compile_expression(pause["expression"]).matches(
            pause["trigger_event"], incoming
        ):
            continue
        if pause["kind"] == Pause.Kind.CANCEL:
            with contextlib.suppress(RunEndedError, RunNotFoundError):
                cancel_run(pause["run_id"], now=now, pending=pending)
            continue
        deleted, _ = Pause.objects.using(db).filter(id=pause["id"]).delete()
        if not deleted:
            continue  # another event got there first
        status, output, error = pause_result(pause["kind"], incoming)
        RunStep.objects.using(db).filter(
            run_id=pause["run_id"], hashed_id=pause["hashed_id"], status=StepStatus.WAITING
        ).update(status=status, output=output, error=error, attempts=1, ended_at=now)
        _resume(pause["run_id"], now)
        resumed += 1
    return resumed


def _resume(run_id: str, now: datetime) -> None:
    """Make a suspended run due now (a worker holding it will see the result itself)."""
    db = alias()
    item = QueueItem.objects.using(db).filter(run_id=run_id, kind=RUN, lease_owner__isnull=True)
    for priority in item.values_list("priority", flat=True):
        item.update(available_at=now, score=now - timedelta(seconds=priority))
    FunctionRun.objects.using(db).filter(
        id=run_id, status__in=[RunStatus.WAITING, RunStatus.SLEEPING]
    ).update(status=RunStatus.QUEUED)


def _first_in_24h(key: str, now: datetime) -> bool:
    """Record `key` for 24 h; False when it is already recorded and not expired."""
    table = _table(IdempotencyKey)
    with _connection().cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (key, expires_at) VALUES (%s, %s) "
            f"ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
            f"WHERE {table}.expires_at <= %s RETURNING key",
            [key, _when(now + EVENT_ID_TTL), _when(now)],
        )
        return cursor.fetchone() is not None


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


_CLAIMED = ("id", "kind", "run_id", "ref", "priority", "ckey1", "climit1", "ckey2", "climit2")


def claim(
    worker_id: str,
    *,
    limit: int,
    now: datetime,
    lease_seconds: float,
    planner: Planner | None = None,
    pending: Callable[[str], bool] | None = None,
    priority_window: int = 0,
) -> list[ClaimedRun]:
    """Lease up to `limit` due runs to `worker_id`, in score order, in one transaction.

    Due timers taken on the way fire here (debounce, batch, start and finish timeouts). A run
    whose concurrency key is saturated is parked until a slot frees instead of being leased.
    `priority_window` is the largest priority factor in use: items that far ahead in score
    order are looked at.
    """
    db = alias()
    queue = _table(QueueItem)
    expiry_sql, expiry_params = _lease_expiry_sql(lease_seconds)
    lock = " FOR UPDATE SKIP LOCKED" if is_postgresql() else ""
    horizon = now + timedelta(seconds=priority_window)
    if not is_postgresql() and not (
        QueueItem.objects.using(db)
        .filter(lease_expires_at__isnull=True, parked_on__isnull=True)
        .filter(score__lte=horizon, available_at__lte=now)
        .exists()
    ):
        return []  # SQLite: an idle pass reads without taking the write lock
    with transaction.atomic(using=db):
        items: list[dict[str, Any]] = []
        for _ in range(2):  # a second look picks up the runs that fired timers just created
            with _connection().cursor() as cursor:
                cursor.execute(
                    f"UPDATE {queue} SET lease_owner = %s, lease_expires_at = {expiry_sql} "
                    f"WHERE id IN (SELECT id FROM {queue} WHERE lease_expires_at IS NULL "
                    f"AND parked_on IS NULL AND score <= %s AND available_at <= %s "
                    f"ORDER BY score, id LIMIT %s{lock}) "
                    f"RETURNING {', '.join(_CLAIMED)}, score",
                    [
                        worker_id,
                        *expiry_params,
                        _when(horizon),
                        _when(now),
                        limit - len(items),
                    ],
                )
                # RETURNING does not keep the subquery's order; both backends return score in
                # a form that sorts by time (a datetime, or SQLite's fixed-width text).
                taken = [
                    dict(zip(_CLAIMED, row, strict=False))
                    for row in sorted(cursor.fetchall(), key=lambda r: (r[-1], r[0]))
                ]
            timers = [item for item in taken if item["kind"] != QueueItem.Kind.RUN]
            items += _admit([item for item in taken if item["kind"] == QueueItem.Kind.RUN])
            if not timers or len(items) >= limit:
                break
            _fire_timers(timers, _Intake(now, planner or _no_planner, pending))
        priorities = {item["run_id"]: item["priority"] for item in items}
        run_ids = list(priorities)
        if not run_ids:
            return []
        runs = _start_runs(run_ids, now)
        ended = set(run_ids) - {run["id"] for run in runs}
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
    if not is_postgresql():
        event_ids = {event_id for run in runs for event_id in run["event_ids"]}
        found = {
            row["id"]: row
            for row in Event.objects.using(db)
            .filter(id__in=event_ids)
            .values("id", "user_id", "name", "data", "ts")
        }
        for run in runs:
            run["events"] = [found[event_id] for event_id in run["event_ids"] if event_id in found]
    # A run that never started has no steps, unless it reruns another run from a step.
    memos = load_memos([run["id"] for run in runs if run["started_at"] or run["original_run_id"]])
    claimed = []
    for run in sorted(runs, key=lambda r: run_ids.index(r["id"])):
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
            )
        )
    return claimed


def _start_runs(run_ids: list[str], now: datetime) -> list[dict[str, Any]]:
    """Mark the claimed runs that have not ended RUNNING; return them with `started_at` as
    it was before (None: first start) and, on PostgreSQL, their events (in one statement)."""
    db = alias()
    fields = (
        "id",
        "function_id",
        "event_ids",
        "attempt",
        "started_at",
        "original_run_id",
        "finish_timeout",
    )
    if not is_postgresql():
        runs = list(
            FunctionRun.objects.using(db)
            .filter(id__in=run_ids)
            .exclude(status__in=ENDED_STATUSES)
            .values(*fields)
        )
        FunctionRun.objects.using(db).filter(id__in=[run["id"] for run in runs]).update(
            status=RunStatus.RUNNING, started_at=Coalesce(F("started_at"), Value(now))
        )
        return runs
    run, event = _table(FunctionRun), _table(Event)
    ended = "', '".join(sorted(ENDED_STATUSES))
    with _connection().cursor() as cursor:
        cursor.execute(
            f"UPDATE {run} r SET status = %s, started_at = COALESCE(r.started_at, %s) "
            f"FROM (SELECT id, started_at FROM {run} WHERE id = ANY(%s) "
            f"AND status NOT IN ('{ended}') FOR UPDATE) AS before WHERE r.id = before.id "
            f"RETURNING r.id, r.function_id, r.event_ids, r.attempt, before.started_at, "
            f"r.original_run_id, r.finish_timeout, (SELECT coalesce(jsonb_agg(jsonb_build_object("
            f"'id', e.id, 'user_id', e.user_id, 'name', e.name, 'data', e.data, 'ts', e.ts)), "
            # = ANY(ARRAY(...)): a join with the JSON array's elements would scan the table.
            f"'[]') FROM {event} e WHERE e.id = ANY(ARRAY("
            f"SELECT jsonb_array_elements_text(r.event_ids))))",
            [RunStatus.RUNNING, _when(now), run_ids],
        )
        runs = [dict(zip((*fields, "events"), row, strict=True)) for row in cursor.fetchall()]
    for started in runs:  # Django reads jsonb as text
        started["event_ids"] = json.loads(started["event_ids"])
        found = {row["id"]: row for row in json.loads(started["events"])}
        started["events"] = [found[i] for i in started["event_ids"] if i in found]
    return runs


# --- concurrency ------------------------------------------------------------------------------


def _keys_of(item: Mapping[str, Any]) -> list[tuple[str, int]]:
    return [
        (item[key], item[limit])
        for key, limit in (("ckey1", "climit1"), ("ckey2", "climit2"))
        if item.get(key)
    ]


def _lock_keys(keys: Iterable[str], now: datetime) -> None:
    """Lock the rows of concurrency keys, in one order, so slot counts cannot race."""
    wanted = sorted(set(keys))
    if not wanted:
        return
    db = alias()
    locking = FlowState.objects.using(db).filter(key__in=wanted).order_by("key")
    if is_postgresql():
        locking = locking.select_for_update()
    found = set(locking.values_list("key", flat=True))
    missing = [key for key in wanted if key not in found]
    if missing:
        FlowState.objects.using(db).bulk_create(
            [FlowState(key=key, kind="concurrency", data={}, updated_at=now) for key in missing],
            ignore_conflicts=True,
        )
        if is_postgresql():
            list(locking.filter(key__in=missing).values_list("key", flat=True))


def _executing(keys: Sequence[str], excluding: Sequence[int]) -> dict[str, int]:
    """How many leased (executing) items hold each key, not counting `excluding`."""
    db = alias()
    counts: dict[str, int] = dict.fromkeys(keys, 0)
    for column in ("ckey1", "ckey2"):
        rows = (
            QueueItem.objects.using(db)
            .filter(**{f"{column}__in": keys}, lease_owner__isnull=False)
            .exclude(id__in=excluding)
            .values(column)
            .annotate(n=Count("id"))
            .values_list(column, "n")
        )
        for key, n in rows:
            counts[key] += n
    return counts


def _admit(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep the items whose concurrency keys have room; park the others on a full key."""
    keyed = [item for item in items if _keys_of(item)]
    if not keyed:
        return items
    now = datetime.now(UTC)
    keys = sorted({key for item in keyed for key, _ in _keys_of(item)})
    _lock_keys(keys, now)
    counts = _executing(keys, [item["id"] for item in items])
    admitted, parked = [], []
    for item in items:
        full = next((key for key, limit in _keys_of(item) if counts[key] >= limit), None)
        if full is None:
            admitted.append(item)
            for key, _ in _keys_of(item):
                counts[key] += 1
        else:
            parked.append((item["id"], full))
    for item_id, key in parked:
        QueueItem.objects.using(alias()).filter(id=item_id).update(
            parked_on=key, lease_owner=None, lease_expires_at=None
        )
    return admitted


def _free_slots(keys: Iterable[str | None]) -> None:
    """A run stopped executing: let the oldest run parked on each of its keys go."""
    wanted = sorted({key for key in keys if key})
    if not wanted:
        return
    db = alias()
    with transaction.atomic(using=db):
        _lock_keys(wanted, datetime.now(UTC))
        released = False
        for key in wanted:
            oldest = list(
                QueueItem.objects.using(db)
                .filter(parked_on=key)
                .order_by("score", "id")
                .values_list("id", flat=True)[:1]
            )
            released = (
                bool(QueueItem.objects.using(db).filter(id__in=oldest).update(parked_on=None))
                or released
            )
        if released:
            notify()


def release_parked_with_room() -> int:
    """A safety net run with each sweep: release parked runs whose key has free slots."""
    db = alias()
    released = 0
    with transaction.atomic(using=db):
        keys = [
            key
            for key in QueueItem.objects.using(db)
            .filter(parked_on__isnull=False)
            .values_list("parked_on", flat=True)
            .distinct()
            if key
        ]
        if not keys:
            return 0
        _lock_keys(keys, datetime.now(UTC))
        counts = _executing(keys, [])
        for key in keys:
            parked = list(
                QueueItem.objects.using(db)
                .filter(parked_on=key)
                .order_by("score", "id")
                .values("id", "ckey1", "climit1", "ckey2", "climit2")[:100]
            )
            if not parked:
                continue
            limit = dict(_keys_of(parked[0]))[key]
            room = max(0, limit - counts[key])
            chosen = [item["id"] for item in parked[:room]]
            released += QueueItem.objects.using(db).filter(id__in=chosen).update(parked_on=None)
        if released:
            notify()
    return released


# --- timers -----------------------------------------------------------------------------------


def _fire_timers(timers: list[dict[str, Any]], intake: _Intake) -> None:
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


def _fire_debounce(state: FlowState, item: Mapping[str, Any], intake: _Intake) -> bool:
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
        .values("id", "user_id", "name", "data", "ts")
        .first()
    )
    if row is not None:
        plan = intake.planner(data["function_id"], event_map(row), row["id"], False)
        if plan is not None:
            intake.start(plan, [row])
    return True


def _cancel_quietly(run_id: str, intake: _Intake) -> None:
    intake.flush()
    with contextlib.suppress(RunEndedError, RunNotFoundError):
        cancel_run(run_id, now=intake.now, pending=intake.pending)


def load_memos(run_ids: Sequence[str]) -> dict[str, dict[str, Memo]]:
    if not run_ids:
        return {}
    memos: dict[str, dict[str, Memo]] = {}
    for row in (
        RunStep.objects.using(alias())
        .filter(run_id__in=run_ids)
        .values(
            "run_id",
            "hashed_id",
            "op",
            "status",
            "output",
            "error",
            "attempts",
            "wake_at",
            "started_at",
        )
    ):
        memo = Memo(
            hashed_id=row["hashed_id"],
            op=row["op"],
            status=row["status"],
            output=row["output"],
            error=row["error"],
            attempts=row["attempts"],
            wake_at=row["wake_at"],
            started_at=row["started_at"],
        )
        memos.setdefault(row["run_id"], {})[memo.hashed_id] = memo
    return memos


# --- checkpoints ------------------------------------------------------------------------------


def save_step(
    run_id: str,
    worker_id: str,
    record: StepRecord,
    events: Sequence[PreparedEvent] = (),
    *,
    pending: Callable[[str], bool] | None = None,
) -> Memo:
    """Write a step's final result while `worker_id` holds the run; first writer wins."""
    if not events:
        outcome = save_steps([StepWrite(run_id=run_id, worker_id=worker_id, record=record)])[0]
        if isinstance(outcome, LeaseLost):
            raise outcome
        return outcome
    try:
        with transaction.atomic(using=alias()):
            insert_events(events, received_at=datetime.now(UTC), pending=pending)
            if not _insert_final_steps(
                [StepWrite(run_id=run_id, worker_id=worker_id, record=record)]
            ):
                raise _NotWritten  # the events go too
    except _NotWritten:
        return _unwritten_step(run_id, worker_id, record)
    return record.as_memo()


class _NotWritten(Exception):
    """Rolls back what was written with a step that could not be."""


@dataclass(frozen=True, kw_only=True)
class StepWrite:
    run_id: str
    worker_id: str
    record: StepRecord


def save_steps(writes: Sequence[StepWrite]) -> list[Memo | LeaseLost]:
    """`save_step` for steps of several runs at once (no events), in one statement on
    PostgreSQL and one transaction on SQLite: a step's memo, or the `LeaseLost` to raise."""
    keys = [(write.run_id, write.record.hashed_id) for write in writes]
    if len(set(keys)) < len(keys):  # one statement cannot write a row twice
        return [outcome for write in writes for outcome in save_steps([write])]
    # One statement on PostgreSQL needs no transaction of its own (BEGIN and COMMIT would be
    # two more round trips); SQLite's statements, one per step, share one.
    with contextlib.nullcontext() if is_postgresql() else transaction.atomic(using=alias()):
        written = _insert_final_steps(writes)
    outcomes: list[Memo | LeaseLost] = []
    for write, key in zip(writes, keys, strict=True):
        if key in written:
            outcomes.append(write.record.as_memo())
            continue
        try:
            outcomes.append(_unwritten_step(write.run_id, write.worker_id, write.record))
        except LeaseLost as lost:
            outcomes.append(lost)
    return outcomes


_STEP_COLUMNS = (
    "run_id, hashed_id, step_id, {index}, op, status, output, error, attempts, history, "
    "started_at, ended_at, wake_at"
)


def _insert_final_steps(writes: Sequence[StepWrite]) -> set[tuple[str, str]]:
    """Insert (or finish) each step whose run `worker_id` still holds, unless it is already
    final; returns the (run id, hashed id) of the steps written."""
    step, queue = _table(RunStep), _table(QueueItem)
    final = "', '".join(sorted(FINAL_STEP_STATUSES))
    columns = _STEP_COLUMNS.format(index=_column("index"))
    upsert = (
        f"ON CONFLICT (run_id, hashed_id) DO UPDATE SET status = excluded.status, "
        f"output = excluded.output, error = excluded.error, attempts = excluded.attempts, "
        f"ended_at = excluded.ended_at, wake_at = excluded.wake_at "
        f"WHERE {step}.status NOT IN ('{final}') RETURNING run_id, hashed_id"
    )
    held = (
        f"EXISTS (SELECT 1 FROM {queue} q WHERE q.run_id = {{run}} AND q.kind = '{RUN}' "
        f"AND q.lease_owner = {{owner}})"
    )
    written: set[tuple[str, str]] = set()
    with _connection().cursor() as cursor:
        if is_postgresql():
            row = (
                "(%s, %s, %s, %s::int, %s, %s, CAST(%s AS jsonb), CAST(%s AS jsonb), %s::int, "
                "CAST(%s AS jsonb), %s::timestamptz, %s::timestamptz, %s::timestamptz, %s)"
            )
            params: list[Any] = []
            for write in writes:
                params += [*_step_values(write.run_id, write.record), write.worker_id]
            cursor.execute(
                f"INSERT INTO {step} ({columns}) SELECT {columns} FROM (VALUES "
                f"{', '.join([row] * len(writes))}) AS v({columns}, owner) "
                f"WHERE {held.format(run='v.run_id', owner='v.owner')} {upsert}",
                params,
            )
            written.update(cursor.fetchall())
            return written
        for write in writes:
            cursor.execute(
                f"INSERT INTO {step} ({columns}) SELECT {', '.join(['%s'] * 13)} "
                f"WHERE {held.format(run='%s', owner='%s')} {upsert}",
                [*_step_values(write.run_id, write.record), write.run_id, write.worker_id],
            )
            written.update(cursor.fetchall())
    return {(run_id, hashed_id) for run_id, hashed_id in written}


def _step_values(run_id: str, record: StepRecord) -> list[Any]:
    return [
        run_id,
        record.hashed_id,
        record.step_id,
        record.index,
        record.op,
        record.status,
        _json(record.output),
        _json(record.error),
        record.attempts,
        "[]",
        _when(record.started_at),
        _when(record.ended_at),
        _when(record.wake_at),
    ]


def _unwritten_step(run_id: str, worker_id: str, record: StepRecord) -> Memo:
    """Nothing was written: either the run is no longer ours (`LeaseLost`), or another writer
    stored this step first (its memo is returned)."""
    if (
        not QueueItem.objects.using(alias())
        .filter(run_id=run_id, kind=RUN, lease_owner=worker_id)
        .exists()
    ):
        raise LeaseLost(f"run {run_id} is no longer held by {worker_id}")
    existing = load_memos([run_id]).get(run_id, {}).get(record.hashed_id)
    if existing is None or not existing.final:
        raise LeaseLost(f"step {record.step_id!r} of run {run_id} could not be written")
    return existing


def time_out(run_id: str, worker_id: str, record: StepRecord) -> Memo:
    """End a wait whose time is up, unless an event ended it first (its result is returned)."""
    db = alias()
    try:
        with transaction.atomic(using=db):
            deleted, _ = (
                Pause.objects.using(db)
                .filter(run_id=run_id, hashed_id=record.hashed_id)
                .exclude(kind=Pause.Kind.CANCEL)
                .delete()
            )
            if deleted:
                if _insert_final_steps(
                    [StepWrite(run_id=run_id, worker_id=worker_id, record=record)]
                ):
                    return record.as_memo()
                raise _NotWritten  # the pause stays
    except _NotWritten:
        return _unwritten_step(run_id, worker_id, record)
    existing = load_memos([run_id]).get(run_id, {}).get(record.hashed_id)
    if existing is None or not existing.final:
        raise LeaseLost(f"the wait {record.step_id!r} of run {run_id} was not found")
    return existing


def _write_records(run_id: str, records: Sequence[StepRecord]) -> bool:
    """Sleeping and waiting steps and failed attempts, inside the caller's transaction.

    Returns True when a step recorded as waiting has meanwhile got its result (an event came
    while the run was executing), so the run must go on now rather than at its wake time.
    """
    db = alias()
    arrived = False
    for record in records:
        existing = (
            RunStep.objects.using(db)
            .select_for_update()
            .filter(run_id=run_id, hashed_id=record.hashed_id)
            .first()
        )
        if existing is not None and existing.status in FINAL_STEP_STATUSES:
            arrived = arrived or record.status == StepStatus.WAITING
            continue
        step = existing or RunStep(
            run_id=run_id,
            hashed_id=record.hashed_id,
            step_id=record.step_id,
            index=record.index,
            op=record.op,
            started_at=record.started_at,
        )
        step.status = record.status
        step.attempts = record.attempts
        step.wake_at = record.wake_at
        if record.status == StepStatus.ERRORED and record.error is not None:
            step.error = record.error
            step.history = [
                *step.history,
                {
                    "attempt": record.attempts - 1,
                    "started_at": _iso(record.started_at),
                    "ended_at": _iso(record.ended_at),
                    "error": record.error,
                },
            ]
        step.save(using=db)
    return arrived


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- run transitions --------------------------------------------------------------------------


def _release_item(run_id: str, worker_id: str, available_at: datetime, priority: int) -> bool:
    """Give back the run's item, due at `available_at`; frees its concurrency slots."""
    with _connection().cursor() as cursor:
        cursor.execute(
            f"UPDATE {_table(QueueItem)} SET available_at = %s, score = %s, lease_owner = NULL, "
            f"lease_expires_at = NULL WHERE run_id = %s AND kind = %s AND lease_owner = %s "
            f"RETURNING ckey1, ckey2",
            [
                _when(available_at),
                _when(available_at - timedelta(seconds=priority)),
                run_id,
                RUN,
                worker_id,
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return False
    _free_slots(row)
    return True


def retry_run(
    run_id: str,
    worker_id: str,
    *,
    attempt: int,
    available_at: datetime,
    records: Sequence[StepRecord],
    priority: int = 0,
) -> bool:
    with transaction.atomic(using=alias()):
        if not _release_item(run_id, worker_id, available_at, priority):
            return False
        FunctionRun.objects.using(alias()).filter(id=run_id).update(
            status=RunStatus.QUEUED, attempt=attempt
        )
        _write_records(run_id, records)
    return True


def suspend_run(
    run_id: str,
    worker_id: str,
    *,
    wake_at: datetime,
    records: Sequence[StepRecord],
    pauses: Sequence[PauseSpec] = (),
    events: Sequence[PreparedEvent] = (),
    waiting: bool = False,
    now: datetime,
    priority: int = 0,
) -> bool:
    """Free the worker until `wake_at`, or until an event the run waits for arrives."""
    db = alias()
    with transaction.atomic(using=db):
        if not _release_item(run_id, worker_id, wake_at, priority):
            return False
        status = RunStatus.WAITING if waiting else RunStatus.SLEEPING
        if _write_records(run_id, records):
            QueueItem.objects.using(db).filter(run_id=run_id, kind=RUN).update(
                available_at=now, score=now - timedelta(seconds=priority)
            )
            status = RunStatus.QUEUED
        FunctionRun.objects.using(db).filter(id=run_id).update(status=status, attempt=0)
        Pause.objects.using(db).bulk_create([_pause_row(run_id, spec) for spec in pauses])
        insert_events(events, received_at=now)
    return True


def end_run(
    run_id: str,
    worker_id: str,
    *,
    status: str,
    output: Any,
    now: datetime,
    emitted: Sequence[PreparedEvent] = (),
    pending: Callable[[str], bool] | None = None,
    drop_pauses: bool = False,
) -> bool:
    """End a run held by `worker_id`: drop its queue item (and its cancellation listeners when
    it has some), record the end, emit events. False when the run was no longer held."""
    end = RunEnd(
        run_id=run_id,
        worker_id=worker_id,
        status=status,
        output=output,
        now=now,
        emitted=emitted,
        pending=pending,
        drop_pauses=drop_pauses,
    )
    return end_runs([end])[0]


@dataclass(frozen=True, kw_only=True)
class RunEnd:
    run_id: str
    worker_id: str
    status: str
    output: Any
    now: datetime
    emitted: Sequence[PreparedEvent] = ()
    pending: Callable[[str], bool] | None = None
    """Which emitted events need matching (all when None)."""
    drop_pauses: bool = False


def end_runs(ends: Sequence[RunEnd]) -> list[bool]:
    """`end_run` for several runs at once: one statement on PostgreSQL, one transaction on
    SQLite. Each run is ended only if its worker still holds it; returns which were."""
    if is_postgresql():
        held: dict[str, tuple[str | None, ...]] = {}
        for worker_id in {end.worker_id for end in ends}:  # one statement per lease owner
            held.update(
                _end_runs_in_one_statement(worker_id, [e for e in ends if e.worker_id == worker_id])
            )
        # After the commit: an extra unparked run only re-checks its key.
        _free_slots(key for keys in held.values() for key in keys)
        return [end.run_id in held for end in ends]
    db = alias()
    ended: list[bool] = []
    with transaction.atomic(using=db), _connection().cursor() as cursor:
        for end in ends:
            cursor.execute(
                f"DELETE FROM {_table(QueueItem)} WHERE run_id = %s AND kind = %s "
                f"AND lease_owner = %s RETURNING ckey1, ckey2",
                [end.run_id, RUN, end.worker_id],
            )
            keys = cursor.fetchone()
            ended.append(keys is not None)
            if keys is None:
                continue
            _free_slots(keys)
            FunctionRun.objects.using(db).filter(id=end.run_id).update(
                status=end.status, output=end.output, ended_at=end.now
            )
            if end.drop_pauses:
                Pause.objects.using(db).filter(run_id=end.run_id).delete()
            insert_events(end.emitted, received_at=end.now, pending=end.pending)
    return ended


def _end_runs_in_one_statement(
    worker_id: str, ends: Sequence[RunEnd]
) -> dict[str, tuple[str | None, ...]]:
    """`end_runs` on PostgreSQL for the runs of one lease owner, as one statement (one round
    trip, its own transaction unless the caller has one), every write conditional on the
    lease check. Returns the concurrency keys each ended run held, by run id."""
    queue, run, event, pause = _table(QueueItem), _table(FunctionRun), _table(Event), _table(Pause)
    params: list[Any] = []
    for end in ends:
        params += [end.run_id, end.status, _json(end.output), _when(end.now), end.drop_pauses]
    values = ", ".join(
        ["(%s, %s, CAST(%s AS jsonb), CAST(%s AS timestamptz), %s::boolean)"] * len(ends)
    )
    params += [[end.run_id for end in ends], worker_id]
    parts = [
        f"v (run_id, status, output, ended_at, drop_pauses) AS (VALUES {values})",
        # By the run ids themselves, not a join with v: the planner then uses the index.
        f"dropped AS (DELETE FROM {queue} q WHERE q.run_id = ANY(%s) "
        f"AND q.kind = '{RUN}' AND q.lease_owner = %s RETURNING q.run_id, q.ckey1, q.ckey2)",
        f"ended AS (UPDATE {run} r SET status = v.status, output = v.output, "
        f"ended_at = v.ended_at FROM v WHERE r.id = v.run_id "
        f"AND r.id IN (SELECT run_id FROM dropped) RETURNING r.id)",
    ]
    if any(end.drop_pauses for end in ends):
        parts.append(
            f"unpaused AS (DELETE FROM {pause} WHERE run_id IN (SELECT id FROM ended) "
            f"AND run_id IN (SELECT run_id FROM v WHERE drop_pauses))"
        )
    wake = False
    rows: list[str] = []
    for end in ends:
        for item in end.emitted:
            is_pending = end.pending(item.name) if end.pending else True
            wake = wake or is_pending
            rows.append("(%s, %s, %s, %s, CAST(%s AS jsonb), %s::bigint, %s::timestamptz, %s)")
            params += [end.run_id, item.id, item.user_id, item.name, _json(item.data), item.ts]
            params += [_when(end.now), is_pending]
    if rows:
        columns = "id, user_id, name, data, ts, received_at, pending"
        parts.append(
            f"emitted AS (INSERT INTO {event} ({columns}) SELECT {columns} "
            f"FROM (VALUES {', '.join(rows)}) AS e(run_id, {columns}) "
            f"WHERE e.run_id IN (SELECT id FROM ended))"
        )
    woken = f"pg_notify('{CHANNEL}', '{EVENTS}')" if wake else "NULL"
    parts.append(f"woken AS (SELECT {woken} WHERE EXISTS (SELECT 1 FROM ended))")
    with _connection().cursor() as cursor:
        cursor.execute(
            f"WITH {', '.join(parts)} SELECT d.run_id, d.ckey1, d.ckey2, "
            f"(SELECT count(*) FROM woken) FROM dropped d",
            params,
        )
        return {row[0]: (row[1], row[2]) for row in cursor.fetchall()}


# --- cancellation and reruns ------------------------------------------------------------------


def cancel_run(run_id: str, *, now: datetime, pending: Callable[[str], bool] | None = None) -> None:
    """Cancel a run that has not ended. Its queue item goes at once, so a worker running it
    loses its lease: the step in flight finishes, its result is dropped, nothing else runs."""
    db = alias()
    with transaction.atomic(using=db):
        # Locks in the order claims and ends take them (queue items, slot keys, the run), so
        # a cancellation racing a worker cannot deadlock with it.
        items = QueueItem.objects.using(db).filter(run_id=run_id)
        if is_postgresql():
            items = items.select_for_update()
        held = [
            (ckey1, ckey2)
            for kind, owner, ckey1, ckey2 in items.values_list(
                "kind", "lease_owner", "ckey1", "ckey2"
            )
            if kind == RUN and owner is not None
        ]
        items.delete()
        for keys in held:
            _free_slots(keys)
        cancelled = (
            FunctionRun.objects.using(db)
            .filter(id=run_id)
            .exclude(status__in=ENDED_STATUSES)
            .update(status=RunStatus.CANCELLED, ended_at=now)
        )
        run = (
            FunctionRun.objects.using(db)
            .filter(id=run_id)
            .values("function_id", "status", "event_ids")
            .first()
        )
        if run is None:
            raise RunNotFoundError(run_id)
        if not cancelled:
            raise RunEndedError(run_id, run["status"])
        Pause.objects.using(db).filter(run_id=run_id).delete()
        rows = list(
            Event.objects.using(db)
            .filter(id__in=run["event_ids"])
            .values("id", "user_id", "name", "data", "ts")
        )
        rows.sort(key=lambda row: run["event_ids"].index(row["id"]))
        trigger_events = [event_map(row) for row in rows]
        emitted = run_ended_events(
            function_id=run["function_id"],
            run_id=run_id,
            trigger_events=trigger_events,
            status=RunStatus.CANCELLED,
            output={"code": "cancelled", "message": "the run was cancelled", "name": "Cancelled"},
            now_ms=int(now.timestamp() * 1000),
        )
        insert_events(emitted, received_at=now, pending=ended_pending(pending, trigger_events))


def ended_pending(
    pending: Callable[[str], bool] | None, trigger_events: Sequence[Mapping[str, Any]]
) -> Callable[[str], bool]:
    """Which events a run's end emits need matching: those some function listens to, and the
    `inngest/function.finished` of an invoked run, which its parent waits for."""
    invoked = bool(trigger_events) and trigger_events[0].get("name") == FUNCTION_INVOKED

    def needs_matching(name: str) -> bool:
        return (pending is None or pending(name)) or (invoked and name == FUNCTION_FINISHED)

    return needs_matching


def active_runs(
    function_id: str, *, started_after: datetime | None, started_before: datetime
) -> list[dict[str, Any]]:
    """Runs of a function that have not ended, enqueued within a window, with their first event."""
    query = (
        FunctionRun.objects.using(alias())
        .active()
        .filter(function_id=function_id, created_at__lt=started_before)
    )
    if started_after is not None:
        query = query.filter(created_at__gte=started_after)
    runs = list(query.order_by("id").values("id", "event_id"))
    events = {
        row["id"]: row
        for row in Event.objects.using(alias())
        .filter(id__in=[run["event_id"] for run in runs if run["event_id"]])
        .values("id", "user_id", "name", "data", "ts")
    }
    return [
        {
            "id": run["id"],
            "event": event_map(events[run["event_id"]]) if run["event_id"] in events else {},
        }
        for run in runs
    ]


#: How long after an event arrives a batch holding it may start its run (the batch timeout is
#: at most 60 s; the rest is room for workers that were busy or down).
BATCH_RUN_WINDOW = timedelta(hours=1)


def run_ids_of_event(event_id: str, *, received_at: datetime) -> list[str]:
    """The runs an event started: runs it triggered first, and batches it joined. Batch runs
    are searched among runs created within `BATCH_RUN_WINDOW` of the event, a range of the
    primary key (run ids are ULIDs of their creation time)."""
    db = alias()
    runs = FunctionRun.objects.using(db)
    direct = list(runs.filter(event_id=event_id).values_list("id", flat=True))
    start_ms = int(received_at.timestamp() * 1000)
    end_ms = int((received_at + BATCH_RUN_WINDOW).timestamp() * 1000)
    window = runs.filter(id__gte=ids.ulid_floor(start_ms), id__lt=ids.ulid_floor(end_ms)).exclude(
        event_id=event_id
    )
    if is_postgresql():
        batched = window.filter(event_ids__contains=[event_id]).values_list("id", flat=True)
    else:  # SQLite has no JSON containment lookup; json_each does the same
        batched = window.extra(
            where=["EXISTS (SELECT 1 FROM json_each(event_ids) WHERE json_each.value = %s)"],
            params=[event_id],
        ).values_list("id", flat=True)
    return sorted({*direct, *batched})


def record_cancellation(
    *,
    app_id: str,
    function_id: str,
    started_after: datetime | None,
    started_before: datetime,
    if_exp: str | None,
    requested_by: str,
    cancelled_runs: int,
    now: datetime,
) -> Cancellation:
    """Keep a record of a bulk cancellation made through the HTTP API."""
    return Cancellation.objects.using(alias()).create(
        id=ids.ulid(),
        app_id=app_id,
        function_id=function_id,
        started_after=started_after,
        started_before=started_before,
        if_exp=if_exp or "",
        requested_by=requested_by,
        cancelled_runs=cancelled_runs,
        created_at=now,
    )


def rerun(run_id: str, *, now: datetime, from_step: str | None = None) -> str:
    """Start a new run with the same events, linked to the original. With `from_step` (a step
    id or hashed id), results of the steps completed before that step are kept."""
    db = alias()
    with transaction.atomic(using=db):
        original = FunctionRun.objects.using(db).filter(id=run_id).first()
        if original is None:
            raise RunNotFoundError(run_id)
        kept: list[RunStep] = []
        if from_step is not None:
            steps = list(RunStep.objects.using(db).filter(run_id=run_id).order_by("id"))
            chosen = next((s for s in steps if from_step in (s.hashed_id, s.step_id)), None)
            if chosen is None:
                raise ValueError(f"run {run_id!r} has no step {from_step!r}")
            kept = [s for s in steps if s.id < chosen.id and s.status == StepStatus.COMPLETED]
        new = FunctionRun.objects.using(db).create(
            id=ids.ulid(),
            function_id=original.function_id,
            status=RunStatus.QUEUED,
            event_id=original.event_id,
            event_ids=original.event_ids,
            created_at=now,
            original_run=original,
        )
        RunStep.objects.using(db).bulk_create(
            [
                RunStep(
                    run=new,
                    hashed_id=s.hashed_id,
                    step_id=s.step_id,
                    index=s.index,
                    op=s.op,
                    status=s.status,
                    output=s.output,
                    attempts=s.attempts,
                    started_at=s.started_at,
                    ended_at=s.ended_at,
                    wake_at=s.wake_at,
                )
                for s in kept
            ]
        )
        QueueItem.objects.using(db).create(run=new, available_at=now, score=now)
        notify()
    return new.id


# --- leases -----------------------------------------------------------------------------------


def heartbeat(worker_id: str, lease_seconds: float) -> int:
    """Extend every lease `worker_id` holds, in one statement."""
    expiry_sql, expiry_params = _lease_expiry_sql(lease_seconds)
    with _connection().cursor() as cursor:
        cursor.execute(
            f"UPDATE {_table(QueueItem)} SET lease_expires_at = {expiry_sql} "
            f"WHERE lease_owner = %s",
            [*expiry_params, worker_id],
        )
        return int(cursor.rowcount)


def return_expired_leases() -> int:
    """Put back in the queue the runs whose worker stopped renewing their lease."""
    now_sql, now_params = _db_now_sql()
    with _connection().cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {_table(QueueItem)} WHERE lease_expires_at < {now_sql} LIMIT 1",
            now_params,
        )
        if cursor.fetchone() is None:
            return 0  # the usual case: a read, not a write transaction, every sweep
    with transaction.atomic(using=alias()):
        with _connection().cursor() as cursor:
            cursor.execute(
                f"UPDATE {_table(QueueItem)} SET lease_owner = NULL, lease_expires_at = NULL "
                f"WHERE lease_expires_at < {now_sql} RETURNING run_id, ckey1, ckey2",
                now_params,
            )
            returned = cursor.fetchall()
        _requeue(returned)
    return len(returned)


def release(worker_id: str) -> int:
    """Give back every run `worker_id` holds (a worker shutting down)."""
    with transaction.atomic(using=alias()):
        with _connection().cursor() as cursor:
            cursor.execute(
                f"UPDATE {_table(QueueItem)} SET lease_owner = NULL, lease_expires_at = NULL "
                f"WHERE lease_owner = %s RETURNING run_id, ckey1, ckey2",
                [worker_id],
            )
            returned = cursor.fetchall()
        _requeue(returned)
    return len(returned)


def _requeue(returned: Sequence[tuple[str | None, str | None, str | None]]) -> None:
    """Runs whose lease went back: queued again, their concurrency slots free."""
    run_ids = [run_id for run_id, _, _ in returned if run_id]
    if run_ids:
        FunctionRun.objects.using(alias()).filter(id__in=run_ids, status=RunStatus.RUNNING).update(
            status=RunStatus.QUEUED
        )
    _free_slots(key for _, *keys in returned for key in keys)


@dataclass(frozen=True, kw_only=True)
class Pruned:
    runs: int
    events: int
    keys: int
    states: int
    pauses: int
    cron_ticks: int = 0


def prune(*, now: datetime, retention: timedelta) -> Pruned:
    """Delete what is no longer needed: runs ended before the retention period (with their
    steps), events older than it that no run refers to, expired de-duplication keys and
    cancellation listeners, flow-control state that no longer limits anything, and cron ticks
    scheduled before the retention period."""
    db = alias()
    cutoff = now - retention
    with transaction.atomic(using=db):
        _, by_model = FunctionRun.objects.using(db).ended().filter(ended_at__lt=cutoff).delete()
        runs = by_model.get(FunctionRun._meta.label, 0)
        events, _ = (
            Event.objects.using(db)
            .filter(received_at__lt=cutoff, pending=False)
            .exclude(
                id__in=FunctionRun.objects.using(db).filter(event__isnull=False).values("event_id")
            )
            .delete()
        )
        keys, _ = IdempotencyKey.objects.using(db).filter(expires_at__lte=now).delete()
        pauses, _ = (
            Pause.objects.using(db).filter(expires_at__lte=now, kind=Pause.Kind.CANCEL).delete()
        )
        stale = now - timedelta(hours=1)
        states = 0
        for state in FlowState.objects.using(db).filter(updated_at__lt=stale).iterator():
            if _state_is_idle(state, now):
                states += (
                    FlowState.objects.using(db)
                    .filter(key=state.key, updated_at=state.updated_at)
                    .delete()[0]
                )
        # Safe: each schedule's `last_tick_at` stops its old ticks from firing again.
        cron_ticks, _ = CronTick.objects.using(db).filter(scheduled_at__lt=cutoff).delete()
    return Pruned(
        runs=runs, events=events, keys=keys, states=states, pauses=pauses, cron_ticks=cron_ticks
    )


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
    return False  # debounce and batch buffers end when they fire


def next_due_at(priority_window: int = 0) -> datetime | None:
    """About when the next ready queue item becomes due (read from the ready index)."""
    ready = QueueItem.objects.using(alias()).filter(
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


def has_pending_events() -> bool:
    return Event.objects.using(alias()).pending().exists()


# --- cron -------------------------------------------------------------------------------------

ScheduleKey = tuple[str, str, str]
"""(function id, cron as written, zone name): one cron trigger of one function."""


@dataclass(frozen=True, kw_only=True)
class ScheduleState:
    created_at: datetime
    last_tick_at: datetime | None


def sync_cron_schedules(
    declared: Iterable[ScheduleKey], *, now: datetime
) -> dict[ScheduleKey, ScheduleState]:
    """Make the stored schedules exactly `declared` (what a starting worker's code declares):
    keep those that exist, add the new ones, delete the rest. Returns the state of each."""
    db = alias()
    wanted = set(declared)
    with transaction.atomic(using=db):
        stored = {
            (row["function_id"], row["cron"], row["timezone"]): row["id"]
            for row in CronSchedule.objects.using(db).values(
                "id", "function_id", "cron", "timezone"
            )
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
    with transaction.atomic(using=db):
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
        with _connection().cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {_table(CronTick)} (function_id, scheduled_at, cron, fire_at, "
                f"fired_by) VALUES (%s, %s, %s, %s, %s) "
                f"ON CONFLICT (function_id, scheduled_at) DO NOTHING RETURNING id",
                [function_id, _when(scheduled_at), cron, _when(fire_at), worker_id],
            )
            inserted = cursor.fetchone()
        if inserted is None:
            return TickOutcome.ALREADY_FIRED
        insert_events([event], received_at=now, pending=lambda name: False)
        intake = _Intake(now, _no_planner, pending)
        intake.start(plan, [{"id": event.id, "user_id": event.user_id, "ts": event.ts}])
        run_ids = [run.id for run in intake.runs]
        intake.flush()
        CronTick.objects.using(db).filter(id=inserted[0]).update(run_id=run_ids[-1])
        CronSchedule.objects.using(db).filter(id=schedule["id"]).update(last_tick_at=scheduled_at)
        notify()
    return TickOutcome.FIRED
