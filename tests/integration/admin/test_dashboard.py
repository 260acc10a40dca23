"""The dashboard: runs per minute by status and duration percentiles per function, computed by
the database (percentile_cont on PostgreSQL, the same interpolation in Python elsewhere)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

from django_inngest.admin import stats
from django_inngest.core import ids
from django_inngest.core.clock import FrozenClock
from django_inngest.models import FunctionRun
from tests.helpers import worker_row

URL = "/admin/django_inngest/functionrun/dashboard/"
pytestmark = pytest.mark.django_db


def add_run(function_id: str, status: str, *, seconds: float | None, clock: FrozenClock) -> None:
    """A run enqueued now that took `seconds` to end (None: it has not ended)."""
    now = clock.now()
    FunctionRun.objects.create(
        id=ids.ulid(),
        function_id=function_id,
        status=status,
        created_at=now,
        started_at=now,
        ended_at=None if seconds is None else now + timedelta(seconds=seconds),
    )


def test_durations_per_function_are_the_interpolated_median_and_95th_percentile(
    clock: FrozenClock,
) -> None:
    for seconds in range(1, 11):
        add_run("tests-a", "COMPLETED", seconds=seconds, clock=clock)
    add_run("tests-b", "FAILED", seconds=0.25, clock=clock)
    add_run("tests-b", "RUNNING", seconds=None, clock=clock)
    found = stats.durations(now=clock.now(), window=timedelta(hours=1))
    assert [(d.function_id, d.runs) for d in found] == [("tests-a", 10), ("tests-b", 1)]
    assert found[0].p50.total_seconds() == pytest.approx(5.5)
    assert found[0].p95.total_seconds() == pytest.approx(9.55)
    assert found[1].p50 == found[1].p95 == timedelta(seconds=0.25)


def test_runs_are_counted_per_minute_and_status_within_the_window(clock: FrozenClock) -> None:
    add_run("tests-a", "COMPLETED", seconds=1, clock=clock)
    clock.advance(timedelta(hours=2))
    add_run("tests-a", "COMPLETED", seconds=1, clock=clock)
    add_run("tests-a", "FAILED", seconds=1, clock=clock)
    clock.advance(timedelta(minutes=3))
    add_run("tests-a", "COMPLETED", seconds=1, clock=clock)
    buckets = stats.runs_per_bucket(
        now=clock.now(), window=timedelta(hours=1), size=timedelta(minutes=1)
    )
    assert buckets.count == 60
    assert buckets.total == 3
    completed, failed = buckets.by_status["COMPLETED"], buckets.by_status["FAILED"]
    assert (completed[-1], completed[-4], failed[-4]) == (1, 1, 1)
    assert sum(completed) == 2


def test_the_dashboard_draws_svg_charts_for_the_last_hour_and_day(
    admin_client: Client, clock: FrozenClock
) -> None:
    add_run("tests-<b>bold</b>", "COMPLETED", seconds=2, clock=clock)
    add_run("tests-a", "FAILED", seconds=4, clock=clock)
    response = admin_client.get(URL)
    html = response.content.decode()
    assert html.count('<svg class="inngest-chart"') == 4
    assert "<b>bold</b>" not in html and "tests-&lt;b&gt;bold&lt;/b&gt;" in html
    assert '<rect class="inngest-fill-failed"' in html
    hour, day = response.context["windows"]
    assert (hour["total"], day["total"]) == (2, 2)
    assert [(row["function_id"], row["p50"]) for row in hour["durations"]] == [
        ("tests-<b>bold</b>", "2.0 s"),
        ("tests-a", "4.0 s"),
    ]


def test_the_dashboard_shows_workers_versions_the_backlog_and_warnings(
    admin_client: Client, clock: FrozenClock
) -> None:
    from django_inngest.models import Event

    now = clock.now()
    worker_row("w-new", seen_ago=1, version="b" * 40, in_flight=4)
    worker_row("w-old", seen_ago=2, in_flight=4)
    worker_row("w-dead", seen_ago=120, in_flight=4)
    Event.objects.create(
        id=ids.ulid(), name="shop/x", ts=0, received_at=now - timedelta(seconds=30)
    )
    fleet = admin_client.get(URL).context["fleet"]
    assert (fleet["live"], fleet["gone"], fleet["pending_events"]) == (2, 1, 1)
    assert fleet["warnings"] == ["2 versions live: aaaaaaaaaaaa (1), bbbbbbbbbbbb (1)"]
    assert {w["id"]: w["gone"] for w in fleet["workers"]} == {
        "w-new": False,
        "w-old": False,
        "w-dead": True,
    }
    html = admin_client.get(URL).content.decode()
    assert "2 versions live" in html and "w-dead" in html
