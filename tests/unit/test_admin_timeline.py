"""The run timeline as positioned spans, built from unsaved rows (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django_inngest.admin.timeline import build_timeline
from django_inngest.models import FunctionRun, RunStep

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(status: str, *, ended: float | None) -> FunctionRun:
    return FunctionRun(
        id="R",
        function_id="f",
        status=status,
        created_at=T0,
        started_at=T0,
        ended_at=None if ended is None else at(ended),
    )


def step(
    pk: int, step_id: str, op: str, status: str, start: float, end: float | None, **extra: object
) -> RunStep:
    return RunStep(
        id=pk,
        run_id="R",
        hashed_id=f"h{pk}",
        step_id=step_id,
        op=op,
        status=status,
        started_at=at(start),
        ended_at=None if end is None else at(end),
        attempts=extra.pop("attempts", 1),
        **extra,
    )


def test_spans_are_placed_in_percent_of_the_run_and_sorted_by_start() -> None:
    timeline = build_timeline(
        run("COMPLETED", ended=10),
        [step(2, "b", "run", "COMPLETED", 5, 10), step(1, "a", "run", "COMPLETED", 0, 2.5)],
        now=at(60),
    )
    assert [row.step_id for row in timeline.rows] == ["a", "b"]
    assert [(s.left, s.width) for row in timeline.rows for s in row.spans] == [(0, 25), (50, 50)]
    assert timeline.rows[1].spans[0].style == "left:50.000%;width:50.000%"
    assert [tick.label for tick in timeline.ticks] == [
        "+0 ms",
        "+2.5 s",
        "+5.0 s",
        "+7.5 s",
        "+10.0 s",
    ]


def test_an_instant_step_still_gets_a_visible_sliver_inside_the_axis() -> None:
    timeline = build_timeline(
        run("COMPLETED", ended=100), [step(1, "end", "run", "COMPLETED", 100, 100)], now=at(100)
    )
    [span] = timeline.rows[0].spans
    assert span.width > 0 and span.left + span.width <= 100


def test_failed_attempts_are_drawn_before_the_final_attempt() -> None:
    history = [
        {
            "attempt": 0,
            "started_at": at(0).isoformat(),
            "ended_at": at(1).isoformat(),
            "error": {"name": "E", "message": "one"},
        },
        {
            "attempt": 1,
            "started_at": at(3).isoformat(),
            "ended_at": at(4).isoformat(),
            "error": {"name": "E", "message": "two"},
        },
    ]
    timeline = build_timeline(
        run("FAILED", ended=8),
        [
            step(
                1,
                "pay",
                "run",
                "FAILED",
                0,
                8,
                attempts=3,
                history=history,
                error={"name": "E", "message": "three"},
            )
        ],
        now=at(8),
    )
    [row] = timeline.rows
    assert [(s.kind, s.left, s.width) for s in row.spans] == [
        ("attempt", 0, 12.5),
        ("attempt", 37.5, 12.5),
        ("failed", 50, 50),
    ]
    assert [(a.number, a.error["message"]) for a in row.failed_attempts] == [(1, "one"), (2, "two")]
    assert row.error == {"name": "E", "message": "three", "code": "", "stack": ""}


def test_a_sleep_going_on_past_the_axis_is_open_ended_and_says_until_when() -> None:
    wake = at(86400)
    timeline = build_timeline(
        run("SLEEPING", ended=None),
        [step(1, "nap", "sleep", "SLEEPING", 5, None, wake_at=wake)],
        now=at(10),
    )
    [row] = timeline.rows
    [span] = row.spans
    assert (span.kind, span.open_ended, span.left, span.width) == ("sleeping", True, 50, 50)
    assert (row.waiting, row.until, row.op) == (True, wake, "sleep")
    assert timeline.run_span.open_ended


def test_a_step_left_sleeping_when_the_run_was_cancelled_ends_with_the_run() -> None:
    timeline = build_timeline(
        run("CANCELLED", ended=20),
        [step(1, "nap", "sleep", "SLEEPING", 0, None, wake_at=at(86400))],
        now=at(500),
    )
    [row] = timeline.rows
    assert not row.waiting
    assert [(s.kind, s.width, s.open_ended) for s in row.spans] == [("cancelled", 100, False)]
    assert timeline.end == at(20)


def test_a_queued_run_is_drawn_as_queued_not_as_running() -> None:
    """A run waiting for a worker (new, or between retries) is not drawn with the running bar."""
    queued = build_timeline(run("QUEUED", ended=None), [], now=at(5))
    running = build_timeline(run("RUNNING", ended=None), [], now=at(5))
    assert (queued.run_span.kind, running.run_span.kind) == ("queued", "running")
