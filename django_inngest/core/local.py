"""Runs a function to its end in memory, with no database: the engine's second `StepStore`.

`django_inngest.testing.run_function` is built on it, and the core's unit tests use it.
Sleeps end at once, retries follow at once, and steps may be stubbed by id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from django_inngest.core import clock, ids
from django_inngest.core.engine import (
    Completed,
    Dropped,
    Execution,
    Failed,
    Memo,
    Outcome,
    Retry,
    Runtime,
    StepRecord,
    StepStatus,
    Suspended,
)
from django_inngest.core.errors import UnstubbedStepError
from django_inngest.core.events import Event, PreparedEvent
from django_inngest.core.function import Function
from django_inngest.core.steps import invoke


class MemoryStore:
    """Step results kept in a dict, with the same first-writer-wins rule as the database."""

    def __init__(self) -> None:
        self.steps: dict[str, StepRecord] = {}
        self.sent: list[PreparedEvent] = []

    def save_step(self, record: StepRecord, events: Sequence[PreparedEvent] = ()) -> Memo:
        """Keep a step's final result and the events it sends; a step already final keeps its first
        result, as the database does."""
        existing = self.steps.get(record.hashed_id)
        if existing is not None and existing.status in (StepStatus.COMPLETED, StepStatus.FAILED):
            return existing.as_memo()
        self.steps[record.hashed_id] = record
        self.sent.extend(events)
        return record.as_memo()

    def time_out(self, record: StepRecord) -> Memo:
        """Record the timeout of a wait or an invoke, as `save_step` does."""
        return self.save_step(record)

    def record(self, records: Sequence[StepRecord], *, wake_now: bool = False) -> None:
        """Keep the records of a suspended or retried invocation; with `wake_now`, sleeps end at
        once."""
        for record in records:
            if wake_now and record.status == StepStatus.SLEEPING:
                record = replace(record, wake_at=clock.now())
            self.steps[record.hashed_id] = record

    def memos(self) -> dict[str, Memo]:
        """What the next invocation knows of each step."""
        return {hashed: record.as_memo() for hashed, record in self.steps.items()}


@dataclass(frozen=True, kw_only=True)
class LocalResult:
    """How a run ended in memory."""

    status: str
    """``"COMPLETED"`` or ``"FAILED"``."""
    output: Any = None
    error: dict[str, Any] | None = None
    invocations: int = 0
    steps: dict[str, StepRecord] = field(default_factory=dict)
    sent_events: list[PreparedEvent] = field(default_factory=list)


def run_locally(
    function: Function,
    events: Sequence[Event],
    *,
    step_stubs: Mapping[str, Any] | None = None,
    max_invocations: int = 1000,
    runtime: Runtime | None = None,
    invoker: Callable[[Execution], Outcome] = invoke,
) -> LocalResult:
    """Invoke `function` until it completes or fails; `step_stubs` maps step ids to results.
    `invoker` runs one invocation (`testing.run_function` runs async handlers its way)."""
    store = MemoryStore()
    for step_id, value in (step_stubs or {}).items():
        if isinstance(value, Event):
            value = value.to_dict()
        store.steps[ids.hash_step_id(step_id)] = StepRecord(
            hashed_id=ids.hash_step_id(step_id),
            step_id=step_id,
            index=0,
            op="",
            status=StepStatus.COMPLETED,
            output=value,
        )
    run_id = ids.ulid()
    attempt = 0
    for invocation in range(1, max_invocations + 1):
        execution = Execution(
            function=function,
            run_id=run_id,
            events=events,
            attempt=attempt,
            memos=store.memos(),
            store=store,
            runtime=runtime,
            logger=getattr(function.client, "logger", None),
        )
        outcome = invoker(execution)
        if isinstance(outcome, Completed):
            return _result("COMPLETED", store, invocation, output=outcome.output)
        if isinstance(outcome, Failed):
            return _result("FAILED", store, invocation, error=outcome.error)
        if isinstance(outcome, Retry):
            store.record(outcome.records, wake_now=True)
            attempt = outcome.attempt
        elif isinstance(outcome, Suspended):
            if outcome.pauses:
                waiting = [r.step_id for r in outcome.records if r.status == StepStatus.WAITING]
                raise UnstubbedStepError(
                    f"step {', '.join(map(repr, waiting))} waits for an event or an invoked "
                    "function; give its result in step_stubs (None for a timeout)"
                )
            store.record(outcome.records, wake_now=True)
            attempt = 0
        elif isinstance(outcome, Dropped):  # pragma: no cover - the memory store never drops
            raise AssertionError(outcome.reason)
    raise RuntimeError(f"function {function.id!r} did not end after {max_invocations} invocations")


def _result(status: str, store: MemoryStore, invocations: int, **values: Any) -> LocalResult:
    return LocalResult(
        status=status,
        invocations=invocations,
        steps=dict(store.steps),
        sent_events=list(store.sent),
        **values,
    )
