"""The admin in a real browser: Debian's Chromium, driven by Playwright, against a live server.

`make test` installs Chromium from Debian's packages when /usr/bin/chromium is missing; these
tests fail (never skip) without it. Screenshots land in tests/artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connections
from playwright.sync_api import Page, expect, sync_playwright

import django_inngest as inngest
from django_inngest.admin import runs
from django_inngest.core.clock import FrozenClock
from django_inngest.models import FunctionRun
from django_inngest.testing import drain
from tests.admin_scenarios import Shop, open_shop

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

pytestmark = pytest.mark.browser


@pytest.fixture
def page(
    transactional_db: None,
    live_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    settings: Any,
    tmp_path: Path,
) -> Iterator[Page]:
    """A fresh Chromium profile with the admin's superuser logged in."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    # Playwright's sync API keeps an event loop in this thread, which makes Django refuse the
    # test's own synchronous ORM calls; none of them runs while the loop is working.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from django.contrib.auth.models import User

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins

    User.objects.create_superuser("admin", "admin@example.com", "secret-pw")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1680, "height": 1000},
            base_url=live_server.url,
        )
        context.set_default_timeout(10_000)
        browser_page = context.new_page()
        browser_page.goto("/admin/login/")
        browser_page.fill("#id_username", "admin")
        browser_page.fill("#id_password", "secret-pw")
        browser_page.click("input[type=submit]")
        expect(browser_page.locator("#site-name")).to_be_visible()
        yield browser_page
        context.close()
        # While Playwright runs, Django keeps this thread's database connections apart (it
        # sees an event loop); close those the test opened, or PostgreSQL keeps them.
        connections.close_all()


@pytest.fixture
def shop(isolated_registry: object, clock: FrozenClock) -> Shop:
    return open_shop(inngest.Inngest(app_id="tests"), clock)


def screenshot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_a_failed_run_shows_its_error_and_a_timeline_of_its_steps(page: Page, shop: Shop) -> None:
    shop.order(8)
    shop.abandoned_cart(3)
    failed = shop.order(7, declined=True)
    shop.order(9)

    page.goto("/admin/django_inngest/functionrun/")
    expect(page.locator("#result_list tbody tr")).to_have_count(4)
    screenshot(page, "runs-list.png")
    page.click(f"text={failed.id}")

    expect(page.locator("#run-status")).to_have_text("Failed")
    error = page.locator("#run-error")
    expect(error).to_contain_text("CardDeclinedError")
    expect(error).to_contain_text("card declined for order 7")
    expect(page.locator("#timeline details")).to_have_count(2)
    charge = page.locator("#timeline details[data-step=charge-card]")
    expect(charge.locator("summary")).to_contain_text("failed")
    expect(charge.locator("summary")).to_contain_text("3 attempts")
    charge.locator("summary").click()
    expect(charge).to_contain_text("Attempt 1 failed")
    expect(charge).to_contain_text("Attempt 2 failed")
    expect(charge).to_contain_text("Final attempt failed")
    screenshot(page, "run-page.png")


def test_cancelling_a_sleeping_run_from_its_page_shows_it_cancelled(page: Page, shop: Shop) -> None:
    sleeping = shop.abandoned_cart(3)
    page.goto(f"/admin/django_inngest/functionrun/{sleeping.id}/change/")
    expect(page.locator("#run-status")).to_have_text("Sleeping")
    wait = page.locator("#timeline details[data-step=wait-a-day]")
    wait.locator("summary").click()
    expect(wait).to_contain_text("Sleeping until")
    screenshot(page, "run-page-sleeping.png")

    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel-run")

    expect(page.locator("#run-status")).to_have_text("Cancelled")
    expect(page.locator(".messagelist")).to_contain_text("Cancelled 1 run")
    expect(page.locator("#cancel-run")).to_have_count(0)
    sleeping.refresh_from_db()
    assert sleeping.status == "CANCELLED"


def test_rerunning_a_failed_run_opens_the_new_run_which_refreshes_until_it_completes(
    page: Page, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "REFRESH_SECONDS", 1)
    failed = shop.order(7, declined=True)
    shop.declined.clear()  # the customer fixed their card
    page.goto(f"/admin/django_inngest/functionrun/{failed.id}/change/")

    page.click("#rerun-run")

    expect(page.locator(".messagelist")).to_contain_text("Reran 1 run")
    expect(page.locator("#run-status")).to_have_text("Queued")
    expect(page.get_by_text(failed.id)).to_be_visible()  # "Rerun of"
    new_id = re.search(r"functionrun/([0-9A-Z]{26})/change", page.url)
    assert new_id is not None and new_id.group(1) != failed.id
    drain()
    expect(page.locator("#run-status")).to_have_text("Completed")
    expect(page.locator("#run-output")).to_contain_text("ch_7")
    assert FunctionRun.objects.get(id=new_id.group(1)).original_run_id == failed.id


