"""A run's steps and what it waits for: reading memos, writing a step's final result while the
writer holds the run's lease, ending waits that time out, recording sleeping, waiting and failed
steps, and building pause rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django_inngest import killpoints
from django_inngest.core.engine import (
    FINAL_STEP_STATUSES,
    LeaseLost,
    Memo,
    PauseSpec,
    StepRecord,
    StepStatus,
)
from django_inngest.core.events import PreparedEvent
from django_inngest.models import Pause, QueueItem, RunStep
from django_inngest.store._sql import (
    RUN,
    alias,
    atomic,
    db_datetime,
    json_text,
    write_turn,
)
from django_inngest.store.dialect import dialect
from django_inngest.store.events import insert_events


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
        with atomic():
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
    """`save_step` for steps of several runs at once (no events), in one statement: a step's
    memo, or the `LeaseLost` to raise."""
    keys = [(write.run_id, write.record.hashed_id) for write in writes]
    if len(set(keys)) < len(keys):  # one statement cannot write a row twice
        return [outcome for write in writes for outcome in save_steps([write])]
    with write_turn():  # one statement needs no transaction of its own
        written = _insert_final_steps(writes)
    killpoints.park("after-checkpoint")
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


def _insert_final_steps(writes: Sequence[StepWrite]) -> set[tuple[str, str]]:
    """Insert (or finish) each step whose run `worker_id` still holds, unless it is already
    final; returns the (run id, hashed id) of the steps written."""
    params: list[Any] = []
    for write in writes:
        params += [*_step_values(write.run_id, write.record), write.worker_id]
    return dialect().insert_final_steps(params, len(writes))


def _step_values(run_id: str, record: StepRecord) -> list[Any]:
    return [
        run_id,
        record.hashed_id,
        record.step_id,
        record.index,
        record.op,
        record.status,
        json_text(record.output),
        json_text(record.error),
        record.attempts,
        "[]",
        db_datetime(record.started_at),
        db_datetime(record.ended_at),
        db_datetime(record.wake_at),
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
        with atomic():
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


def write_records(run_id: str, records: Sequence[StepRecord]) -> bool:
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


def pause_row(run_id: str, spec: PauseSpec, after_receipt: int | None) -> Pause:
    """`after_receipt`: the order of receipt after which events match (None: to be found)."""
    pause = Pause(
        kind=spec.kind,
        run_id=run_id,
        hashed_id=spec.hashed_id,
        event_name=spec.event_name,
        expression=spec.expression or "",
        match_key=spec.match_key,
        trigger_event=spec.trigger_event,
        expires_at=spec.expires_at,
    )
    if after_receipt is not None:
        pause.after_receipt = after_receipt
    return pause
