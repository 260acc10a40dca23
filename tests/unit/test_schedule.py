"""Cron arithmetic in core/schedule.py: syntax, ticks in a zone, DST, jitter (SPEC §5)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import django_inngest as inngest
from django_inngest.core.schedule import (
    CronError,
    jitter_offset,
    parse_cron,
    rfc3339,
    timer_event,
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def ticks(cron: str, start: datetime, count: int) -> list[str]:
    """The next `count` ticks after `start`, as RFC 3339 strings."""
    schedule = parse_cron(cron)
    found, moment = [], start
    for _ in range(count):
        moment = schedule.next_after(moment)
        found.append(rfc3339(moment))
    return found


@pytest.mark.parametrize(
    "cron",
    [
        "* * * * *",
        "1,15 * * * *",
        "0 9-17 * * 1-5",
        "*/15 * * * *",
        "5-59/10 * * * *",
        "0 0 1 JAN,jul *",
        "0 12 ? * FRI",
        "0 12 1 * ?",
        "0 0 * jan-mar mon-fri",
        "TZ=Europe/Paris 0 12 * * 5",
        "CRON_TZ=America/New_York 30 8 * * *",
    ],
)
def test_standard_five_field_syntax_is_accepted(cron: str) -> None:
    assert parse_cron(cron).source == cron


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("0 0 L * *", "unknown name 'L'"),
        ("0 0 1W * *", "unknown name 'W'"),
        ("0 0 * * 5#2", "characters other than"),
        ("? * * * *", "'?' stands alone, in the day fields"),
        ("0 0 * MON *", "unknown name 'MON'"),
        ("0 0 30 2 *", "no date matches it"),
        ("0 24 * * *", "out of range"),
        ("*/0 * * * *", "out of range"),
        ("@every 5m", "descriptors such as @hourly"),
        ("CRON_TZ=Mars/Olympus 0 * * * *", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_syntax_beyond_standard_cron_is_refused_naming_the_string(cron: str, reason: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(cron)
    assert str(caught.value).startswith(f"{cron!r} isn't a valid cron schedule")
    assert reason in str(caught.value)


def test_a_cron_string_over_255_characters_is_refused() -> None:
    cron = "0 0 * * " + ",".join(["1"] * 130)
    with pytest.raises(CronError, match="longer than 255 characters"):
        parse_cron(cron)


def test_every_minute_ticks_fall_on_second_zero() -> None:
    assert ticks("* * * * *", utc(2024, 5, 1, 12, 0, 30), 2) == [
        "2024-05-01T12:01:00Z",
        "2024-05-01T12:02:00Z",
    ]


def test_next_tick_is_strictly_after_and_latest_tick_includes_the_moment() -> None:
    schedule = parse_cron("0 * * * *")
    on_tick = utc(2024, 5, 1, 12, 0)
    assert schedule.next_after(on_tick) == utc(2024, 5, 1, 13, 0)
    assert schedule.latest_at_or_before(on_tick) == on_tick
    assert schedule.latest_at_or_before(on_tick - timedelta(seconds=1)) == utc(2024, 5, 1, 11, 0)


def test_restricted_day_of_month_and_day_of_week_match_either() -> None:
    """The 13th, and every Friday (January 2024: Fridays are the 5th, 12th, 19th, 26th)."""
    assert ticks("0 0 13 * FRI", utc(2024, 1, 1), 4) == [
        "2024-01-05T00:00:00Z",
        "2024-01-12T00:00:00Z",
        "2024-01-13T00:00:00Z",
        "2024-01-19T00:00:00Z",
    ]


def test_sunday_is_day_zero_and_day_seven() -> None:
    assert ticks("0 0 * * 7", utc(2024, 1, 1), 1) == ticks("0 0 * * 0", utc(2024, 1, 1), 1)
    assert ticks("0 0 * * 7", utc(2024, 1, 1), 1) == ["2024-01-07T00:00:00Z"]


def test_a_tz_prefix_reads_times_in_that_zone() -> None:
    """K5: noon in Paris on Fridays is 10:00 UTC in summer and 11:00 UTC in winter."""
    assert ticks("TZ=Europe/Paris 0 12 * * 5", utc(2024, 6, 1), 1) == ["2024-06-07T10:00:00Z"]
    assert ticks("TZ=Europe/Paris 0 12 * * 5", utc(2025, 1, 1), 1) == ["2025-01-03T11:00:00Z"]


def test_without_a_prefix_the_default_zone_applies() -> None:
    schedule = parse_cron("0 9 * * *", default_zone="America/New_York")
    assert schedule.zone_name == "America/New_York"
    assert schedule.next_after(utc(2024, 7, 1)) == utc(2024, 7, 1, 13, 0)


# Daylight saving time. Paris: 2024-03-31 02:00 -> 03:00 (01:00 UTC) and 2024-10-27
# 03:00 -> 02:00 (01:00 UTC). New York: 2024-03-10 02:00 -> 03:00 (07:00 UTC) and
# 2024-11-03 02:00 -> 01:00 (06:00 UTC).


def test_paris_a_daily_time_skipped_by_spring_forward_fires_once_when_the_gap_ends() -> None:
    assert ticks("TZ=Europe/Paris 30 2 * * *", utc(2024, 3, 30), 3) == [
        "2024-03-30T01:30:00Z",  # 02:30 CET
        "2024-03-31T01:00:00Z",  # 02:30 does not exist: 03:00 CEST
        "2024-04-01T00:30:00Z",  # 02:30 CEST
    ]


def test_paris_a_daily_time_repeated_by_fall_back_fires_once_at_its_first_occurrence() -> None:
    assert ticks("TZ=Europe/Paris 30 2 * * *", utc(2024, 10, 26), 3) == [
        "2024-10-26T00:30:00Z",  # 02:30 CEST
        "2024-10-27T00:30:00Z",  # 02:30 CEST, the first of two
        "2024-10-28T01:30:00Z",  # 02:30 CET
    ]


def test_new_york_a_daily_time_skipped_by_spring_forward_fires_once_when_the_gap_ends() -> None:
    assert ticks("TZ=America/New_York 30 2 * * *", utc(2024, 3, 9), 3) == [
        "2024-03-09T07:30:00Z",  # 02:30 EST
        "2024-03-10T07:00:00Z",  # 02:30 does not exist: 03:00 EDT
        "2024-03-11T06:30:00Z",  # 02:30 EDT
    ]


def test_new_york_a_daily_time_repeated_by_fall_back_fires_once_at_its_first_occurrence() -> None:
    assert ticks("TZ=America/New_York 30 1 * * *", utc(2024, 11, 2), 3) == [
        "2024-11-02T05:30:00Z",  # 01:30 EDT
        "2024-11-03T05:30:00Z",  # 01:30 EDT, the first of two
        "2024-11-04T06:30:00Z",  # 01:30 EST
    ]


def test_quarter_hours_inside_the_spring_gap_fire_once_together_when_it_ends() -> None:
    assert ticks("TZ=America/New_York */15 * * * *", utc(2024, 3, 10, 6, 30), 4) == [
        "2024-03-10T06:45:00Z",  # 01:45 EST
        "2024-03-10T07:00:00Z",  # 02:00..02:45 do not exist; 03:00 EDT fires once
        "2024-03-10T07:15:00Z",
        "2024-03-10T07:30:00Z",
    ]


def test_an_hourly_schedule_does_not_fire_again_in_the_repeated_hour() -> None:
    assert ticks("TZ=America/New_York 0 * * * *", utc(2024, 11, 3, 3, 30), 3) == [
        "2024-11-03T04:00:00Z",  # 00:00 EDT
        "2024-11-03T05:00:00Z",  # 01:00 EDT; 01:00 EST (06:00 UTC) is the same wall time
        "2024-11-03T07:00:00Z",  # 02:00 EST
    ]


def test_during_the_repeated_hour_the_latest_tick_is_from_its_first_pass() -> None:
    schedule = parse_cron("TZ=America/New_York */15 * * * *")
    second_pass = utc(2024, 11, 3, 6, 20)  # 01:20 EST, after 01:00..01:45 EDT fired
    assert schedule.latest_at_or_before(second_pass) == utc(2024, 11, 3, 5, 45)
    assert schedule.next_after(second_pass) == utc(2024, 11, 3, 7, 0)


def test_jitter_is_deterministic_per_key_and_between_one_second_and_the_jitter() -> None:
    jitter = timedelta(seconds=30)
    offsets = [jitter_offset(f"fn:{minute}", jitter) for minute in range(200)]
    assert offsets == [jitter_offset(f"fn:{minute}", jitter) for minute in range(200)]
    assert all(timedelta(seconds=1) <= offset < jitter for offset in offsets)
    assert len(set(offsets)) > 10


def test_a_one_second_jitter_delays_every_tick_by_one_second() -> None:
    assert jitter_offset("anything", timedelta(seconds=1)) == timedelta(seconds=1)


def test_the_timer_event_carries_the_tick_time_as_its_id() -> None:
    """K4: name, id = scheduledAt (RFC 3339), data.cron/scheduledAt/fireAt, ts = fireAt."""
    event = timer_event(
        cron="*/5 * * * *",
        scheduled_at=utc(2024, 5, 1, 12, 5),
        fire_at=utc(2024, 5, 1, 12, 5, 7),
        now_ms=0,
    )
    assert (event.name, event.user_id) == ("inngest/scheduled.timer", "2024-05-01T12:05:00Z")
    assert event.data == {
        "cron": "*/5 * * * *",
        "scheduledAt": "2024-05-01T12:05:00Z",
        "fireAt": "2024-05-01T12:05:07Z",
    }
    assert event.ts == int(utc(2024, 5, 1, 12, 5, 7).timestamp() * 1000)


def test_a_cron_trigger_serialises_as_inngest_registers_it() -> None:
    """K7."""
    trigger = inngest.TriggerCron(cron="*/5 * * * *", jitter="30s")
    assert trigger.to_dict() == {"cron": "*/5 * * * *", "jitter": "30s"}
    assert inngest.TriggerCron(cron="0 * * * *").to_dict() == {"cron": "0 * * * *"}
