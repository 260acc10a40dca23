"""`v1/metrics`: the fleet's state in Prometheus' text format, read from the database at
scrape time, behind the API's authentication."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

import django_inngest as inngest
from django_inngest import store
from django_inngest.core import clock as engine_clock
from django_inngest.core.clock import FrozenClock
from django_inngest.models import FunctionRun
from django_inngest.runtime.claimed import route
from django_inngest.testing import drain
from tests.helpers import worker_row

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("clock")]
BEARER = {"Authorization": "Bearer signkey-test-0123456789abcdef"}


def scrape(client: Client) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Each metric's samples, keyed by their labels."""
    response = client.get("/inngest/v1/metrics", headers=BEARER)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_the_backlog_runs_in_flight_and_workers_are_reported(
    client: Client, inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    inngest_client.create_function(fn_id="f", trigger=inngest.TriggerEvent(event="shop/f"))(
        lambda ctx: None
    )
    inngest_client.create_function(fn_id="nap", trigger=inngest.TriggerEvent(event="shop/nap"))(
        lambda ctx, step: step.sleep("nap", timedelta(hours=1))
    )
    inngest_client.send_sync(inngest.Event(name="shop/nap"))
    drain()  # the nap run sleeps
    for _ in range(3):
        inngest_client.send_sync(inngest.Event(name="shop/f"))
    store.fan_out(route, now=engine_clock.now())  # three runs of f due, none taken
    inngest_client.send_sync(inngest.Event(name="shop/f"))  # one event not matched yet
    clock.advance(timedelta(seconds=42))
    worker_row("w-1", seen_ago=1, version="a" * 40, in_flight=2)
    worker_row("w-2", seen_ago=2, version="b" * 40, in_flight=1)
    worker_row("w-gone", seen_ago=3600, version="a" * 40, in_flight=5)

    metrics = scrape(client)

    assert metrics["inngest_runs_in_flight"] == {
        (("function", "tests-f"), ("status", "QUEUED")): 3.0,
        (("function", "tests-nap"), ("status", "SLEEPING")): 1.0,
    }
    assert metrics["inngest_runs_due"] == {(("function", "tests-f"),): 3.0}
    assert metrics["inngest_runs_due_oldest_seconds"] == {(("function", "tests-f"),): 42.0}
    assert metrics["inngest_events_pending"] == {(): 1.0}
    assert metrics["inngest_events_pending_oldest_seconds"] == {(): 42.0}
    assert metrics["inngest_workers_live"] == {
        (("version", "a" * 12),): 1.0,
        (("version", "b" * 12),): 1.0,
    }
    assert metrics["inngest_worker_runs_in_flight"] == {(): 3.0}
    assert metrics["inngest_worker_slots"] == {(): 20.0}
    assert metrics["inngest_cron_ticks_missed"] == {(): 0.0}
    assert FunctionRun.objects.count() == 4  # reading changed nothing


def test_an_idle_fleet_reports_zeros(client: Client) -> None:
    metrics = scrape(client)
    assert metrics["inngest_events_pending"] == {(): 0.0}
    assert metrics["inngest_events_pending_oldest_seconds"] == {(): 0.0}
    assert "inngest_runs_in_flight" not in metrics
    assert "inngest_workers_live" not in metrics
    assert metrics["inngest_worker_slots"] == {(): 0.0}


def test_metrics_need_a_signing_key_or_the_view_permission(client: Client) -> None:
    assert client.get("/inngest/v1/metrics").status_code == 401
    user = User.objects.create_user("reader")
    client.force_login(user)
    denied = client.get("/inngest/v1/metrics")
    assert denied.status_code == 403
    assert b"django_inngest.view_functionrun" in denied.content
    user.user_permissions.set(Permission.objects.filter(codename="view_functionrun"))
    client.force_login(User.objects.get(pk=user.pk))
    assert client.get("/inngest/v1/metrics").status_code == 200


def test_without_prometheus_client_the_error_names_the_extra(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    response = client.get("/inngest/v1/metrics", headers=BEARER)
    assert response.status_code == 501
    assert "django-inngest-db[metrics]" in response.json()["error"]
