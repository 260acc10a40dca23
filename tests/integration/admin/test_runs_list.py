"""The runs list: columns, filters, search, the capped count, and a fixed number of queries."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import Q
from django.test import Client

import django_inngest as inngest
from django_inngest.admin import listing
from django_inngest.core.clock import FrozenClock
from django_inngest.models import FunctionRun
from django_inngest.testing import drain
from tests.admin_scenarios import Shop

URL = "/admin/django_inngest/functionrun/"
pytestmark = pytest.mark.django_db


def listed(client: Client, query: str = "") -> list[str]:
    """Ids of the runs the list shows, in order."""
    response = client.get(URL + query)
    assert response.status_code == 200
    return [run.id for run in response.context["cl"].result_list]


def test_the_list_shows_status_function_trigger_started_duration_and_attempts(
    admin_client: Client, shop: Shop
) -> None:
    failed = shop.order(7, declined=True)
    response = admin_client.get(URL)
    html = response.content.decode()
    assert '<span class="inngest-status inngest-status-failed">Failed</span>' in html
    row = next(r for r in response.context["cl"].result_list if r.id == failed.id)
    assert (row.function_id, row.event_name, row.most_attempts) == (
        "tests-charge-order",
        "shop/order.placed",
        3,
    )
    assert ">shop/order.placed<" in html
    assert ">4.9 s<" in html  # 0.4 s loading, three 1.5 s charge attempts


def test_a_run_that_retried_nothing_shows_one_attempt(admin_client: Client, shop: Shop) -> None:
    shop.order(1)
    [row] = admin_client.get(URL).context["cl"].result_list
    assert row.most_attempts == 1


def test_newest_runs_come_first(admin_client: Client, shop: Shop) -> None:
    runs = [shop.order(n).id for n in range(3)]
    assert listed(admin_client) == runs[::-1]


def test_the_list_filters_by_status_and_function(admin_client: Client, shop: Shop) -> None:
    completed = shop.order(1)
    failed = shop.order(2, declined=True)
    sleeping = shop.abandoned_cart(3)
    assert listed(admin_client, "?status__exact=FAILED") == [failed.id]
    assert listed(admin_client, "?function=tests-cart-reminder") == [sleeping.id]
    assert listed(admin_client, "?function=tests-charge-order&status__exact=COMPLETED") == [
        completed.id
    ]


def test_the_time_filter_keeps_runs_enqueued_within_the_window(
    admin_client: Client, shop: Shop, clock: FrozenClock
) -> None:
    old = shop.order(1)
    clock.advance(timedelta(hours=2))
    recent = shop.order(2)
    assert listed(admin_client, "?within=1h") == [recent.id]
    assert listed(admin_client, "?within=24h") == [recent.id, old.id]


def test_search_finds_a_run_by_its_id_and_by_its_event_ids(
    admin_client: Client, shop: Shop
) -> None:
    run = shop.order(1, declined=True)
    shop.order(2)
    sent = shop.client.send_sync(
        inngest.Event(name="shop/order.placed", data={"order_id": 5}, id="ord-5")
    )
    drain()
    by_sender = FunctionRun.objects.get(event_id=sent[0])
    assert listed(admin_client, f"?q={run.id}") == [run.id]
    assert listed(admin_client, f"?q={run.id.lower()}") == [run.id]
    assert listed(admin_client, f"?q={run.event_id}") == [run.id]
    assert listed(admin_client, "?q=ord-5") == [by_sender.id]


def test_search_finds_runs_by_text_in_their_event_data(admin_client: Client, shop: Shop) -> None:
    alice = shop.order(1, customer="alice@example.com")
    shop.order(2, customer="bob@example.com")
    assert listed(admin_client, "?q=ALICE@example") == [alice.id]
    assert listed(admin_client, "?q=nobody-has-this") == []


def test_a_text_search_reads_only_the_newest_matching_events_up_to_the_cap(
    admin_client: Client, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search reads one event past the cap, and each run's `inngest/function.finished`
    event carries its data too: 5 events (finished 3, event 3, finished 2, event 2,
    finished 1) and so 2 runs."""
    monkeypatch.setattr(listing, "COUNT_CAP", 4)
    runs = [shop.order(n, customer="carol").id for n in range(3)]
    assert listed(admin_client, "?q=carol") == runs[:0:-1]


@pytest.mark.parametrize("windows", [(2, 4), (100, 1000)])
def test_text_search_finds_the_newest_matches_whether_they_are_recent_or_old(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, windows: tuple[int, int]
) -> None:
    """Small windows make the search read the newest 2 events, then 4, then all."""
    monkeypatch.setattr(listing, "SEARCH_WINDOWS", windows)
    send = shop.client.send_sync
    [old] = send(inngest.Event(name="shop/note", data={"text": "rare word"}))
    noise = send([inngest.Event(name="shop/note", data={"text": "common"})] * 5)
    [recent] = send(inngest.Event(name="shop/note", data={"text": "common, not rare"}))
    assert listing.newest_events_where(Q(data__icontains="RARE"), 10) == [recent, old]
    common = listing.newest_events_where(Q(data__icontains="common"), 3)
    assert common == [recent, noise[-1], noise[-2]]


def test_the_count_stops_at_the_cap_and_the_list_says_more_than(
    admin_client: Client, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "COUNT_CAP", 3)
    for n in range(5):
        shop.order(n)
    response = admin_client.get(URL + "?status__exact=COMPLETED")
    assert response.context["cl"].result_count == 3
    assert "more than 3 function runs" in response.content.decode()
    assert (
        "more than" not in admin_client.get(URL + "?function=tests-cart-reminder").content.decode()
    )


def test_the_search_box_counts_results_up_to_the_cap_and_says_more_than(
    admin_client: Client, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "COUNT_CAP", 3)
    shop.client.send_sync(inngest.Event(name="shop/visit"))
    events = "/admin/django_inngest/event/?q=shop/visit"
    assert "1 result\n" in admin_client.get(events).content.decode()
    shop.client.send_sync([inngest.Event(name="shop/visit")] * 4)
    assert "more than 3 results" in admin_client.get(events).content.decode()


def test_the_list_costs_the_same_queries_for_three_runs_and_for_thirty(
    admin_client: Client, shop: Shop, django_assert_num_queries: object
) -> None:
    """Session, user, capped count, the page of runs (event name and attempts joined in):
    no query per row, whatever the number of runs or steps."""
    for n in range(3):
        shop.order(n, declined=n == 0)
    admin_client.get(URL)  # warm the per-process caches (content types, permissions)
    with django_assert_num_queries(4):  # type: ignore[operator]
        admin_client.get(URL)
    for n in range(3, 30):
        shop.order(n, declined=n % 7 == 0)
    with django_assert_num_queries(4) as captured:  # type: ignore[operator]
        admin_client.get(URL)
    count_sql = captured.captured_queries[2]["sql"]
    assert "LIMIT 10001" in count_sql and "inngest_runstep" not in count_sql.lower()
