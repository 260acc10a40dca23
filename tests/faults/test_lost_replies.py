""" "Did it commit?" (PostgreSQL): the server commits a checkpoint or a run's end, and the
connection drops before the worker hears back (`proxy.ReplyCuttingProxy`). No result is
duplicated, no step lost, no run ended twice, no second `inngest/function.finished`."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest

import django_inngest as inngest
from django_inngest.models import Event, FunctionRun, RunStep
from tests.e2e.conftest import database_url, wait_until
from tests.faults.conftest import Killer
from tests.faults.proxy import ReplyCuttingProxy
from tests.testapp.functions import client
from tests.testapp.models import SideEffect

pytestmark = [pytest.mark.e2e, pytest.mark.faults, pytest.mark.postgres]

#: Text of the statement that ends runs (store.runs._end_runs_in_one_statement) and of the one
#: that writes step results (store.checkpoints._insert_final_steps).
RUN_END = b"ended AS (UPDATE"
CHECKPOINT = b"ON CONFLICT (run_id, hashed_id)"


@pytest.fixture
def proxy(killer: Killer) -> Iterator[tuple[ReplyCuttingProxy, str]]:
    """The proxy, and the DATABASE_URL that goes through it."""
    url = urlsplit(database_url())
    proxy = ReplyCuttingProxy(url.hostname or "127.0.0.1", url.port or 5432)
    port = proxy.start()
    netloc = url.netloc.rsplit("@", 1)
    host = f"{netloc[0]}@127.0.0.1:{port}" if len(netloc) == 2 else f"127.0.0.1:{port}"
    yield proxy, urlunsplit(url._replace(netloc=host))
    proxy.stop()


def finished_events(run: FunctionRun) -> int:
    return Event.objects.filter(name="inngest/function.finished", data__run_id=run.id).count()


def test_a_run_end_committed_but_unheard_ends_the_run_once(
    killer: Killer, proxy: tuple[ReplyCuttingProxy, str]
) -> None:
    cutter, url = proxy
    killer.start(DATABASE_URL=url)
    client.send_sync(inngest.Event(name="faults/steps", data={"n": 0}))
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").exists(), timeout=60)
    cutter.arm(RUN_END)
    client.send_sync(inngest.Event(name="faults/steps", data={"n": 1}))
    wait_until(lambda: not cutter.armed, timeout=60)
    client.send_sync(inngest.Event(name="faults/steps", data={"n": 2}))  # the worker goes on
    runs = killer.settle(3)
    assert [run.status for run in runs] == ["COMPLETED"] * 3
    assert [finished_events(run) for run in runs] == [1, 1, 1]
    assert [run.attempt for run in runs] == [0, 0, 0]
    assert cutter.cuts == 1


def test_a_checkpoint_committed_but_unheard_is_neither_lost_nor_run_again(
    killer: Killer, proxy: tuple[ReplyCuttingProxy, str]
) -> None:
    cutter, url = proxy
    killer.start(DATABASE_URL=url)
    client.send_sync(inngest.Event(name="faults/steps", data={"n": 0}))
    wait_until(lambda: FunctionRun.objects.filter(status="COMPLETED").exists(), timeout=60)
    cutter.arm(CHECKPOINT)
    client.send_sync(inngest.Event(name="faults/steps", data={"n": 1}))
    wait_until(lambda: not cutter.armed, timeout=60)
    runs = killer.settle(2)
    assert [run.status for run in runs] == ["COMPLETED"] * 2
    assert [finished_events(run) for run in runs] == [1, 1]
    second = runs[1]
    assert RunStep.objects.filter(run=second).count() == 3
    assert SideEffect.objects.filter(run_id=second.id, step="s0").count() == 1
    assert second.attempt == 0, "a lost reply is the engine's failure, not an attempt"
