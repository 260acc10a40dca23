"""The run page's timeline: every step as a bar on one time axis (a Gantt chart).

`build_timeline` turns a run and its steps into rows of positioned spans (percentages of the
axis) that the template draws with plain HTML and CSS: failed attempts, sleeps still going on,
and the step's final state each get their own span.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils.dateparse import parse_datetime

from django_inngest.admin.display import Payload, elapsed, error_parts, format_duration, payload
from django_inngest.models import FunctionRun, RunStep

MIN_SPAN_PERCENT = 0.6
"""Instant steps still get a visible sliver."""
TICKS = 5

OP_LABELS = {
    "run": "run",
    "sleep": "sleep",
    "wait_for_event": "wait",
    "invoke": "invoke",
    "send_event": "send",
}
WAIT_OPS = frozenset({"sleep", "wait_for_event", "invoke"})


@dataclass(frozen=True, kw_only=True)
class Span:
    """A bar on the timeline, as percentages of its width, with the CSS kind that colours it."""

    left: float
    width: float
    kind: str
    """CSS modifier: completed, failed, attempt, sleeping, waiting, queued, running."""
    title: str
    open_ended: bool = False
    """The span goes on past the end of the axis."""

    @property
    def style(self) -> str:
        """Inline CSS placing the span; formatted here so no locale changes the decimals."""
        return f"left:{self.left:.3f}%;width:{self.width:.3f}%"


@dataclass(frozen=True, kw_only=True)
class Attempt:
    """A failed attempt of a step, listed under it."""

    number: int
    """1-based."""
    started_at: datetime | None
    ended_at: datetime | None
    error: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class Row:
    """One step of the run on the timeline: its times, attempts, bars, and its output or error."""

    step_id: str
    label: str
    op: str
    status: str
    started_at: datetime | None
    ended_at: datetime | None
    duration: str
    attempts: int
    failed_attempts: list[Attempt]
    spans: list[Span]
    until: datetime | None
    """When a sleep, wait or invoke ends (or ended)."""
    waiting: bool
    """The step is still sleeping or waiting."""
    waiting_for: str | None
    """What a wait or an invoke waits for, while it waits."""
    output: Payload | None
    error: dict[str, str] | None
    hashed_id: str


@dataclass(frozen=True, kw_only=True)
class Tick:
    """A time label on the timeline's axis."""

    left: float
    label: str

    @property
    def style(self) -> str:
        """The CSS that places the tick."""
        return f"left:{self.left:.3f}%"


@dataclass(frozen=True, kw_only=True)
class Timeline:
    """A run's timeline: the run's own bar, one row per step, and the ticks of the axis."""

    start: datetime
    end: datetime
    run_span: Span
    rows: list[Row] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)

    @property
    def length(self) -> str:
        """The time the timeline covers, formatted."""
        return format_duration(self.end - self.start)


def build_timeline(
    run: FunctionRun,
    steps: Sequence[RunStep],
    *,
    now: datetime,
    output_url: Any = None,
    waiting_for: Mapping[str, str] | None = None,
) -> Timeline:
    """Rows in the order steps started. `output_url(step)` gives the full-value link of a
    step's output when it is too long to show whole; `waiting_for` describes, by hashed step
    id, what the run's pending waits and invokes wait for."""
    ordered = sorted(steps, key=lambda s: (s.started_at or now, s.id))
    start = run.started_at or run.created_at
    starts = [s.started_at for s in ordered if s.started_at]
    if starts:
        start = min(start, *starts)
    end = run.ended_at or now
    ends = [s.ended_at for s in ordered if s.ended_at]
    if ends:
        end = max(end, *ends)
    axis = Axis(start, end)
    run_kind = _run_kind(run.status)
    run_span = axis.span(
        run.started_at or run.created_at,
        run.ended_at or now,
        kind=run_kind,
        title=f"run {run.status.lower()}",
        open_ended=run.ended_at is None,
    )
    rows = [
        _row(
            step,
            axis,
            now=now,
            run_ended_at=run.ended_at,
            output_url=output_url,
            waiting_for=(waiting_for or {}).get(step.hashed_id),
        )
        for step in ordered
    ]
    return Timeline(start=start, end=end, run_span=run_span, rows=rows, ticks=axis.ticks())


