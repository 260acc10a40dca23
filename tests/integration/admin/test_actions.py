"""Cancel, rerun and retry from the run page and as bulk actions, through the client."""

from __future__ import annotations

import pytest
from django.test import Client

from django_inngest.models import Event, FunctionRun, RunStep
from django_inngest.testing import drain
from tests.admin_scenarios import Shop

LIST = "/admin/django_inngest/functionrun/"
pytestmark = pytest.mark.django_db


def run_url(run: FunctionRun, action: str = "change") -> str:
    return f"{LIST}{run.id}/{action}/"


def messages_of(response: object) -> list[str]:
    return [str(m) for m in response.context["messages"]]  # type: ignore[attr-defined]


def test_cancel_on_the_run_page_cancels_a_sleeping_run_like_the_client_does(
    admin_client: Client, shop: Shop
) -> None:
    run = shop.abandoned_cart(1)
    response = admin_client.post(run_url(run, "cancel"), follow=True)
    run.refresh_from_db()
    assert run.status == "CANCELLED"
    assert "Cancelled 1 run(s)" in messages_of(response)
    assert Event.objects.filter(name="inngest/function.cancelled", user_id=run.id).exists()
    assert 'id="cancel-run"' not in response.content.decode()


def test_cancelling_a_run_that_already_ended_changes_nothing_and_says_why(
    admin_client: Client, shop: Shop
) -> None:
    run = shop.order(1)
    response = admin_client.post(run_url(run, "cancel"), follow=True)
    run.refresh_from_db()
    assert run.status == "COMPLETED"
    assert messages_of(response) == [
        f"cannot cancel run '{run.id}': it has already ended (COMPLETED)"
    ]


def test_rerun_on_the_run_page_starts_a_linked_run_and_opens_it(
    admin_client: Client, shop: Shop
) -> None:
    failed = shop.order(7, declined=True)
    shop.declined.clear()
    response = admin_client.post(run_url(failed, "rerun"))
    new = FunctionRun.objects.get(original_run=failed)
    assert response["Location"] == run_url(new)
    assert (new.status, new.event_ids) == ("QUEUED", failed.event_ids)
    drain()
    new.refresh_from_db()
    assert new.status == "COMPLETED"
    html = admin_client.get(run_url(failed)).content.decode()
    assert new.id in html  # listed under "Reruns"


def test_retry_from_the_failed_step_keeps_the_results_of_the_steps_before_it(
    admin_client: Client, shop: Shop
) -> None:
    failed = shop.order(7, declined=True)
    shop.declined.clear()
    shop.calls.clear()
    admin_client.post(run_url(failed, "retry"))
    new = FunctionRun.objects.get(original_run=failed)
    assert list(RunStep.objects.filter(run=new).values_list("step_id", flat=True)) == ["load-order"]
    drain()
    new.refresh_from_db()
    assert new.status == "COMPLETED"
    assert shop.calls == ["charge-card", "email-receipt"]


def test_the_retry_button_is_offered_only_for_runs_that_failed_in_a_step(
    admin_client: Client, shop: Shop
) -> None:
    assert (
        'id="retry-run"' in admin_client.get(run_url(shop.order(7, declined=True))).content.decode()
    )
    assert 'id="retry-run"' not in admin_client.get(run_url(shop.order(8))).content.decode()
    completed = shop.order(9)
    response = admin_client.post(run_url(completed, "retry"), follow=True)
    assert messages_of(response) == [f"run {completed.id} did not fail in a step"]
    assert not FunctionRun.objects.filter(original_run=completed).exists()


def test_bulk_cancel_cancels_the_active_selected_runs_and_reports_the_ended_ones(
    admin_client: Client, shop: Shop
) -> None:
    sleeping = [shop.abandoned_cart(n) for n in range(3)]
    done = shop.order(1)
    response = admin_client.post(
        LIST,
        {"action": "cancel_selected", "_selected_action": [*(r.id for r in sleeping[:2]), done.id]},
        follow=True,
    )
    statuses = {run.id: run.status for run in FunctionRun.objects.all()}
    assert [statuses[r.id] for r in sleeping] == ["CANCELLED", "CANCELLED", "SLEEPING"]
    assert statuses[done.id] == "COMPLETED"
    assert messages_of(response) == [
        "Cancelled 2 run(s)",
        f"cannot cancel run '{done.id}': it has already ended (COMPLETED)",
    ]


def test_bulk_rerun_and_bulk_retry_start_one_new_run_per_eligible_run(
    admin_client: Client, shop: Shop
) -> None:
    failed = [shop.order(n, declined=True) for n in (1, 2)]
    sleeping = shop.abandoned_cart(1)
    selected = [*(r.id for r in failed), sleeping.id]
    admin_client.post(LIST, {"action": "rerun_selected", "_selected_action": selected})
    assert set(
        FunctionRun.objects.filter(original_run__isnull=False).values_list(
            "original_run_id", flat=True
        )
    ) == {r.id for r in failed}
    admin_client.post(LIST, {"action": "retry_selected", "_selected_action": selected})
    retried = RunStep.objects.filter(run__original_run__in=failed, step_id="load-order")
    assert retried.count() == 2
