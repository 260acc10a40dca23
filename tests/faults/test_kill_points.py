"""SIGKILL a worker parked at each kill point (`django_inngest.killpoints`), start another:
the run completes there and the invariants hold (DESIGN §9). The kill is exact: the worker
waits at the point until it is killed."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import django_inngest as inngest
from django_inngest.models import CronSchedule, CronTick, FlowState, FunctionRun, RunStep
from tests.e2e.conftest import wait_until
from tests.faults.conftest import Killer
from tests.testapp.clock import set_file_clock
from tests.testapp.functions import client
from tests.testapp.models import SideEffect

pytestmark = [pytest.mark.e2e, pytest.mark.faults]


def bodies(run: FunctionRun) -> dict[str, int]:
    """How often each step body of `run` ran."""
    counts: dict[str, int] = {}
    for step in SideEffect.objects.filter(run_id=run.id).values_list("step", flat=True):
        counts[step] = counts.get(step, 0) + 1
    return counts


def test_killed_after_claiming_a_run_it_never_started(killer: Killer) -> None:
    client.send_sync(inngest.Event(name="faults/steps"))
    killer.kill_at("after-claim")
    assert not SideEffect.objects.exists()
    killer.start()
    [run] = killer.settle(1)
    assert (run.status, run.output) == ("COMPLETED", ["s0", "s1", "s2"])
    assert bodies(run) == {"s0": 1, "s1": 1, "s2": 1}


def test_killed_during_a_step_body_the_step_runs_again_elsewhere(killer: Killer) -> None:
    client.send_sync(inngest.Event(name="faults/steps"))
    killer.kill_at("step-body")  # in s1's body, after its ledger row
    killer.start()
    [run] = killer.settle(1)
    assert run.status == "COMPLETED"
    assert bodies(run) == {"s0": 1, "s1": 2, "s2": 1}


def test_killed_after_a_step_body_before_its_checkpoint_the_step_runs_again(
    killer: Killer,
) -> None:
    client.send_sync(inngest.Event(name="faults/steps"))
    killer.kill_at("before-checkpoint")  # s0 ran, its result unwritten
    assert not RunStep.objects.exists()
    killer.start()
    [run] = killer.settle(1)
    assert run.status == "COMPLETED"
    assert bodies(run) == {"s0": 2, "s1": 1, "s2": 1}


def test_killed_after_a_checkpoint_the_step_does_not_run_again(killer: Killer) -> None:
    client.send_sync(inngest.Event(name="faults/steps"))
    killer.kill_at("after-checkpoint")  # s0's result is committed
    assert list(RunStep.objects.values_list("step_id", "status")) == [("s0", "COMPLETED")]
    killer.start()
    [run] = killer.settle(1)
    assert (run.status, run.output) == ("COMPLETED", ["s0", "s1", "s2"])
    assert bodies(run) == {"s0": 1, "s1": 1, "s2": 1}


def test_killed_while_registering_a_sleep_the_run_sleeps_and_ends_elsewhere(
    killer: Killer,
) -> None:
    client.send_sync(inngest.Event(name="faults/sleep", data={"ms": 300}))
    killer.kill_at("suspend")
    assert FunctionRun.objects.get().status == "RUNNING"  # the suspension rolled back
    killer.start()
    [run] = killer.settle(1)
    assert (run.status, run.output) == ("COMPLETED", "after")
    assert bodies(run) == {"before": 1, "after": 1}


def test_killed_while_registering_a_wait_the_run_waits_elsewhere_and_gets_its_event(
    killer: Killer,
) -> None:
    client.send_sync(inngest.Event(name="faults/wait", data={"k": "x"}))
    killer.kill_at("suspend")
    killer.start()
    wait_until(lambda: FunctionRun.objects.get().status == "WAITING", timeout=60)
    client.send_sync(inngest.Event(name="faults/go", data={"k": "x"}))
    [run] = killer.settle(1)
    assert (run.status, run.output) == ("COMPLETED", "x")
    assert bodies(run) == {"before": 1, "after": 1}


def test_killed_during_fan_out_no_event_is_lost_or_started_twice(killer: Killer) -> None:
    client.send_sync([inngest.Event(name="faults/steps", data={"n": n}) for n in range(5)])
    killer.kill_at("fan-out")
    assert not FunctionRun.objects.exists()  # the fan-out rolled back
    killer.start()
    runs = killer.settle(5)
    assert [run.status for run in runs] == ["COMPLETED"] * 5


def test_killed_during_a_batch_flush_the_batch_runs_once_with_all_its_events(
    killer: Killer,
) -> None:
    client.send_sync([inngest.Event(name="faults/batch", data={"n": n}) for n in range(3)])
    killer.kill_at("batch-flush")
    killer.start()
    [run] = killer.settle(1)
    assert (run.status, run.output) == ("COMPLETED", [0, 1, 2])


def test_killed_while_a_debounce_replaces_its_event_the_last_event_runs_once(
    killer: Killer,
) -> None:
    first = killer.start()
    client.send_sync(inngest.Event(name="faults/debounce", data={"n": 1}))
    wait_until(lambda: FlowState.objects.filter(kind="debounce").exists(), timeout=60)
    first.send_signal(signal.SIGTERM)
    assert first.wait(30) == 0
    assert not FunctionRun.objects.exists(), "the debounce fired before the replacement"
    client.send_sync(inngest.Event(name="faults/debounce", data={"n": 2}))
    killer.kill_at("debounce")
    killer.start()
    [run] = killer.settle(1)
    assert (run.status, run.output) == ("COMPLETED", 2)


def test_killed_during_a_cron_tick_the_tick_fires_once_elsewhere(
    killer: Killer, tmp_path: Path
) -> None:
    first_tick = datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
    clock_file = tmp_path / "clock"
    set_file_clock(clock_file, first_tick - timedelta(seconds=30))
    cron = {"TESTAPP_CLOCK_FILE": str(clock_file), "TESTAPP_CRON": "* * * * *"}
    worker = killer.start(
        INNGEST_TEST_PARK_AT="cron-tick",
        INNGEST_TEST_PARK_MARKER=str(tmp_path / "parked"),
        **cron,
    )
    wait_until(CronSchedule.objects.exists, timeout=60)  # its scheduler started
    set_file_clock(clock_file, first_tick)
    wait_until(lambda: (tmp_path / "parked").exists(), timeout=60)
    killer.kill(worker)
    assert not CronTick.objects.exists()  # the tick rolled back
    killer.start(**cron)
    [run] = killer.settle(1)
    assert (run.status, run.output) == ("COMPLETED", "2030-01-01T00:01:00Z")
    assert CronTick.objects.count() == 1
