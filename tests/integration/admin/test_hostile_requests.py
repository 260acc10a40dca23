"""The admin answers 400 or 404, never 500, to a NUL where an id or filter value goes
(PostgreSQL refuses NUL in text; issue 15 point 6)."""

from __future__ import annotations

import pytest
from django.test import Client

PREFIX = "/admin/django_inngest"
NUL = "%00"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        f"{PREFIX}/functionrun/01H{NUL}X/change/",
        f"{PREFIX}/event/01H{NUL}X/change/",
        f"{PREFIX}/event/01H{NUL}X/data/",
        f"{PREFIX}/functionrun/{NUL}/change/",
    ],
)
def test_a_nul_in_an_object_id_is_not_found(admin_client: Client, url: str) -> None:
    assert admin_client.get(url).status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["cancel", "rerun", "retry"])
def test_a_nul_in_the_run_id_of_an_action_is_not_found(admin_client: Client, action: str) -> None:
    assert admin_client.post(f"{PREFIX}/functionrun/01H{NUL}/{action}/").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        f"{PREFIX}/functionrun/?function={NUL}",
        f"{PREFIX}/functionrun/?status={NUL}",
        f"{PREFIX}/functionrun/?q=a{NUL}b",
        f"{PREFIX}/event/?q=a{NUL}b",
        f"{PREFIX}/event/?name={NUL}",
    ],
)
def test_a_nul_in_a_filter_or_search_is_a_bad_request(admin_client: Client, url: str) -> None:
    response = admin_client.get(url)
    assert response.status_code == 400
    assert b"NUL" in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["cancel_selected", "rerun_selected", "retry_selected"])
def test_a_nul_in_the_selected_runs_of_a_bulk_action_is_a_bad_request(
    admin_client: Client, action: str
) -> None:
    response = admin_client.post(
        f"{PREFIX}/functionrun/",
        {"action": action, "_selected_action": ["01HX", "01H\x00Y"], "index": 0},
    )
    assert response.status_code == 400