class Axis:
    """Maps times between `start` and `end` to percentages."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start = start
        self.end = max(end, start + timedelta(milliseconds=1))
        self.total = (self.end - self.start).total_seconds()

    def position(self, moment: datetime) -> float:
        """Where `moment` falls, in percent of the axis, clamped to 0-100."""
        offset = (moment - self.start).total_seconds() / self.total * 100
        return min(max(offset, 0.0), 100.0)

    def span(
        self,
        started: datetime,
        ended: datetime,
        *,
        kind: str,
        title: str,
        open_ended: bool = False,
    ) -> Span:
        """The bar from `started` to `ended`, at least `MIN_SPAN_PERCENT` wide so that an instant
        stays visible, and kept within the axis."""
        left = self.position(started)
        right = self.position(ended)
        width = max(right - left, MIN_SPAN_PERCENT)
        left = min(left, 100.0 - width)
        return Span(
            left=round(left, 3),
            width=round(width, 3),
            kind=kind,
            title=title,
            open_ended=open_ended,
        )

    def ticks(self) -> list[Tick]:
        """`TICKS` evenly spaced labels, each the time since the start."""
        step = (self.end - self.start) / (TICKS - 1)
        return [
            Tick(left=round(i * 100 / (TICKS - 1), 3), label="+" + format_duration(step * i))
            for i in range(TICKS)
        ]


def _row(
    step: RunStep,
    axis: Axis,
    *,
    now: datetime,
    run_ended_at: datetime | None,
    output_url: Any,
    waiting_for: str | None = None,
) -> Row:
    failed = [_attempt(entry) for entry in step.history if isinstance(entry, dict)]
    spans = [
        axis.span(
            attempt.started_at,
            attempt.ended_at or attempt.started_at,
            kind="attempt",
            title=f"attempt {attempt.number} failed: {attempt.error['message']}",
        )
        for attempt in failed
        if attempt.started_at is not None
    ]
    unfinished = step.ended_at is None and step.status not in _FINAL
    waiting = step.op in WAIT_OPS and unfinished and run_ended_at is None
    started = step.started_at
    if started is not None:
        if unfinished and run_ended_at is not None:
            spans.append(
                axis.span(
                    started,
                    run_ended_at,
                    kind="cancelled",
                    title=f"{step.status.lower()} when the run ended",
                )
            )
        elif waiting:
            until = step.wake_at or now
            spans.append(
                axis.span(
                    started,
                    min(until, axis.end),
                    kind="waiting" if step.op != "sleep" else "sleeping",
                    title=f"{OP_LABELS.get(step.op, step.op)} until {until.isoformat()}",
                    open_ended=until > axis.end,
                )
            )
        else:
            last_failure = max((a.ended_at for a in failed if a.ended_at is not None), default=None)
            final_start = last_failure if step.status in _FINAL and last_failure else started
            final_end = step.ended_at or now
            kind = _step_kind(step.status, step.op)
            spans.append(
                axis.span(
                    final_start,
                    final_end,
                    kind=kind,
                    title=f"{step.status.lower()} after {format_duration(final_end - started)}",
                    open_ended=step.ended_at is None,
                )
            )
    label = step.step_id if not step.index else f"{step.step_id} #{step.index}"
    output = None
    if step.output is not None:
        output = payload(step.output, full_url=output_url(step) if output_url else None)
    return Row(
        step_id=step.step_id,
        label=label,
        op=OP_LABELS.get(step.op, step.op),
        status=step.status,
        started_at=step.started_at,
        ended_at=step.ended_at,
        duration=format_duration(elapsed(step.started_at, step.ended_at, now)),
        attempts=step.attempts,
        failed_attempts=failed,
        spans=spans,
        until=step.wake_at if step.op in WAIT_OPS else None,
        waiting=waiting,
        waiting_for=waiting_for if waiting else None,
        output=output,
        error=error_parts(step.error) if step.error and step.status == "FAILED" else None,
        hashed_id=step.hashed_id,
    )


_FINAL = frozenset({"COMPLETED", "FAILED"})


def _attempt(entry: dict[str, Any]) -> Attempt:
    return Attempt(
        number=int(entry.get("attempt", 0)) + 1,
        started_at=_parse(entry.get("started_at")),
        ended_at=_parse(entry.get("ended_at")),
        error=error_parts(entry.get("error")),
    )


def _parse(value: Any) -> datetime | None:
    return parse_datetime(value) if isinstance(value, str) else None


def _step_kind(status: str, op: str) -> str:
    if status == "COMPLETED" and op in WAIT_OPS:
        return "slept" if op == "sleep" else "waited"
    return {"COMPLETED": "completed", "FAILED": "failed", "ERRORED": "retrying"}.get(
        status, "running"
    )


def _run_kind(status: str) -> str:
    return {
        "QUEUED": "queued",
        "COMPLETED": "completed",
        "FAILED": "failed",
        "CANCELLED": "cancelled",
        "SKIPPED": "cancelled",
        "SLEEPING": "sleeping",
        "WAITING": "waiting",
    }.get(status, "running")
