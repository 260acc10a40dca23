"""Leases: late writers lose, results are written once, expired leases return to the queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import django_inngest as inngest
from django_inngest import store
from django_inngest.core import clock, ids
from django_inngest.core.engine import LeaseLost, StepRecord
from django_inngest.core.events import prepare
from django_inngest.models import Event, FunctionRun, QueueItem
from django_inngest.runtime.claimed import route

pytestmark = pytest.mark.django_db


def queued_runs(client: inngest.Inngest, count: int) -> list[str]:
    client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"))(lambda ctx: None)
    client.send_sync([inngest.Event(name="t") for _ in range(count)])
    store.fan_out(route, now=clock.now())
    return list(FunctionRun.objects.order_by("id").values_list("id", flat=True))


def queued_run(client: inngest.Inngest) -> str:
    return queued_runs(client, 1)[0]


def claim(worker_id: str) -> list[store.ClaimedRun]:
    return store.claim(worker_id, limit=10, now=clock.now(), lease_seconds=30)


def expire_all_leases() -> None:
    QueueItem.objects.update(lease_expires_at=datetime(2000, 1, 1, tzinfo=UTC))


def record(output: object) -> StepRecord:
    return StepRecord(
        hashed_id=ids.hash_step_id("s"),
        step_id="s",
        index=0,
        op="run",
        status="COMPLETED",
        output=output,
        started_at=clock.now(),
        ended_at=clock.now(),
    )


def test_a_claimed_run_is_not_claimed_again_while_its_lease_lives(
    inngest_client: inngest.Inngest,
) -> None:
    run_id = queued_run(inngest_client)
    assert [c.run_id for c in claim("a")] == [run_id]
    assert claim("b") == []
    assert FunctionRun.objects.get().status == "RUNNING"


def test_an_expired_lease_returns_the_run_to_the_queue_for_any_worker(
    inngest_client: inngest.Inngest,
) -> None:
    run_id = queued_run(inngest_client)
    claim("a")
    expire_all_leases()
    assert store.return_expired_leases() == 1
    assert FunctionRun.objects.get().status == "QUEUED"
    assert [c.run_id for c in claim("b")] == [run_id]


def test_a_late_writer_loses_its_step_and_cannot_end_the_run(
    inngest_client: inngest.Inngest,
) -> None:
    run_id = queued_run(inngest_client)
    claim("a")
    expire_all_leases()
    store.return_expired_leases()
    claim("b")
    with pytest.raises(LeaseLost):
        store.save_step(run_id, "a", record("late"))
    assert not store.end_run(run_id, "a", status="COMPLETED", output="late", now=clock.now())
    assert store.end_run(run_id, "b", status="COMPLETED", output="b", now=clock.now())
    assert FunctionRun.objects.get().output == "b"


def test_a_step_result_is_written_once_and_a_second_writer_reads_the_first(
    inngest_client: inngest.Inngest,
) -> None:
    run_id = queued_run(inngest_client)
    claim("a")
    assert store.save_step(run_id, "a", record("first")).output == "first"
    assert store.save_step(run_id, "a", record("second")).output == "first"


def test_heartbeats_extend_only_the_leases_of_their_worker(inngest_client: inngest.Inngest) -> None:
    queued_run(inngest_client)
    claim("a")
    expire_all_leases()
    assert store.heartbeat("b", 30) == 0
    assert store.heartbeat("a", 30) == 1
    assert store.return_expired_leases() == 0


def test_release_gives_back_what_a_stopping_worker_holds(inngest_client: inngest.Inngest) -> None:
    run_id = queued_run(inngest_client)
    claim("a")
    assert store.release("a") == 1
    assert FunctionRun.objects.get().status == "QUEUED"
    assert [c.run_id for c in claim("b")] == [run_id]


def test_claims_take_the_oldest_due_items_first_and_skip_future_ones(
    inngest_client: inngest.Inngest,
) -> None:
    inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="t"))(
        lambda ctx: None
    )
    now = clock.now()
    inngest_client.send_sync(
        [
            inngest.Event(
                name="t", data={"n": 1}, ts=int((now - timedelta(seconds=5)).timestamp() * 1000)
            ),
            inngest.Event(
                name="t", data={"n": 2}, ts=int((now + timedelta(hours=1)).timestamp() * 1000)
            ),
            inngest.Event(
                name="t", data={"n": 3}, ts=int((now - timedelta(seconds=9)).timestamp() * 1000)
            ),
        ]
    )
    store.fan_out(route, now=now - timedelta(seconds=10))
    claimed = store.claim("a", limit=10, now=now, lease_seconds=30)
    assert [c.events[0].data["n"] for c in claimed] == [3, 1]


def test_grouped_step_writes_are_each_checked_against_their_own_lease(
    inngest_client: inngest.Inngest,
) -> None:
    mine, lost, raced = queued_runs(inngest_client, 3)
    claim("a")
    QueueItem.objects.filter(run_id=lost).update(lease_owner="b")
    assert store.save_step(raced, "a", record("first")).output == "first"
    outcomes = store.save_steps(
        [
            store.StepWrite(run_id=run_id, worker_id="a", record=record(run_id))
            for run_id in (mine, lost, raced)
        ]
    )
    assert [type(o).__name__ for o in outcomes] == ["Memo", "LeaseLost", "Memo"]
    assert [getattr(o, "output", None) for o in outcomes] == [mine, None, "first"]
    memos = store.load_memos([mine, lost, raced])
    assert lost not in memos
    assert [memo.output for run_id in (mine, raced) for memo in memos[run_id].values()] == [
        mine,
        "first",
    ]


def test_grouped_ends_end_only_the_runs_their_worker_still_holds(
    inngest_client: inngest.Inngest,
) -> None:
    first, lost, last = queued_runs(inngest_client, 3)
    claim("a")
    QueueItem.objects.filter(run_id=lost).update(lease_owner="b")
    ends = [
        store.RunEnd(
            run_id=run_id,
            worker_id="a",
            status="COMPLETED" if run_id != last else "FAILED",
            output={"run": run_id},
            now=clock.now(),
            emitted=prepare(
                inngest.Event(name="app/ended", data={"run": run_id}),
                now_ms=clock.now_ms(),
                max_bytes=1 << 20,
            ),
        )
        for run_id in (first, lost, last)
    ]
    assert store.end_runs(ends) == [True, False, True]
    runs = {run.id: run for run in FunctionRun.objects.all()}
    assert (runs[first].status, runs[first].output) == ("COMPLETED", {"run": first})
    assert (runs[last].status, runs[last].output) == ("FAILED", {"run": last})
    assert runs[lost].status == "RUNNING" and runs[lost].output is None
    assert not QueueItem.objects.filter(run_id__in=[first, last]).exists()
    emitted = sorted(Event.objects.filter(name="app/ended").values_list("data", flat=True), key=str)
    assert emitted == sorted([{"run": first}, {"run": last}], key=str)
