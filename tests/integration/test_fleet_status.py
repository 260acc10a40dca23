"""`inngest_status`: workers, versions, the backlog and missed cron ticks; `--check` fails
with one line for each reason (no worker seen, a due run waiting, an event not matched)."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

import django_inngest as inngest
from django_inngest import store
from django_inngest.core import clock as engine_clock
from django_inngest.core.clock import FrozenClock
from django_inngest.models import CronSchedule
from django_inngest.runtime.claimed import route
from tests.helpers import worker_row

pytestmark = pytest.mark.django_db


def status(*args: str) -> str:
    out = StringIO()
    call_command("inngest_status", *args, stdout=out)
    return out.getvalue()


def check_fails(*args: str) -> str:
    with pytest.raises(CommandError) as raised:
        status("--check", *args)
    return str(raised.value)


@pytest.fixture
def due_run(inngest_client: inngest.Inngest, clock: FrozenClock) -> None:
    """A run of tests-f queued now, and no worker taking it."""
    inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="shop/f"))(
        lambda ctx: None
    )
    inngest_client.send_sync(inngest.Event(name="shop/f"))
    store.fan_out(route, now=engine_clock.now())


@pytest.mark.usefixtures("clock")
def test_check_fails_when_no_worker_was_ever_seen() -> None:
    assert check_fails() == "no worker has been seen (no worker row)"


@pytest.mark.usefixtures("clock")
def test_check_fails_when_no_worker_was_seen_for_longer_than_the_silence_allowed() -> None:
    worker_row("w1", seen_ago=75)
    assert check_fails("--max-worker-silence", "60") == (
        "no worker seen for 75s (more than --max-worker-silence 60)"
    )
    assert status("--check", "--max-worker-silence", "90").startswith("ok: 0 live workers")


@pytest.mark.usefixtures("due_run")
def test_check_fails_when_a_due_run_waits_longer_than_the_backlog_age(
    clock: FrozenClock,
) -> None:
    clock.advance(timedelta(seconds=400))
    worker_row("w1", seen_ago=1)
    assert check_fails("--max-backlog-age", "300") == (
        "1 runs of tests-f due, the oldest 400s late (more than --max-backlog-age 300)"
    )
    assert status("--check", "--max-backlog-age", "500").startswith("ok: 1 live workers")


def test_check_fails_when_an_event_waits_to_be_matched_longer_than_the_backlog_age(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    inngest_client.send_sync([inngest.Event(name="shop/f"), inngest.Event(name="shop/f")])
    clock.advance(timedelta(seconds=301))
    worker_row("w1", seen_ago=1)
    assert check_fails() == (
        "2 events not yet matched, the oldest for 301s (more than --max-backlog-age 300)"
    )


@pytest.mark.usefixtures("due_run")
def test_status_shows_workers_versions_backlog_and_missed_ticks(clock: FrozenClock) -> None:
    CronSchedule.objects.create(
        function_id="tests-nightly",
        cron="0 3 * * *",
        timezone="UTC",
        created_at=engine_clock.now() - timedelta(days=2),
        last_tick_at=None,
    )
    clock.advance(timedelta(seconds=42))
    worker_row("new", seen_ago=2, version="b" * 40)
    worker_row("old", seen_ago=5)
    worker_row("dead", seen_ago=95)
    shown = status()
    assert "Workers (2 live, 1 gone):" in shown
    assert "  GONE dead  version aaaaaaaaaaaa  in flight 3/10" in shown
    assert "last seen 95s ago" in shown
    assert "WARNING: 2 versions live: aaaaaaaaaaaa (1), bbbbbbbbbbbb (1)" in shown
    assert "Events not yet matched: 0" in shown
    assert "  tests-f: 1, oldest 42s late" in shown
    assert "Missed cron ticks (1):\n  tests-nightly 0 3 * * * [UTC]: due " in shown


@pytest.mark.usefixtures("clock")
def test_status_warns_when_no_worker_is_live() -> None:
    worker_row("dead", seen_ago=95)
    assert "WARNING: no live worker: nothing runs" in status()
