"""Every documentation reference in system checks, templates and code names a file and heading
that exist; every link on the admin's pages opens; the event page says truly why an event
started no run (issue 18)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.core import checks
from django.test import Client, override_settings

import django_inngest as inngest
from django_inngest.models import Event, FunctionRun
from django_inngest.testing import drain
from tests.admin_scenarios import Shop

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "django_inngest"
DOC_REFERENCE = re.compile(r"docs/[\w./-]+?\.md(?:#[\w-]+)?")


def heading_anchors(markdown: Path) -> set[str]:
    """GitHub's anchors of the headings of a markdown file (outside code blocks)."""
    anchors, fenced = set(), False
    for line in markdown.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif line.startswith("#") and not fenced:
            title = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower())
            anchors.add(title.replace(" ", "-"))
    return anchors


def broken(references: set[str]) -> list[str]:
    found = []
    for reference in sorted(references):
        path, _, anchor = reference.partition("#")
        if not (ROOT / path).is_file():
            found.append(f"{reference}: no such file")
        elif anchor and anchor not in heading_anchors(ROOT / path):
            found.append(f"{reference}: no such heading")
    return found


def test_doc_references_in_the_package_name_files_and_headings_that_exist() -> None:
    sources = [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.html")]
    references = {
        match.group() for source in sources for match in DOC_REFERENCE.finditer(source.read_text())
    }
    assert "docs/reference.md#settings" in references, "the scan finds the checks' hints"
    assert broken(references) == []


@override_settings(INNGEST={"APP_ID": "tests", "WORKER_CONCURENCY": 2})
def test_the_hints_of_system_checks_name_docs_that_exist() -> None:
    messages = checks.run_checks(tags=["django_inngest"])
    hints = [message.hint or "" for message in messages]
    assert any(message.id == "django_inngest.E001" for message in messages)
    references = {match.group() for hint in hints for match in DOC_REFERENCE.finditer(hint)}
    assert references == {"docs/reference.md#settings"}
    assert broken(references) == []


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href and href.startswith(("/admin/django_inngest", "?")):
            self.hrefs.add(href)


@pytest.mark.django_db
def test_every_link_on_the_admins_pages_opens(admin_client: Client, shop: Shop) -> None:
    failed = shop.order(1, declined=True)
    shop.order(2)
    shop.abandoned_cart(3)
    pages = [
        "/admin/django_inngest/",
        "/admin/django_inngest/functionrun/",
        "/admin/django_inngest/event/",
        f"/admin/django_inngest/functionrun/{failed.id}/change/",
        f"/admin/django_inngest/event/{failed.event_id}/change/",
    ]
    seen: dict[str, int] = {}
    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        parser = Links()
        parser.feed(response.content.decode())
        for href in parser.hrefs:
            url = page.split("?")[0] + href if href.startswith("?") else href
            if url not in seen:
                seen[url] = admin_client.get(url).status_code
    assert len(seen) > 10, sorted(seen)
    assert {url: status for url, status in seen.items() if status != 200} == {}


def no_runs_line(admin_client: Client, event_id: str) -> str:
    html = admin_client.get(f"/admin/django_inngest/event/{event_id}/change/").content.decode()
    start = html.index('id="event-no-runs">') + len('id="event-no-runs">')
    return html[start : html.index("</p>", start)]


@pytest.mark.django_db
def test_an_event_matched_before_its_function_existed_says_so(
    admin_client: Client, inngest_client: inngest.Inngest
) -> None:
    [event_id] = inngest_client.send_sync(inngest.Event(name="shop/refund", data={"id": 1}))
    drain()
    assert no_runs_line(admin_client, event_id) == (
        "None: no registered function listens to shop/refund."
    )

    @inngest_client.create_function(fn_id="refund", trigger=inngest.TriggerEvent(event="shop/*"))
    def refund(ctx: inngest.ContextSync) -> None:
        return None

    assert no_runs_line(admin_client, event_id).startswith(
        "None: tests-refund listen to it now, but no function did when it was matched"
    )


@pytest.mark.django_db
def test_an_event_its_functions_filter_out_says_so(
    admin_client: Client, inngest_client: inngest.Inngest
) -> None:
    @inngest_client.create_function(
        fn_id="big-refund",
        trigger=inngest.TriggerEvent(event="shop/refund", expression="event.data.amount > 100"),
    )
    def big_refund(ctx: inngest.ContextSync) -> None:
        return None

    [event_id] = inngest_client.send_sync(inngest.Event(name="shop/refund", data={"amount": 5}))
    assert no_runs_line(admin_client, event_id) == ("None yet: no worker has matched this event.")
    drain()
    assert not FunctionRun.objects.exists()
    assert Event.objects.get(id=event_id).pending is False
    assert no_runs_line(admin_client, event_id) == (
        "None: tests-big-refund listen to shop/refund, but their `if` expression does not "
        "match this event."
    )
