"""Retention (`inngest_prune`, `store.prune`): completed runs kept 7 days and failed ones 14 by
default, their steps and unreferenced events with them, in batches; a dry run deletes nothing;
the command asks first unless told not to; workers take turns to prune."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

import django_inngest as inngest
from django_inngest import store
from django_inngest.core.clock import FrozenClock
from django_inngest.models import Event, FunctionRun, RunStep
from django_inngest.testing import drain

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(inngest_client: inngest.Inngest, clock: FrozenClock) -> FrozenClock:
    """Two completed runs and one failed run, ended now; an event nothing listens to."""

    def fails(ctx: inngest.Context) -> None:
        raise inngest.NonRetriableError("no")

    inngest_client.create_function(fn_id="ok", trigger=inngest.TriggerEvent(event="ok"))(
        lambda ctx: ctx.step.run("s", lambda: 1)
    )
    inngest_client.create_function(fn_id="bad", trigger=inngest.TriggerEvent(event="bad"))(fails)
    inngest_client.send_sync(
        [
            inngest.Event(name="ok"),
            inngest.Event(name="ok"),
            inngest.Event(name="bad"),
            inngest.Event(name="nobody"),
        ]
    )
    drain()
    assert sorted(FunctionRun.objects.values_list("status", flat=True)) == [
        "COMPLETED",
        "COMPLETED",
        "FAILED",
    ]
    return clock


def names() -> list[str]:
    return sorted(Event.objects.exclude(name__startswith="inngest/").values_list("name", flat=True))


def test_completed_runs_go_after_7_days_and_failed_ones_after_14(history: FrozenClock) -> None:
    history.advance(timedelta(days=6, hours=23))
    assert store.prune(now=history.now(), retention=store.retention_of_settings()).runs == 0
    history.advance(timedelta(hours=2))
    pruned = store.prune(now=history.now(), retention=store.retention_of_settings())
    assert (pruned.runs, pruned.steps) == (2, 2)
    assert list(FunctionRun.objects.values_list("status", flat=True)) == ["FAILED"]
    assert not RunStep.objects.filter(run__status="COMPLETED").exists()
    assert names() == ["bad"], "the events of pruned runs and unreferenced ones go"
    history.advance(timedelta(days=7))
    assert store.prune(now=history.now(), retention=store.retention_of_settings()).runs == 1
    assert not FunctionRun.objects.exists()
    assert names() == []


@pytest.mark.parametrize(
    "override", [{"RETENTION_COMPLETED_DAYS": 1, "RETENTION_FAILED_DAYS": 2.5}]
)
def test_retention_periods_come_from_the_settings(
    history: FrozenClock, settings: object, override: dict[str, float]
) -> None:
    settings.INNGEST = {**settings.INNGEST, **override}  # type: ignore[attr-defined]
    history.advance(timedelta(days=2))
    assert store.prune(now=history.now(), retention=store.retention_of_settings()).runs == 2
    history.advance(timedelta(days=1))
    assert store.prune(now=history.now(), retention=store.retention_of_settings()).runs == 1


def test_dry_run_says_what_it_would_delete_and_deletes_nothing(history: FrozenClock) -> None:
    history.advance(timedelta(days=8))
    out = io.StringIO()
    call_command("inngest_prune", "--dry-run", stdout=out)
    assert out.getvalue().startswith("would delete 2 runs (2 steps), 7 events")
    assert FunctionRun.objects.count() == 3
    assert len(names()) == 4


def test_the_command_asks_first_and_deletes_only_on_yes(
    history: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    history.advance(timedelta(days=8))
    answers = iter(["no", "yes"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    out = io.StringIO()
    call_command("inngest_prune", stdout=out)
    assert "Nothing deleted." in out.getvalue()
    assert FunctionRun.objects.count() == 3
    call_command("inngest_prune", stdout=out)
    assert "deleted 2 runs (2 steps), 7 events" in out.getvalue()
    assert FunctionRun.objects.count() == 1


def test_the_command_refuses_to_guess_without_input(
    history: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    history.advance(timedelta(days=8))

    def no_input(prompt: str) -> str:
        raise EOFError

    monkeypatch.setattr("builtins.input", no_input)
    with pytest.raises(CommandError, match="run with --noinput"):
        call_command("inngest_prune", stdout=io.StringIO())
    assert FunctionRun.objects.count() == 3
    call_command("inngest_prune", "--noinput", stdout=io.StringIO())
    assert FunctionRun.objects.count() == 1


def test_runs_are_deleted_in_batches_that_grow_while_they_are_quick(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    inngest_client.create_function(fn_id="ok", trigger=inngest.TriggerEvent(event="ok"))(
        lambda ctx: ctx.step.run("s", lambda: 1)
    )
    inngest_client.send_sync([inngest.Event(name="ok", data={"n": n}) for n in range(60)])
    drain()
    clock.advance(timedelta(days=8))
    pruned = store.prune(now=clock.now(), retention=store.retention_of_settings(), first_batch=5)
    assert (pruned.runs, pruned.steps, pruned.events) == (
        60,
        60,
        120,
    )  # and their function.finished
    assert pruned.batches >= 3
    assert pruned.sizes[0] == 5
    assert not FunctionRun.objects.exists()


def test_a_rerun_outlives_its_pruned_original(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    inngest_client.create_function(fn_id="ok", trigger=inngest.TriggerEvent(event="ok"))(
        lambda ctx: ctx.step.run("s", lambda: 1)
    )
    inngest_client.send_sync(inngest.Event(name="ok"))
    drain()
    original = FunctionRun.objects.get()
    clock.advance(timedelta(days=8))
    rerun_id = store.rerun(original.id, now=clock.now())
    drain()
    assert store.prune(now=clock.now(), retention=store.retention_of_settings()).runs == 1
    rerun = FunctionRun.objects.get()
    assert (rerun.id, rerun.original_run_id, rerun.status) == (rerun_id, None, "COMPLETED")
    assert rerun.event is not None, "the rerun still refers to its event, which is kept"


def test_workers_take_turns_to_prune_once_per_interval(history: FrozenClock) -> None:
    retention = store.retention_of_settings()
    history.advance(timedelta(days=8))
    first = store.prune_when_due(now=history.now(), interval=3600, retention=retention)
    assert first is not None
    assert first.runs == 2
    history.advance(timedelta(minutes=59))
    assert store.prune_when_due(now=history.now(), interval=3600, retention=retention) is None
    history.advance(timedelta(minutes=1))
    assert store.prune_when_due(now=history.now(), interval=3600, retention=retention) is not None
