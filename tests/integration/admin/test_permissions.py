"""Who may do what: viewing needs Django's view permissions; cancel, rerun and sending events
need the custom permissions. Read-only staff see no buttons, and their forged POSTs are refused."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from django_inngest.models import Event, FunctionRun
from tests.admin_scenarios import Shop
from tests.integration.admin.conftest import staff_client

LIST = "/admin/django_inngest/functionrun/"
EVENTS = "/admin/django_inngest/event/"
BUTTONS = ('id="cancel-run"', 'id="rerun-run"', 'id="retry-run"', 'id="send-again"')
pytestmark = pytest.mark.django_db


def snapshot() -> tuple[list[tuple[str, str]], int]:
    return list(
        FunctionRun.objects.order_by("id").values_list("id", "status")
    ), Event.objects.count()


def test_staff_without_the_custom_permissions_see_runs_but_no_buttons(
    viewer: Client, shop: Shop
) -> None:
    failed = shop.order(7, declined=True)
    sleeping = shop.abandoned_cart(1)
    pages = [
        viewer.get(f"{LIST}{failed.id}/change/"),
        viewer.get(f"{LIST}{sleeping.id}/change/"),
        viewer.get(f"{EVENTS}{failed.event_id}/change/"),
    ]
    for response in pages:
        assert response.status_code == 200
        assert not any(button in response.content.decode() for button in BUTTONS)
    assert "CardDeclinedError" in pages[0].content.decode()


def test_staff_without_the_custom_permissions_get_no_bulk_actions(
    viewer: Client, shop: Shop
) -> None:
    shop.order(1)
    response = viewer.get(LIST)
    assert response.status_code == 200
    assert response.context["action_form"] is None
    assert 'name="_selected_action"' not in response.content.decode()
    assert viewer.get(EVENTS).context["action_form"] is None


def test_forged_action_posts_from_read_only_staff_are_refused_and_change_nothing(
    viewer: Client, shop: Shop
) -> None:
    failed = shop.order(7, declined=True)
    sleeping = shop.abandoned_cart(1)
    before = snapshot()
    for url in (
        f"{LIST}{sleeping.id}/cancel/",
        f"{LIST}{failed.id}/rerun/",
        f"{LIST}{failed.id}/retry/",
        f"{EVENTS}{failed.event_id}/send-again/",
    ):
        assert viewer.post(url).status_code == 403, url
    invoke = viewer.post(
        "/admin/django_inngest/functionrun/functions/",
        {
            "function_id": "tests-charge-order",
            "event_name": "shop/order.placed",
            "event_data": "{}",
        },
    )
    assert invoke.status_code == 403
    assert snapshot() == before


def test_forged_bulk_actions_from_read_only_staff_change_nothing(
    viewer: Client, shop: Shop
) -> None:
    sleeping = shop.abandoned_cart(1)
    failed = shop.order(7, declined=True)
    before = snapshot()
    for action in ("cancel_selected", "rerun_selected", "retry_selected"):
        viewer.post(LIST, {"action": action, "_selected_action": [sleeping.id, failed.id]})
    viewer.post(EVENTS, {"action": "send_again_selected", "_selected_action": [failed.event_id]})
    assert snapshot() == before


def test_staff_with_only_the_cancel_permission_may_cancel_but_not_rerun(
    db: None, django_user_model: Any, shop: Shop
) -> None:
    canceller = staff_client(
        django_user_model, "canceller", "view_functionrun", "cancel_functionrun"
    )
    sleeping = shop.abandoned_cart(1)
    html = canceller.get(f"{LIST}{sleeping.id}/change/").content.decode()
    assert 'id="cancel-run"' in html
    failed = shop.order(7, declined=True)
    html = canceller.get(f"{LIST}{failed.id}/change/").content.decode()
    assert 'id="rerun-run"' not in html and 'id="retry-run"' not in html
    assert canceller.post(f"{LIST}{failed.id}/rerun/").status_code == 403
    assert canceller.post(f"{LIST}{sleeping.id}/cancel/").status_code == 302
    sleeping.refresh_from_db()
    assert sleeping.status == "CANCELLED"


def test_operators_see_every_button_that_applies(operator: Client, shop: Shop) -> None:
    failed = shop.order(7, declined=True)
    html = operator.get(f"{LIST}{failed.id}/change/").content.decode()
    assert 'id="rerun-run"' in html and 'id="retry-run"' in html
    assert 'id="cancel-run"' not in html  # it has ended
    assert 'id="send-again"' in operator.get(f"{EVENTS}{failed.event_id}/change/").content.decode()


def test_action_urls_refuse_get(operator: Client, shop: Shop) -> None:
    sleeping = shop.abandoned_cart(1)
    assert operator.get(f"{LIST}{sleeping.id}/cancel/").status_code == 405
    sleeping.refresh_from_db()
    assert sleeping.status == "SLEEPING"


def test_users_without_the_view_permission_cannot_see_runs_or_the_dashboard(
    db: None, django_user_model: Any, shop: Shop
) -> None:
    nobody = staff_client(django_user_model, "nobody")
    run = shop.order(1)
    for url in (
        LIST,
        f"{LIST}{run.id}/change/",
        f"{LIST}{run.id}/value/output/",
        f"{LIST}dashboard/",
        f"{LIST}functions/",
        f"{EVENTS}{run.event_id}/data/",
    ):
        assert nobody.get(url).status_code == 403, url


def test_anonymous_visitors_are_sent_to_the_login_page(client: Client, shop: Shop) -> None:
    run = shop.abandoned_cart(1)
    response = client.post(f"{LIST}{run.id}/cancel/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    run.refresh_from_db()
    assert run.status == "SLEEPING"


def test_an_action_post_without_the_csrf_token_is_refused(
    db: None, django_user_model: Any, shop: Shop
) -> None:
    user = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    run = shop.abandoned_cart(1)
    assert browser.post(f"{LIST}{run.id}/cancel/").status_code == 403
    run.refresh_from_db()
    assert run.status == "SLEEPING"
