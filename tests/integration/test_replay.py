"""Bulk replay, as Inngest's: rerun every FAILED (or CANCELLED) run of a function enqueued in a
window, from the client, over HTTP (`POST v1/replays`, with a preview) and from the admin
(a preview of the count, then a confirmation), behind the rerun permission (issue 18)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

import django_inngest as inngest
from django_inngest.core.clock import FrozenClock
from django_inngest.models import FunctionRun
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db
BEARER = {"Authorization": "Bearer signkey-test-0123456789abcdef"}
REPLAY = "/admin/django_inngest/functionrun/replay/"


@pytest.fixture
def history(inngest_client: inngest.Inngest, clock: FrozenClock) -> dict[str, Any]:
    """Orders 1-3 failed an hour apart (only 1 before `middle`), 4 completed, 5 was cancelled."""
    broken = {"yes": True}

    @inngest_client.create_function(
        fn_id="charge", trigger=inngest.TriggerEvent(event="shop/order"), retries=0
    )
    def charge(ctx: inngest.ContextSync) -> int:
        if broken["yes"] and ctx.event.data["order"] <= 3:
            raise ValueError("card service down")
        if ctx.event.data["order"] == 5:
            ctx.step.sleep("wait", timedelta(days=1))
        return int(ctx.event.data["order"])

    times: dict[int, datetime] = {}
    for order in (1, 2, 3, 4, 5):
        times[order] = clock.now()
        inngest_client.send_sync(inngest.Event(name="shop/order", data={"order": order}))
        drain()
        clock.advance(timedelta(hours=1))
    inngest_client.cancel(FunctionRun.objects.get(status="SLEEPING").id)
    broken["yes"] = False  # the card service is back
    return {"client": inngest_client, "middle": times[1] + timedelta(minutes=30)}


def statuses() -> list[str]:
    return sorted(FunctionRun.objects.values_list("status", flat=True))


def test_the_client_reruns_failed_runs_of_a_window_and_links_them(
    history: dict[str, Any],
) -> None:
    client: inngest.Inngest = history["client"]
    assert len(client.replay_candidates("tests-charge")) == 3
    new_ids = client.replay("tests-charge", started_after=history["middle"])
    assert len(new_ids) == 2
    originals = FunctionRun.objects.filter(id__in=new_ids).values_list(
        "original_run__event__data", flat=True
    )
    assert sorted(data["order"] for data in originals) == [2, 3]
    drain()
    assert FunctionRun.objects.filter(id__in=new_ids, status="COMPLETED").count() == 2


def test_cancelled_runs_are_replayed_when_asked_and_other_statuses_are_refused(
    history: dict[str, Any],
) -> None:
    client: inngest.Inngest = history["client"]
    assert len(client.replay_candidates("tests-charge", statuses=["CANCELLED"])) == 1
    with pytest.raises(ValueError, match=r"FAILED or CANCELLED, not \['COMPLETED'\]"):
        client.replay_candidates("tests-charge", statuses=["COMPLETED"])
    with pytest.raises(ValueError, match="is not before"):
        client.replay_candidates(
            "tests-charge", started_after=history["middle"], started_before=history["middle"]
        )


def test_the_api_previews_then_replays(history: dict[str, Any], client: Client) -> None:
    body = {"app_id": "tests", "function_id": "charge", "statuses": ["FAILED", "CANCELLED"]}
    preview = client.post(
        "/inngest/v1/replays",
        data={**body, "preview": True},
        content_type="application/json",
        headers=BEARER,
    )
    assert preview.status_code == 200, preview.content
    assert (preview.json()["data"]["runs"], preview.json()["data"]["new_run_ids"]) == (4, [])
    assert FunctionRun.objects.count() == 5, "a preview reruns nothing"
    replayed = client.post(
        "/inngest/v1/replays", data=body, content_type="application/json", headers=BEARER
    )
    assert replayed.status_code == 201, replayed.content
    assert len(replayed.json()["data"]["new_run_ids"]) == 4
    assert FunctionRun.objects.count() == 9


def test_the_api_needs_the_rerun_permission(history: dict[str, Any], client: Client) -> None:
    viewer = User.objects.create_user("viewer")
    viewer.user_permissions.set(Permission.objects.filter(codename="view_functionrun"))
    client.force_login(viewer)
    response = client.post(
        "/inngest/v1/replays",
        data={"app_id": "tests", "function_id": "charge"},
        content_type="application/json",
    )
    assert response.status_code == 403
    assert FunctionRun.objects.count() == 5


def test_the_admin_shows_the_count_then_replays_on_confirmation(
    history: dict[str, Any], admin_client: Client
) -> None:
    form = {"function_id": "tests-charge", "statuses": ["FAILED"]}
    page = admin_client.post(REPLAY, {**form, "preview": ""})
    assert page.status_code == 200
    html = page.content.decode()
    assert "<strong>3 runs</strong> match" in html and 'id="replay-confirm"' in html
    assert FunctionRun.objects.count() == 5
    previewed_at = page.context["preview"]["previewed_at"].isoformat()
    done = admin_client.post(REPLAY, {**form, "previewed_at": previewed_at, "confirm": ""})
    assert done.status_code == 302
    assert done["Location"].endswith("?function=tests-charge")
    assert FunctionRun.objects.filter(original_run__isnull=False).count() == 3


def test_the_admin_page_needs_the_rerun_permission(history: dict[str, Any], client: Client) -> None:
    viewer = User.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_functionrun"))
    client.force_login(viewer)
    assert client.get(REPLAY).status_code == 403
    assert client.post(REPLAY, {"function_id": "tests-charge", "confirm": ""}).status_code == 403
    assert statuses().count("FAILED") == 3 and FunctionRun.objects.count() == 5
