"""Migration 0008 numbers the events already stored in id order and keeps each existing
pause matching exactly the events it matched before (ids greater than its `after_id`)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("django_inngest", "0009_containment")]
AFTER = [("django_inngest", "0010_receipt_order")]


@pytest.fixture
def executor() -> Iterator[MigrationExecutor]:
    migrations = MigrationExecutor(connection)
    latest = migrations.loader.graph.leaf_nodes("django_inngest")
    try:
        yield migrations
    finally:
        migrations = MigrationExecutor(connection)
        migrations.migrate(latest)


@pytest.mark.django_db(transaction=True)
def test_existing_events_and_pauses_keep_their_order(executor: MigrationExecutor) -> None:
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    Event, Run, Pause = (
        old.get_model("django_inngest", name) for name in ("Event", "FunctionRun", "Pause")
    )
    now = datetime(2030, 1, 1, tzinfo=UTC)
    for event_id in ["01HB", "01HA", "01HD", "01HC"]:
        Event.objects.create(id=event_id, name="e", data={}, ts=1, received_at=now, pending=True)
    run = Run.objects.create(id="01HRUN", function_id="f", created_at=now)
    for after_id in ["01HB", "01H", "01HZ"]:
        Pause.objects.create(
            kind="wait",
            run=run,
            event_name="e",
            after_id=after_id,
            expires_at=now + timedelta(days=1),
        )

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    Event, Pause = (new.get_model("django_inngest", name) for name in ("Event", "Pause"))
    order = dict(Event.objects.values_list("id", "receipt_order"))
    assert order == {"01HA": 1, "01HB": 2, "01HC": 3, "01HD": 4}
    assert sorted(Pause.objects.values_list("after_receipt", flat=True)) == [0, 2, 4]
