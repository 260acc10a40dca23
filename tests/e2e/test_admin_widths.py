"""The admin's lists at 1,440, 1,280 and 1,024 px and its run page at 1,024 px, with the
navigation sidebar open, on Django 5.2's admin stylesheet and on 6's: every column shows
without scrolling sideways, function names stay on their line, times name their zone, and the
events list filters by name and hides `inngest/…` events (issue 18). Screenshots go to
tests/artifacts, and to docs/images with UPDATE_DOC_IMAGES=1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

import django_inngest as inngest
from django_inngest import store
from django_inngest.core import clock
from django_inngest.core.clock import FrozenClock
from django_inngest.registry import registry
from django_inngest.runtime.claimed import planner, route
from tests.admin_scenarios import Shop, open_shop
from tests.e2e import test_admin_browser

page = test_admin_browser.page
"""The browser tests' fixture: Chromium with the admin's superuser logged in."""

DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def screenshot(page: Page, name: str) -> None:
    """Into tests/artifacts; into docs/images too with UPDATE_DOC_IMAGES=1, so that a test run
    leaves the committed images alone."""
    test_admin_browser.ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(test_admin_browser.ARTIFACTS / name))
    if os.environ.get("UPDATE_DOC_IMAGES") == "1":
        page.screenshot(path=str(DOC_IMAGES / name))


pytestmark = pytest.mark.browser


@pytest.fixture
def shop(isolated_registry: object, clock: FrozenClock) -> Shop:
    shop = open_shop(inngest.Inngest(app_id="tests"), clock)
    shop.order(8)
    shop.abandoned_cart(3)
    shop.order(7, declined=True)
    shop.order(9)
    return shop


def fits(page: Page, selector: str) -> None:
    """Nothing of `selector` is cut off: it scrolls neither itself, nor its box, nor the page
    sideways."""
    overflow = page.evaluate(
        """(selector) => {
            const element = document.querySelector(selector);
            const box = element.parentElement;
            const page = document.scrollingElement;
            return [element.scrollWidth - element.clientWidth,
                    box.scrollWidth - box.clientWidth,
                    page.scrollWidth - page.clientWidth,
                    element.getBoundingClientRect().right - box.getBoundingClientRect().right,
                    element.getBoundingClientRect().right - window.innerWidth];
        }""",
        selector,
    )
    assert max(overflow) <= 1, f"{selector} overflows by {overflow} px"


def one_line(page: Page, selector: str) -> None:
    """Each cell of `selector` is one line of text high (the name under an id is a second)."""
    heights = page.eval_on_selector_all(
        selector,
        """cells => cells.map(cell => {
            const range = document.createRange();
            range.selectNodeContents(cell.firstChild);
            return range.getClientRects().length;
        })""",
    )
    assert heights and set(heights) == {1}, heights


@pytest.mark.parametrize("width", [1440, 1280, 1024])
def test_the_runs_list_shows_every_column_at(page: Page, shop: Shop, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    page.goto("/admin/django_inngest/functionrun/")
    expect(page.locator("#nav-sidebar")).to_be_visible()
    expect(page.locator("#result_list tbody tr")).to_have_count(4)
    for column in ("Duration", "Attempts"):
        expect(page.locator("#result_list thead", has_text=column)).to_be_visible()
    screenshot(page, f"admin-runs-list-{width}.png")
    fits(page, "#result_list")
    one_line(page, "#result_list td.field-function")
    expect(page.locator("#result_list td.field-function").first).to_contain_text("Charge order")
    expect(page.locator("#inngest-zone")).to_have_text("Times are in UTC.")


@pytest.mark.parametrize("width", [1440, 1280, 1024])
def test_the_events_list_shows_every_column_and_hides_inngest_events_at(
    page: Page, shop: Shop, width: int
) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    page.goto("/admin/django_inngest/event/")
    expect(page.locator("#result_list tbody tr")).to_have_count(8)  # 4 sent, 4 finished
    for column in ("Occurred", "Runs"):
        expect(page.locator("#result_list thead", has_text=column)).to_be_visible()
    fits(page, "#result_list")
    page.locator("#changelist-filter a", has_text="Hide").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(4)
    expect(page.locator("#result_list tbody")).not_to_contain_text("inngest/function.finished")
    page.locator("#result_list a", has_text="shop/cart.abandoned").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    fits(page, "#result_list")
    page.goto("/admin/django_inngest/event/?internal=hide")
    screenshot(page, f"admin-events-list-{width}.png")


def test_a_queued_run_page_names_the_function_and_the_zone(page: Page, shop: Shop) -> None:
    shop.client.send_sync(inngest.Event(name="shop/order.placed", data={"order_id": 10}))
    # Matched as a worker matches events, and not claimed yet: the run waits in the queue.
    store.fan_out(route, now=clock.now(), pending=registry.listens_to, planner=planner)
    page.set_viewport_size({"width": 1024, "height": 800})
    page.goto("/admin/django_inngest/functionrun/?status__exact=QUEUED")
    page.locator("#result_list tbody tr a").first.click()
    expect(page.locator("#run-status")).to_have_text("Queued")
    expect(page.locator("#run-function-name")).to_have_text("Charge order")
    expect(page.locator(".inngest-facts")).to_contain_text("UTC")
    expect(page.locator("#timeline .inngest-span-queued")).to_have_count(1)
    expect(page.locator("#timeline .inngest-span-running")).to_have_count(0)
    fits(page, "#content")
    screenshot(page, "admin-run-page-queued-1024.png")
