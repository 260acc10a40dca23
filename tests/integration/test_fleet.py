"""Routing by the database: the newest sync of each app is its current function set; any
worker fans events out to it from the stored definitions and claims only what it serves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

import django_inngest as inngest
from django_inngest import store
from django_inngest.core import clock
from django_inngest.core.function import Function
from django_inngest.models import AppSync, FunctionRun, SyncedFunction, WorkerRecord
from django_inngest.runtime import fleet

pytestmark = pytest.mark.django_db


def fn(fn_id: str, event: str, app_id: str = "tests", **options: object) -> Function:
    return Function(
        app_id=app_id,
        fn_id=fn_id,
        handler=lambda ctx: None,
        trigger=inngest.TriggerEvent(event=event),
        **options,  # type: ignore[arg-type]
    )


F, G = fn("f", "shop/f"), fn("g", "shop/g")


def sync(*functions: Function, by: str = "test") -> None:
    fleet.sync_functions(functions, now=clock.now(), by=by)


def take(catalog: fleet.Catalog, worker_id: str = "w") -> store.PickUp:
    return store.pick_up(
        catalog.route,
        worker_id,
        limit=10,
        now=clock.now(),
        lease_seconds=30,
        fan_out_limit=200,
        planner=catalog.planner,
        pending=catalog.listens_to,
        serves=catalog.serves(),
    )


def send(name: str, **data: object) -> None:
    inngest.Inngest(app_id="tests").send_sync(inngest.Event(name=name, data=data))


def loaded(*served: Function) -> fleet.Catalog:
    catalog = fleet.Catalog(served)
    catalog.load()
    return catalog


def test_a_worker_without_a_functions_code_starts_its_runs_and_leaves_them_queued() -> None:
    sync(F, G)
    old = loaded(F)
    send("shop/g", n=1)
    picked = take(old)
    run = FunctionRun.objects.get()
    assert (picked.fanned.events, picked.claimed) == (1, [])
    assert (run.function_id, run.status) == ("tests-g", "QUEUED")
    assert take(loaded(F, G), "new").claimed[0].run_id == run.id


def test_flow_control_at_fan_out_comes_from_the_stored_definition() -> None:
    """Idempotency of G, which the fanning worker lacks, still holds."""
    sync(F, fn("g", "shop/g", idempotency="event.data.order"))
    old = loaded(F)
    for _ in range(3):
        send("shop/g", order=7)
    take(old)
    assert FunctionRun.objects.count() == 1


def test_the_newest_sync_wins_and_a_removed_function_starts_nothing() -> None:
    sync(F, G, by="new")
    sync(F, by="rolled-back")
    send("shop/g")
    send("shop/f")
    take(loaded(F, G))
    assert list(FunctionRun.objects.values_list("function_id", flat=True)) == ["tests-f"]


def test_a_sync_of_the_same_definitions_adds_no_sync() -> None:
    sync(F, G)
    sync(G, F)
    assert AppSync.objects.count() == 1 and SyncedFunction.objects.count() == 2


def test_two_apps_keep_their_own_current_sets() -> None:
    sync(F)
    sync(fn("h", "shop/h", app_id="other"))
    sync(F, G)  # the first app's new deploy does not drop the other app's functions
    catalog = loaded(F, G)
    assert catalog.current == {"tests-f", "tests-g", "other-h"}
    assert catalog.serves() == {"tests-f", "tests-g"}  # never the other app's runs


def test_a_definition_that_cannot_be_read_back_leaves_only_that_function_out() -> None:
    sync(F, G)
    SyncedFunction.objects.filter(function_id="tests-g").update(options={"fn_id": "g", "x": 1})
    catalog = loaded(F)
    assert set(catalog.broken) == {"tests-g"}
    send("shop/g")
    send("shop/f")
    take(catalog)
    assert list(FunctionRun.objects.values_list("function_id", flat=True)) == ["tests-f"]


def test_a_worker_that_serves_everything_claims_without_a_filter() -> None:
    sync(F, G)
    assert loaded(F, G).serves() is None
    assert loaded(F).serves() == {"tests-f"}


def test_a_run_given_back_is_queued_again_untouched() -> None:
    sync(F, G)
    send("shop/g")
    picked = take(loaded(F, G), "stale")
    run_id = picked.claimed[0].run_id
    assert store.give_back(run_id, "stale")
    assert FunctionRun.objects.get().status == "QUEUED"
    assert take(loaded(F, G), "other").claimed[0].run_id == run_id


@pytest.mark.usefixtures("clock")
def register(worker_id: str, now: datetime, *, functions: list[str]) -> None:
    store.register_worker(
        WorkerRecord(
            id=worker_id,
            host="h",
            pid=1,
            version="v",
            functions=functions,
            concurrency=2,
            started_at=now,
            last_seen_at=now,
        )
    )


def test_a_heartbeat_updates_the_row_and_reports_the_newest_sync() -> None:
    sync(F)
    now = clock.now()
    register("w1", now, functions=["tests-f"])
    sync(F, G)
    later = now + timedelta(seconds=10)
    beat = store.worker_seen("w1", now=later, in_flight=2)
    assert beat is not None and beat.marker == AppSync.objects.latest("id").id
    row = WorkerRecord.objects.get()
    assert (row.last_seen_at, row.in_flight) == (later, 2)
    assert store.served_since(["tests-f", "tests-g"], later) == {"tests-f"}
    assert store.forget_workers_seen_before(later + timedelta(seconds=1)) == 1
    assert store.worker_seen("w1", now=later, in_flight=0) is None


def test_the_database_clock_is_read_alone_and_with_each_heartbeat() -> None:
    """The server runs on this machine here, so its clock reads this machine's time."""
    now = clock.now()
    register("w1", now, functions=[])
    before = datetime.now(UTC)
    alone = store.database_now()
    beat = store.worker_seen("w1", now=now, in_flight=0)
    after = datetime.now(UTC)
    assert beat is not None
    for reading in (alone, beat.database_now):
        assert before - timedelta(seconds=1) <= reading <= after + timedelta(seconds=1)


def test_inngest_sync_makes_the_codes_functions_current_and_says_so(
    inngest_client: inngest.Inngest,
) -> None:
    inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="shop/f"))(
        lambda ctx: None
    )
    out = StringIO()
    call_command("inngest_sync", stdout=out)
    call_command("inngest_sync", stdout=out)
    first, second = out.getvalue().splitlines()
    assert first.startswith("app tests: synced, version ") and "1 functions" in first
    assert second.startswith("app tests: unchanged")
    assert loaded().current == {"tests-f"}


def test_a_run_of_a_function_no_sync_knows_is_given_back_then_counted_as_an_orphan() -> None:
    sync(F)
    catalog = loaded(F)
    assert catalog.serves() is None
    catalog.gave_back("tests-ghost")
    assert catalog.serves() == {"tests-f"}  # claims are filtered from now on
    assert catalog.orphan_candidates(clock.now()) == {"tests-ghost"}
