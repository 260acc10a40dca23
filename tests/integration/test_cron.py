"""Cron triggers through the database, under the frozen clock (SPEC §5; K1, K4, K5, K7, K8).

`drain()` fires the ticks due at the frozen time, as a worker's scheduler does; tests that
need two workers or two deploys use `CronScheduler` directly, the class workers run.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.core.management import call_command
from django.test import override_settings

import django_inngest as inngest
from django_inngest import store
from django_inngest.core.clock import FrozenClock
from django_inngest.core.flow import RunPlan
from django_inngest.core.function import Function
from django_inngest.core.schedule import timer_event
from django_inngest.models import CronSchedule, CronTick, FunctionRun
from django_inngest.registry import registry
from django_inngest.runtime.scheduler import CronScheduler
from django_inngest.testing import drain, frozen_clock
from tests.helpers import make

pytestmark = pytest.mark.django_db


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def scheduled_times() -> list[str]:
    """The `scheduledAt` of every cron run, in order."""
    return sorted(
        run.event.data["scheduledAt"]
        for run in FunctionRun.objects.select_related("event")
        if run.event is not None and run.event.name == "inngest/scheduled.timer"
    )


def cron_function(
    client: inngest.Inngest, cron: str, *, fn_id: str = "cron", jitter: str | None = None
) -> list[Any]:
    """Declare a cron function that records the events it receives; returns that record."""
    seen: list[Any] = []

    @client.create_function(fn_id=fn_id, trigger=inngest.TriggerCron(cron=cron, jitter=jitter))
    def handler(ctx: inngest.ContextSync) -> str:
        seen.append((ctx.event, ctx.events))
        return str(ctx.event.id)

    return seen


def walk(clock: FrozenClock, until: datetime, step: timedelta) -> None:
    """Move the clock to `until` in steps, draining at each, as running workers would."""
    while clock.now() < until:
        clock.set(min(clock.now() + step, until))
        drain()


def test_an_every_minute_function_runs_once_per_minute_at_second_zero(
    inngest_client: inngest.Inngest,
) -> None:
    """K4."""
    cron_function(inngest_client, "* * * * *")
    with frozen_clock(utc(2024, 5, 1, 12, 0, 30)) as clock:
        assert drain().cron_ticks == 0
        clock.set(utc(2024, 5, 1, 12, 0, 59))
        assert drain().cron_ticks == 0
        clock.set(utc(2024, 5, 1, 12, 1, 0))
        assert drain().completed == 1
        clock.set(utc(2024, 5, 1, 12, 1, 59))
        assert drain().cron_ticks == 0
        clock.set(utc(2024, 5, 1, 12, 2, 0))
        assert drain().completed == 1
    assert scheduled_times() == ["2024-05-01T12:01:00Z", "2024-05-01T12:02:00Z"]


def test_a_cron_run_receives_the_scheduled_timer_event(inngest_client: inngest.Inngest) -> None:
    """K4: name, id = scheduledAt (RFC 3339), data.cron, data.scheduledAt, data.fireAt."""
    seen = cron_function(inngest_client, "*/5 * * * *")
    with frozen_clock(utc(2024, 5, 1, 12, 1)) as clock:
        drain()
        clock.set(utc(2024, 5, 1, 12, 5))
        drain()
    [(event, events)] = seen
    assert event.name == "inngest/scheduled.timer"
    assert event.id == "2024-05-01T12:05:00Z"
    assert event.data == {
        "cron": "*/5 * * * *",
        "scheduledAt": "2024-05-01T12:05:00Z",
        "fireAt": "2024-05-01T12:05:00Z",
    }
    assert events == [event]
    assert FunctionRun.objects.get().output == "2024-05-01T12:05:00Z"


@pytest.mark.parametrize(
    ("friday_noon_utc", "label"),
    [(utc(2024, 6, 7, 10, 0), "summer"), (utc(2025, 1, 3, 11, 0), "winter")],
)
def test_a_paris_schedule_fires_at_noon_paris_time_on_fridays(
    inngest_client: inngest.Inngest, friday_noon_utc: datetime, label: str
) -> None:
    """K5: 10:00 UTC in summer, 11:00 UTC in winter."""
    cron_function(inngest_client, "TZ=Europe/Paris 0 12 * * 5")
    with frozen_clock(friday_noon_utc - timedelta(days=1)) as clock:
        drain()
        walk(clock, friday_noon_utc - timedelta(seconds=1), timedelta(minutes=30))
        assert FunctionRun.objects.count() == 0
        clock.set(friday_noon_utc)
        assert drain().completed == 1
    assert FunctionRun.objects.get().event.user_id == friday_noon_utc.strftime(  # type: ignore[union-attr]
        "%Y-%m-%dT%H:%M:%SZ"
    )


def test_a_schedule_without_a_prefix_uses_the_cron_timezone_setting(
    inngest_client: inngest.Inngest,
) -> None:
    cron_function(inngest_client, "0 9 * * *")
    with (
        override_settings(INNGEST={**settings.INNGEST, "CRON_TIMEZONE": "America/New_York"}),
        frozen_clock(utc(2024, 7, 1, 12, 0)) as clock,
    ):
        drain()
        walk(clock, utc(2024, 7, 1, 14, 0), timedelta(minutes=30))
    assert scheduled_times() == ["2024-07-01T13:00:00Z"]


def test_jitter_delays_the_run_by_a_deterministic_offset_within_the_jitter(
    inngest_client: inngest.Inngest,
) -> None:
    """K7: the tick fires at its time; its run becomes due 1 s..30 s later."""
    cron_function(inngest_client, "*/5 * * * *", jitter="30s")
    with frozen_clock(utc(2024, 5, 1, 12, 1)) as clock:
        drain()
        clock.set(utc(2024, 5, 1, 12, 5))
        summary = drain()
        assert (summary.cron_ticks, summary.completed) == (1, 0)
        tick = CronTick.objects.get()
        offset = tick.fire_at - tick.scheduled_at
        assert timedelta(seconds=1) <= offset < timedelta(seconds=30)
        clock.set(tick.fire_at - timedelta(milliseconds=1))
        assert drain().completed == 0
        clock.set(tick.fire_at)
        assert drain().completed == 1
    event = FunctionRun.objects.get().event
    assert event is not None
    assert event.data["fireAt"] == tick.fire_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def every_minute(fn_id: str = "cron", cron: str = "* * * * *") -> Function:
    return make(lambda ctx: None, fn_id=fn_id, trigger=inngest.TriggerCron(cron=cron))


def test_two_workers_ticking_the_same_minute_start_one_run() -> None:
    """K8: whichever worker inserts the (function, scheduled time) row first fires it."""
    function = every_minute()
    first = CronScheduler([function], worker_id="first")
    second = CronScheduler([function], worker_id="second")
    first.start(utc(2024, 5, 1, 12, 0, 30))
    second.start(utc(2024, 5, 1, 12, 0, 31))
    assert first.tick(utc(2024, 5, 1, 12, 1)) == 1
    assert second.tick(utc(2024, 5, 1, 12, 1, 0, 200)) == 0
    assert FunctionRun.objects.count() == 1
    assert CronTick.objects.get().fired_by == "first"


def test_firing_the_same_tick_twice_writes_nothing_the_second_time() -> None:
    """K8: the scheduler firing twice (a retry, a race) cannot start a second run."""
    function = every_minute()
    CronScheduler([function], worker_id="w").start(utc(2024, 5, 1, 12, 0, 30))
    tick = utc(2024, 5, 1, 12, 1)

    def fire() -> store.TickOutcome:
        event = timer_event(cron="* * * * *", scheduled_at=tick, fire_at=tick, now_ms=0)
        return store.fire_cron_tick(
            (function.id, "* * * * *", "UTC"),
            scheduled_at=tick,
            fire_at=tick,
            event=event,
            plan=RunPlan(function_id=function.id),
            worker_id="w",
            now=tick,
        )

    assert [fire(), fire()] == [store.TickOutcome.FIRED, store.TickOutcome.ALREADY_FIRED]
    assert (FunctionRun.objects.count(), CronTick.objects.count()) == (1, 1)


def test_two_cron_triggers_of_one_function_falling_on_one_instant_start_one_run(
    inngest_client: inngest.Inngest,
) -> None:
    @inngest_client.create_function(
        fn_id="two",
        trigger=[inngest.TriggerCron(cron="0 * * * *"), inngest.TriggerCron(cron="0 12 * * *")],
    )
    def two(ctx: inngest.ContextSync) -> None: ...

    with frozen_clock(utc(2024, 5, 1, 11, 30)) as clock:
        drain()
        clock.set(utc(2024, 5, 1, 12, 0))
        assert drain().cron_ticks == 1
    assert scheduled_times() == ["2024-05-01T12:00:00Z"]


def test_a_new_schedule_does_not_fire_ticks_from_before_it_existed(
    inngest_client: inngest.Inngest,
) -> None:
    cron_function(inngest_client, "0 0 * * *")
    with frozen_clock(utc(2024, 5, 1, 15, 0)):
        assert drain().cron_ticks == 0
    assert FunctionRun.objects.count() == 0


def miss_ten_ticks(clock: FrozenClock) -> int:
    """An every-minute schedule fires at 12:01, then no scheduler runs until 12:11:30 (ticks
    12:02..12:11 missed). Returns the ticks fired by the first drain after that."""
    clock.set(utc(2024, 5, 1, 12, 0, 30))
    drain()
    clock.set(utc(2024, 5, 1, 12, 1))
    assert drain().cron_ticks == 1
    clock.set(utc(2024, 5, 1, 12, 11, 30))
    return drain().cron_ticks


def test_after_ten_missed_ticks_only_the_latest_fires_once(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    cron_function(inngest_client, "* * * * *")
    assert miss_ten_ticks(clock) == 1
    assert scheduled_times() == ["2024-05-01T12:01:00Z", "2024-05-01T12:11:00Z"]
    catch_up = CronTick.objects.get(scheduled_at=utc(2024, 5, 1, 12, 11))
    assert catch_up.fire_at == utc(2024, 5, 1, 12, 11, 30)


def test_with_catch_up_off_missed_ticks_fire_nothing(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    cron_function(inngest_client, "* * * * *")
    with override_settings(INNGEST={**settings.INNGEST, "CRON_CATCH_UP": False}):
        assert miss_ten_ticks(clock) == 0
    assert scheduled_times() == ["2024-05-01T12:01:00Z"]


def test_with_catch_up_off_the_first_tick_after_downtime_fires_on_time(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    cron_function(inngest_client, "* * * * *")
    with override_settings(INNGEST={**settings.INNGEST, "CRON_CATCH_UP": False}):
        miss_ten_ticks(clock)
        clock.set(utc(2024, 5, 1, 12, 12))
        assert drain().cron_ticks == 1
    assert scheduled_times() == ["2024-05-01T12:01:00Z", "2024-05-01T12:12:00Z"]


def test_a_pruned_tick_does_not_fire_again_even_for_a_worker_that_missed_it(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    cron_function(inngest_client, "0 0 * * *")
    clock.set(utc(2024, 5, 1, 23, 0))
    stalled = CronScheduler(registry.all(), worker_id="stalled")
    stalled.start(clock.now())
    clock.set(utc(2024, 5, 2, 0, 0))
    assert drain().cron_ticks == 1
    clock.set(utc(2024, 5, 2, 0, 0, 5))
    output = io.StringIO()
    call_command("inngest_prune", "--days", "0", "--noinput", stdout=output)
    assert "and 1 cron ticks" in output.getvalue()
    assert stalled.tick(clock.now()) == 0
    assert not CronTick.objects.exists()


def test_a_worker_with_the_old_cron_stops_firing_once_a_worker_with_the_new_one_starts() -> None:
    old = CronScheduler([every_minute(cron="0 * * * *")], worker_id="old")
    old.start(utc(2024, 5, 1, 12, 30))
    assert old.tick(utc(2024, 5, 1, 13, 0)) == 1
    new = CronScheduler([every_minute(cron="30 * * * *")], worker_id="new")
    new.start(utc(2024, 5, 1, 13, 10))  # the deploy
    assert new.tick(utc(2024, 5, 1, 13, 30)) == 1
    assert old.tick(utc(2024, 5, 1, 14, 0)) == 0
    assert not old.active
    assert scheduled_times() == ["2024-05-01T13:00:00Z", "2024-05-01T13:30:00Z"]


def test_removing_a_cron_function_deletes_its_schedule_at_the_next_worker_start() -> None:
    old = CronScheduler([every_minute()], worker_id="old")
    old.start(utc(2024, 5, 1, 12, 0, 30))
    CronScheduler([], worker_id="new").start(utc(2024, 5, 1, 12, 0, 40))
    assert not CronSchedule.objects.exists()
    assert old.tick(utc(2024, 5, 1, 12, 1)) == 0
    assert FunctionRun.objects.count() == 0


def test_a_function_with_cron_and_event_triggers_runs_for_both(
    inngest_client: inngest.Inngest,
) -> None:
    """K1 with a cron trigger in the list."""
    names: list[str] = []

    @inngest_client.create_function(
        fn_id="both",
        trigger=[inngest.TriggerCron(cron="0 * * * *"), inngest.TriggerEvent(event="report/asked")],
    )
    def both(ctx: inngest.ContextSync) -> None:
        names.append(ctx.event.name)

    with frozen_clock(utc(2024, 5, 1, 12, 30)) as clock:
        inngest_client.send_sync(inngest.Event(name="report/asked"))
        drain()
        clock.set(utc(2024, 5, 1, 13, 0))
        drain()
    assert names == ["report/asked", "inngest/scheduled.timer"]


def test_a_singleton_cron_function_skips_a_tick_while_its_previous_run_is_active(
    inngest_client: inngest.Inngest, clock: FrozenClock
) -> None:
    """Flow control other than batching, rate limits and debounce applies to cron runs."""

    @inngest_client.create_function(
        fn_id="long",
        trigger=inngest.TriggerCron(cron="* * * * *"),
        singleton=inngest.Singleton(mode="skip"),
    )
    def long(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        step.sleep("nap", timedelta(seconds=90))

    clock.set(utc(2024, 5, 1, 12, 0, 30))
    drain()
    clock.set(utc(2024, 5, 1, 12, 1))
    assert drain().sleeping == 1
    clock.set(utc(2024, 5, 1, 12, 2))
    drain()
    statuses = FunctionRun.objects.order_by("id").values_list("status", flat=True)
    assert list(statuses) == ["SLEEPING", "SKIPPED"]
    assert CronTick.objects.count() == 2


def test_drain_with_the_real_clock_fires_no_cron_tick(inngest_client: inngest.Inngest) -> None:
    cron_function(inngest_client, "* * * * *")
    assert drain().cron_ticks == 0
    assert not CronSchedule.objects.exists()


# Daylight saving time, through the database: the clock walks across each change in
# 30-minute steps, as a running worker would see it.


@pytest.mark.parametrize(
    ("cron", "start", "end", "expected"),
    [
        pytest.param(
            "TZ=Europe/Paris 30 2 * * *",
            utc(2024, 3, 29, 23),
            utc(2024, 4, 1, 3),
            ["2024-03-30T01:30:00Z", "2024-03-31T01:00:00Z", "2024-04-01T00:30:00Z"],
            id="paris-spring-02:30-fires-at-03:00",
        ),
        pytest.param(
            "TZ=Europe/Paris 30 2 * * *",
            utc(2024, 10, 25, 23),
            utc(2024, 10, 28, 3),
            ["2024-10-26T00:30:00Z", "2024-10-27T00:30:00Z", "2024-10-28T01:30:00Z"],
            id="paris-autumn-02:30-fires-once",
        ),
        pytest.param(
            "TZ=America/New_York 30 2 * * *",
            utc(2024, 3, 9, 4),
            utc(2024, 3, 11, 8),
            ["2024-03-09T07:30:00Z", "2024-03-10T07:00:00Z", "2024-03-11T06:30:00Z"],
            id="new-york-spring-02:30-fires-at-03:00",
        ),
        pytest.param(
            "TZ=America/New_York 30 1 * * *",
            utc(2024, 11, 2, 4),
            utc(2024, 11, 4, 8),
            ["2024-11-02T05:30:00Z", "2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"],
            id="new-york-autumn-01:30-fires-once",
        ),
    ],
)
def test_a_daily_schedule_fires_once_a_day_across_a_dst_change(
    inngest_client: inngest.Inngest, cron: str, start: datetime, end: datetime, expected: list[str]
) -> None:
    cron_function(inngest_client, cron)
    with frozen_clock(start) as clock:
        drain()
        walk(clock, end, timedelta(minutes=30))
    assert scheduled_times() == expected
    assert FunctionRun.objects.filter(status="COMPLETED").count() == 3


def test_an_hourly_new_york_schedule_fires_each_wall_clock_hour_once_across_fall_back(
    inngest_client: inngest.Inngest,
) -> None:
    cron_function(inngest_client, "TZ=America/New_York 0 * * * *")
    with frozen_clock(utc(2024, 11, 3, 3, 30)) as clock:
        drain()
        walk(clock, utc(2024, 11, 3, 8, 30), timedelta(minutes=10))
    # 00:00 EDT, 01:00 EDT, (01:00 EST is the same wall time), 02:00 EST, 03:00 EST
    assert scheduled_times() == [
        "2024-11-03T04:00:00Z",
        "2024-11-03T05:00:00Z",
        "2024-11-03T07:00:00Z",
        "2024-11-03T08:00:00Z",
    ]


def test_inngest_status_shows_the_next_tick_of_each_cron_function_in_its_zone(
    inngest_client: inngest.Inngest,
) -> None:
    cron_function(inngest_client, "TZ=Europe/Paris 0 12 * * 5", fn_id="weekly")
    cron_function(inngest_client, "0 3 * * *", fn_id="nightly")
    output = io.StringIO()
    with frozen_clock(utc(2024, 6, 5, 9, 0)):
        call_command("inngest_status", stdout=output)
    text = output.getvalue()
    assert (
        "cron TZ=Europe/Paris 0 12 * * 5 [Europe/Paris]: next 2024-06-07 12:00:00 CEST "
        "(2024-06-07T10:00:00Z), last never" in text
    )
    assert "cron 0 3 * * * [UTC]: next 2024-06-06 03:00:00 UTC (2024-06-06T03:00:00Z)" in text


def test_inngest_status_shows_the_last_tick_fired(inngest_client: inngest.Inngest) -> None:
    cron_function(inngest_client, "TZ=America/New_York 0 * * * *")
    output = io.StringIO()
    with frozen_clock(utc(2024, 6, 5, 8, 30)) as clock:
        drain()
        clock.set(utc(2024, 6, 5, 9, 0))
        drain()
        call_command("inngest_status", stdout=output)
    assert "last 2024-06-05 05:00:00 EDT (2024-06-05T09:00:00Z)" in output.getvalue()
    assert "Runs: COMPLETED 1" in output.getvalue()


# Configuration mistakes are found by `manage.py check`.


def check_messages() -> list[tuple[str, str]]:
    return [(m.id or "", m.msg) for m in run_checks(tags=["django_inngest"])]


def test_a_valid_cron_function_passes_the_checks(inngest_client: inngest.Inngest) -> None:
    cron_function(inngest_client, "TZ=Asia/Tokyo 0 9 * * MON-FRI", jitter="1m")
    assert check_messages() == []


def test_a_cron_with_an_unknown_zone_fails_the_checks_naming_function_and_string(
    inngest_client: inngest.Inngest,
) -> None:
    cron_function(inngest_client, "TZ=Mars/Base 0 * * * *", fn_id="sync")
    [(id_, message)] = check_messages()
    assert id_ == "django_inngest.E003"
    assert message.startswith(
        "function 'tests-sync': TriggerCron.cron: 'TZ=Mars/Base 0 * * * *' isn't a valid cron "
        "schedule: unknown time zone 'Mars/Base'"
    )


def test_an_unknown_cron_timezone_setting_fails_the_checks(inngest_client: inngest.Inngest) -> None:
    with override_settings(INNGEST={**settings.INNGEST, "CRON_TIMEZONE": "Europe/Atlantis"}):
        found = check_messages()
    assert (
        "django_inngest.E001",
        "INNGEST['CRON_TIMEZONE']='Europe/Atlantis' is not a known time zone",
    ) in found


def test_cron_catch_up_must_be_a_boolean(inngest_client: inngest.Inngest) -> None:
    with override_settings(INNGEST={**settings.INNGEST, "CRON_CATCH_UP": "no"}):
        found = check_messages()
    assert ("django_inngest.E001", "INNGEST['CRON_CATCH_UP']='no' has the wrong type") in found