def test_the_dashboard_draws_runs_per_minute_and_durations_per_function(
    page: Page, shop: Shop, clock: FrozenClock
) -> None:
    for minute in range(40):
        shop.order(minute, declined=minute % 9 == 4)
        if minute % 3 == 0:
            shop.abandoned_cart(minute)
        clock.advance(timedelta(seconds=75))

    page.goto("/admin/django_inngest/functionrun/dashboard/")

    expect(page.locator("svg.inngest-chart")).to_have_count(4)
    expect(page.locator("svg.inngest-chart rect.inngest-fill-completed").first).to_be_visible()
    expect(page.locator("svg.inngest-chart rect.inngest-p95").first).to_be_visible()
    expect(page.locator(".inngest-window").nth(1)).to_contain_text("54 runs")
    screenshot(page, "dashboard.png")


def test_the_dashboard_shows_live_and_gone_workers_two_versions_and_the_backlog(
    page: Page, shop: Shop, clock: FrozenClock
) -> None:
    """Worker rows as heartbeats leave them: two live workers of different versions (a deploy
    half done), one gone; orders queued that no worker took, events not yet matched, a cron
    tick missed."""
    from django_inngest import store
    from django_inngest.models import CronSchedule, WorkerRecord
    from django_inngest.runtime.claimed import route

    for minute in range(12):
        shop.order(minute)
        clock.advance(timedelta(seconds=60))
    CronSchedule.objects.create(
        function_id="tests-nightly-report",
        cron="TZ=Europe/Paris 0 3 * * *",
        timezone="Europe/Paris",
        created_at=clock.now() - timedelta(days=1),
    )
    client = inngest.Inngest(app_id="tests")
    client.send_sync(
        [inngest.Event(name="shop/order.placed", data={"order_id": n}) for n in range(40)]
    )
    store.fan_out(route, now=clock.now())
    clock.advance(timedelta(seconds=95))
    client.send_sync(
        [inngest.Event(name="shop/cart.abandoned", data={"cart": n}) for n in range(7)]
    )
    clock.advance(timedelta(seconds=20))
    now = clock.now()
    for worker_id, version, in_flight, seen_ago in (
        ("web-7f9c:4127:a1b2c3", "3f1e9a0c5b7d2e4f6a8b0c1d2e3f4a5b6c7d8e9f", 8, 2),
        ("web-2d41:3310:d4e5f6", "9b2c4d6e8f0a1b3c5d7e9f1a2b3c4d5e6f7a8b9c", 3, 6),
        ("web-2d41:2984:0a9b8c", "9b2c4d6e8f0a1b3c5d7e9f1a2b3c4d5e6f7a8b9c", 10, 187),
    ):
        WorkerRecord.objects.create(
            id=worker_id,
            host=worker_id.split(":")[0],
            pid=int(worker_id.split(":")[1]),
            version=version,
            functions=["tests-charge-order", "tests-cart-reminder"],
            concurrency=10,
            in_flight=in_flight,
            started_at=now - timedelta(minutes=40 if seen_ago > 60 else 4),
            last_seen_at=now - timedelta(seconds=seen_ago),
        )

    page.goto("/admin/django_inngest/functionrun/dashboard/")

    fleet = page.locator(".inngest-fleet")
    expect(fleet).to_contain_text("2 live · 1 gone")
    expect(fleet.locator(".inngest-warning")).to_contain_text("2 versions live")
    expect(fleet.locator("tr.inngest-gone")).to_contain_text("web-2d41:2984:0a9b8c")
    expect(fleet).to_contain_text("Events not yet matched: 7")
    expect(fleet).to_contain_text("tests-charge-order")
    expect(fleet).to_contain_text("tests-nightly-report")
    page.locator(".inngest-fleet").screenshot(path=str(ARTIFACTS / "dashboard-fleet.png"))
    screenshot(page, "dashboard-with-fleet.png")

    page.goto("/admin/django_inngest/event/")
    expect(page.locator("#result_list .inngest-status-pending")).to_have_count(7)
