"""A worker whose own clock is 2 minutes off (through the engine's clock seam,
TESTAPP_CLOCK_OFFSET_SECONDS) next to healthy workers: what decides between workers must be
compared against the database's clock (DESIGN §10, "One clock")."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db.models import Count

import django_inngest as inngest
from django_inngest.models import CronSchedule, CronTick, FunctionRun, RunStep
from tests.e2e.conftest import wait_until
from tests.faults.conftest import Killer
from tests.testapp.clock import set_file_clock
from tests.testapp.functions import client
from tests.testapp.models import SideEffect

pytestmark = [pytest.mark.e2e, pytest.mark.faults]
AHEAD = {"TESTAPP_CLOCK_OFFSET_SECONDS": "120"}


def stays(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether `condition` holds throughout the next `seconds` (polled)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.1)
    return True


def test_a_worker_two_minutes_ahead_does_not_steal_a_live_lease(killer: Killer) -> None:
    killer.start()
    client.send_sync(inngest.Event(name="faults/slow", data={"seconds": 6}))
    wait_until(lambda: SideEffect.objects.filter(step="slow").exists(), timeout=60)
    killer.start(**AHEAD)  # its sweep runs every 0.5 s, with leases of 3 s
    [run] = killer.settle(1)
    assert run.status == "COMPLETED"
    assert SideEffect.objects.filter(step="slow").count() == 1
    assert RunStep.objects.get(run=run, step_id="nap").attempts == 1


def test_a_worker_two_minutes_ahead_fires_no_cron_tick_twice(
    killer: Killer, tmp_path: Path
) -> None:
    first_tick = datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
    clock_file = tmp_path / "clock"
    set_file_clock(clock_file, first_tick - timedelta(seconds=30))
    cron = {"TESTAPP_CLOCK_FILE": str(clock_file), "TESTAPP_CRON": "* * * * *"}
    killer.start(**cron)
    wait_until(CronSchedule.objects.exists, timeout=60)
    killer.start(**cron, **AHEAD)
    for minute in range(5):
        set_file_clock(clock_file, first_tick + timedelta(minutes=minute, seconds=1))
        # The healthy worker fires this minute's tick unless the other fired it already.
        wait_until(
            lambda m=minute: CronTick.objects.filter(  # type: ignore[misc]
                scheduled_at=first_tick + timedelta(minutes=m)
            ).exists(),
            timeout=30,
        )
    runs = killer.settle(CronTick.objects.count())
    ticks = CronTick.objects.values("scheduled_at").annotate(n=Count("id"))
    assert {row["n"] for row in ticks} == {1}
    events = [run.event.user_id for run in runs if run.event is not None]
    assert len(events) == len(set(events)) == len(runs), "a tick started two runs"


def test_a_worker_two_minutes_ahead_does_not_wake_a_sleep_early(killer: Killer) -> None:
    healthy = killer.start()
    client.send_sync(inngest.Event(name="faults/sleep", data={"ms": 60_000}))
    wait_until(lambda: FunctionRun.objects.filter(status="SLEEPING").exists(), timeout=60)
    killer.kill(healthy)  # nothing but the skewed worker is left to wake it
    killer.start(**AHEAD)
    client.send_sync(inngest.Event(name="faults/steps"))  # done once the worker is claiming
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").exists(), timeout=60)
    assert stays(lambda: not SideEffect.objects.filter(step="after").exists(), 3)
