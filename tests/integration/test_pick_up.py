"""pick_up: an idle worker matches an event and starts its run in the same transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

import django_inngest as inngest
from django_inngest import store
from django_inngest.core import clock
from django_inngest.models import Event, FunctionRun, QueueItem
from django_inngest.runtime.claimed import planner, route

pytestmark = pytest.mark.django_db


def pick_up(worker_id: str, limit: int = 10) -> store.PickUp:
    return store.pick_up(
        route,
        worker_id,
        limit=limit,
        now=clock.now(),
        lease_seconds=30,
        fan_out_limit=200,
        planner=planner,
    )


def function(client: inngest.Inngest, fn_id: str, event: str, **options: object) -> None:
    client.create_function(fn_id=fn_id, trigger=inngest.TriggerEvent(event=event), **options)(
        lambda ctx: None
    )


def test_the_run_an_idle_worker_creates_is_leased_to_it_with_its_event(
    inngest_client: inngest.Inngest,
) -> None:
    function(inngest_client, "f", "t")
    inngest_client.send_sync(inngest.Event(name="t", data={"k": 1}))
    picked = pick_up("me")
    run = FunctionRun.objects.get()
    assert [(c.run_id, c.function_id, c.memos) for c in picked.claimed] == [(run.id, "tests-f", {})]
    assert picked.claimed[0].events[0].data == {"k": 1}
    assert run.status == "RUNNING" and run.started_at is not None
    item = QueueItem.objects.get(run_id=run.id)
    assert item.lease_owner == "me" and item.lease_expires_at is not None
    assert pick_up("other").claimed == []


def test_runs_already_due_go_first_and_the_new_run_waits_for_a_claim(
    inngest_client: inngest.Inngest,
) -> None:
    function(inngest_client, "f", "t")
    inngest_client.send_sync(inngest.Event(name="t", data={"k": "old"}))
    store.fan_out(route, now=clock.now())
    old = FunctionRun.objects.get().id
    inngest_client.send_sync(inngest.Event(name="t", data={"k": "new"}))
    picked = pick_up("me", limit=1)
    assert [c.run_id for c in picked.claimed] == [old]
    new = FunctionRun.objects.exclude(id=old).get()
    assert new.status == "QUEUED"
    assert QueueItem.objects.get(run_id=new.id).lease_owner is None


def test_a_run_under_a_concurrency_limit_is_claimed_through_its_key_not_leased_as_created(
    inngest_client: inngest.Inngest,
) -> None:
    function(inngest_client, "f", "t", concurrency=[inngest.Concurrency(limit=1)])
    inngest_client.send_sync([inngest.Event(name="t"), inngest.Event(name="t")])
    picked = pick_up("me")
    assert len(picked.claimed) == 1
    assert sorted(FunctionRun.objects.values_list("status", flat=True)) == ["QUEUED", "RUNNING"]
    assert QueueItem.objects.filter(parked_on__isnull=False).count() == 1


def test_a_leased_run_with_a_finish_timeout_gets_its_timer_and_no_start_timer(
    inngest_client: inngest.Inngest,
) -> None:
    function(
        inngest_client,
        "f",
        "t",
        timeouts=inngest.Timeouts(start=timedelta(minutes=1), finish=timedelta(minutes=5)),
    )
    inngest_client.send_sync(inngest.Event(name="t"))
    assert len(pick_up("me").claimed) == 1
    kinds = sorted(QueueItem.objects.values_list("kind", flat=True))
    assert kinds == [QueueItem.Kind.FINISH_TIMEOUT, QueueItem.Kind.RUN]


def test_only_as_many_runs_as_free_slots_are_leased_and_the_rest_stay_queued(
    inngest_client: inngest.Inngest,
) -> None:
    function(inngest_client, "f", "t")
    inngest_client.send_sync([inngest.Event(name="t") for _ in range(3)])
    assert len(pick_up("me", limit=2).claimed) == 2
    assert sorted(FunctionRun.objects.values_list("status", flat=True)) == [
        "QUEUED",
        "RUNNING",
        "RUNNING",
    ]


def test_an_idle_worker_picks_up_an_event_without_a_claim(
    inngest_client: inngest.Inngest,
) -> None:
    """Read the events; write the run, its queue item (already leased) and mark the event, in
    one statement on PostgreSQL and three on SQLite."""
    function(inngest_client, "f", "t")
    inngest_client.send_sync(inngest.Event(name="t"))
    with CaptureQueriesContext(connections[store.alias()]) as captured:
        assert len(pick_up("me").claimed) == 1
    statements = [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) == (2 if store.is_postgresql() else 4), statements


# --- pick_up_event: one event known from its notification, on PostgreSQL --------------------

SEED = "1790000000000,AAECAwQFBgcICQ=="


def notification_of(send: Callable[[], object]) -> str:
    """The payload of the notification `send` makes, as a worker's listener receives it."""
    import psycopg

    params = connections[store.alias()].get_connection_params()
    keys = ("dbname", "user", "password", "host", "port")
    with psycopg.connect(**{k: params[k] for k in keys if params.get(k)}, autocommit=True) as db:
        db.execute(f"LISTEN {store.CHANNEL}")
        send()
        [notification] = db.notifies(timeout=5, stop_after=1)
    return notification.payload


def pick_up_event(payload: str, worker_id: str, limit: int = 10) -> list[store.ClaimedRun] | None:
    event = store.described_event(payload)
    assert event is not None, payload
    return store.pick_up_event(
        event, route, worker_id, limit=limit, now=clock.now(), lease_seconds=30, planner=planner
    )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_described_by_its_notification_is_taken_with_its_run_in_one_statement(
    inngest_client: inngest.Inngest,
) -> None:
    function(inngest_client, "f", "t")
    payload = notification_of(
        lambda: inngest_client.send_sync(inngest.Event(name="t", data={"bb": 1, "a": [2]}))
    )
    with CaptureQueriesContext(connections[store.alias()]) as captured:
        claimed = pick_up_event(payload, "me")
    assert len(captured.captured_queries) == 1
    run = FunctionRun.objects.get()
    assert claimed is not None
    assert [(c.run_id, c.function_id, c.memos) for c in claimed] == [(run.id, "tests-f", {})]
    stored = Event.objects.get()
    assert claimed[0].events[0].data == stored.data == {"a": [2], "bb": 1}
    assert claimed[0].events[0].id == stored.id and not stored.pending
    assert run.status == "RUNNING" and run.event_id == stored.id
    item = QueueItem.objects.get(run_id=run.id)
    assert item.lease_owner == "me" and item.lease_expires_at is not None
    assert timedelta(seconds=25) < item.lease_expires_at - timezone.now() <= timedelta(seconds=30)
    assert pick_up_event(payload, "other") is None  # taken: the other worker writes nothing
    assert FunctionRun.objects.count() == 1
    assert pick_up("other").claimed == []


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_event_that_starts_nothing_is_taken_alone(inngest_client: inngest.Inngest) -> None:
    inngest_client.create_function(
        fn_id="f", trigger=inngest.TriggerEvent(event="t", expression="event.data.go == true")
    )(lambda ctx: None)
    payload = notification_of(
        lambda: inngest_client.send_sync(inngest.Event(name="t", data={"go": False}))
    )
    assert pick_up_event(payload, "me") == []
    assert not Event.objects.get().pending
    assert not FunctionRun.objects.exists()


def due_run_waiting(client: inngest.Inngest) -> None:
    function(client, "older", "old")
    client.send_sync(inngest.Event(name="old"))
    store.fan_out(route, now=clock.now())


def run_waiting_for_t(client: inngest.Inngest) -> None:
    client.create_function(
        fn_id="waits",
        trigger=inngest.TriggerEvent(event="w"),
        cancel=[inngest.Cancel(event="t")],
    )(lambda ctx: None)
    client.send_sync(inngest.Event(name="w"))
    pick_up("elsewhere")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("options", "before", "limit"),
    [
        ({"concurrency": [inngest.Concurrency(limit=1)]}, None, 10),
        ({"throttle": inngest.Throttle(limit=1, period=timedelta(seconds=5))}, None, 10),
        ({"debounce": inngest.Debounce(period=timedelta(seconds=5))}, None, 10),
        ({"singleton": inngest.Singleton(mode="skip")}, None, 10),
        ({}, due_run_waiting, 10),
        ({}, run_waiting_for_t, 10),
        ({}, None, 0),
    ],
    ids=["concurrency", "throttle", "debounce", "singleton", "runs-due", "waiting", "no-slot"],
)
def test_what_one_statement_cannot_do_is_left_to_pick_up(
    inngest_client: inngest.Inngest,
    options: dict[str, object],
    before: Callable[[inngest.Inngest], None] | None,
    limit: int,
) -> None:
    if before is not None:
        before(inngest_client)
    function(inngest_client, "f", "t", **options)
    runs = set(FunctionRun.objects.values_list("id", flat=True))
    payload = notification_of(lambda: inngest_client.send_sync(inngest.Event(name="t")))
    assert pick_up_event(payload, "me", limit=limit) is None
    assert set(FunctionRun.objects.values_list("id", flat=True)) == runs
    assert Event.objects.get(name="t").pending
    pick_up("me", limit=limit)
    assert not Event.objects.get(name="t").pending


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_notification_describes_only_a_single_small_event_sent_without_a_seed(
    inngest_client: inngest.Inngest,
) -> None:
    function(inngest_client, "f", "t")

    def described(send: Callable[[], object]) -> bool:
        return store.described_event(notification_of(send)) is not None

    assert described(lambda: inngest_client.send_sync(inngest.Event(name="t", data={"k": 1})))
    assert not described(
        lambda: inngest_client.send_sync([inngest.Event(name="t"), inngest.Event(name="t")])
    )
    assert not described(
        lambda: inngest_client.send_sync(inngest.Event(name="t", data={"k": "x" * 8000}))
    )
    assert not described(lambda: inngest_client.send_sync(inngest.Event(name="t"), id_seed=SEED))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("turned_off", [False, True], ids=["default", "prepare_threshold-None"])
def test_the_statement_that_takes_an_event_is_prepared_unless_turned_off(
    inngest_client: inngest.Inngest, turned_off: bool
) -> None:
    connection = connections[store.alias()]
    options = connection.settings_dict["OPTIONS"]
    if turned_off:
        options["prepare_threshold"] = None
        connection.close()
    try:
        function(inngest_client, "f", "t")
        for _ in range(3):
            payload = notification_of(lambda: inngest_client.send_sync(inngest.Event(name="t")))
            assert pick_up_event(payload, "me")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
                ["WITH claimed AS (UPDATE %"],
            )
            assert cursor.fetchone() == (0 if turned_off else 1,)
    finally:
        options.pop("prepare_threshold", None)
        connection.close()
