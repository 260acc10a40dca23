"""Cron schedules: parse `[TZ=Area/City ]m h dom mon dow`, find ticks, spread them with jitter,
and build the `inngest/scheduled.timer` event. The only importer of croniter.

Ticks are wall-clock times in the schedule's zone. Around daylight saving time changes:
a wall-clock time that does not exist (clocks go forward) fires once, at the first instant
after the gap; a wall-clock time that exists twice (clocks go back) fires once, at its first
occurrence. Every instant this module returns is an aware UTC datetime.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from django_inngest.core.errors import InngestError
from django_inngest.core.events import (
    SCHEDULED_TIMER,
    SYSTEM_EVENT_MAX_BYTES,
    Event,
    PreparedEvent,
    prepare,
)

MAX_CRON_LENGTH = 255
MIN_JITTER = timedelta(seconds=1)
MAX_JITTER = timedelta(minutes=5)
_TZ_PREFIX = re.compile(r"^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$")
_GO_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|m|s|ms))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
_FIELD_SYNTAX = re.compile(r"^[0-9A-Za-z*?,/-]+$")
_MONTHS = frozenset(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
)
_DAYS = frozenset(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])
_NAMES_BY_FIELD: dict[int, frozenset[str]] = {3: _MONTHS, 4: _DAYS}
#: Candidates examined before giving up; a repeated hour of a per-minute schedule needs 60.
_SEARCH_LIMIT = 10_000


class CronError(InngestError, ValueError):
    """A cron schedule or jitter that cannot be used."""

    def __init__(self, cron: str, reason: str) -> None:
        super().__init__(f"{cron!r} isn't a valid cron schedule: {reason}")
        self.cron = cron
        self.reason = reason


def rfc3339(moment: datetime) -> str:
    """UTC, whole seconds, ``Z`` suffix: how Inngest writes tick times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, kw_only=True)
class CronSchedule:
    """A validated cron expression and the zone its wall-clock times are read in."""

    source: str
    """The string as written, prefix included."""
    fields: str
    """The five fields alone."""
    zone: ZoneInfo

    @property
    def zone_name(self) -> str:
        """The IANA name of the schedule's time zone (UTC when the expression names none)."""
        return str(self.zone.key)

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`."""
        local = moment.astimezone(self.zone).replace(tzinfo=None)
        # Wall-clock times before `local` map to instants before `moment`, so candidates
        # start at `local`; in a repeated hour some after it do too, and are skipped.
        candidates = croniter(self.fields, local)
        for _ in range(_SEARCH_LIMIT):
            tick = self.instant(candidates.get_next(datetime))
            if tick > moment:
                return tick
        raise CronError(self.source, f"no tick found after {moment.isoformat()}")

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last tick at or before `moment`."""
        local = moment.astimezone(self.zone)
        start = local.replace(tzinfo=None)
        if local.fold:
            # In the second pass of a repeated hour, the rest of that hour already fired
            # during the first pass (earlier instants): start looking after it.
            start += _fold_length(start, self.zone)
        after_start = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
        candidates = croniter(self.fields, after_start)
        for _ in range(_SEARCH_LIMIT):
            tick = self.instant(candidates.get_prev(datetime))
            if tick <= moment:
                return tick
        raise CronError(self.source, f"no tick found before {moment.isoformat()}")

    def instant(self, wall: datetime) -> datetime:
        """The instant a naive wall-clock time of this zone fires at (see the module doc)."""
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        if _wall(first, self.zone) == wall:
            return first
        # `wall` falls in a gap: fold=1 reads it with the offset after the change, which
        # lands before the gap; fold=0 lands after it. The change happened in between.
        before, after = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC), first
        while after - before > timedelta(seconds=1):
            middle = before + (after - before) // 2
            if _wall(middle, self.zone) > wall:
                after = middle
            else:
                before = middle
        return after.replace(microsecond=0)

    def to_local(self, moment: datetime) -> datetime:
        """`moment` in the schedule's time zone."""
        return moment.astimezone(self.zone)


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _fold_length(wall: datetime, zone: ZoneInfo) -> timedelta:
    first = wall.replace(tzinfo=zone, fold=0).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert first is not None and second is not None
    return max(first - second, timedelta(0))


def parse_cron(source: str, default_zone: str = "UTC") -> CronSchedule:
    """Validate a cron string; `default_zone` applies when it has no ``TZ=`` prefix."""
    if not isinstance(source, str):
        raise TypeError(f"cron must be a string, not {source!r}")
    if len(source) > MAX_CRON_LENGTH:
        raise CronError(source[:40] + "...", f"longer than {MAX_CRON_LENGTH} characters")
    text = source.strip()
    zone_name = default_zone
    prefix = _TZ_PREFIX.match(text)
    if prefix:
        zone_name, text = prefix.group(1), prefix.group(2).strip()
    zone = zone_or_error(zone_name, source)
    if text.startswith("@"):
        raise CronError(source, "descriptors such as @hourly are not supported; use 5 fields")
    fields = text.split()
    if len(fields) != 5:
        raise CronError(
            source, f"expected 5 fields (minute hour day month weekday), found {len(fields)}"
        )
    for index, field in enumerate(fields):
        _check_field(source, index, field)
    # `?` means "any" in the day fields, as in Inngest's parser.
    normalized = " ".join("*" if field == "?" else field for field in fields)
    if not croniter.is_valid(normalized):
        raise CronError(source, "a field is out of range or malformed")
    try:
        croniter(normalized, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise CronError(source, "no date matches it (such as February 30)") from None
    return CronSchedule(source=source, fields=normalized, zone=zone)


def _check_field(source: str, index: int, field: str) -> None:
    """Refuse what croniter accepts beyond the standard syntax (L, W, #, names elsewhere)."""
    name = _FIELD_NAMES[index]
    if not _FIELD_SYNTAX.match(field):
        raise CronError(source, f"{name} field {field!r} has characters other than 0-9 * ? , - /")
    if "?" in field and (index < 2 or index == 3 or field != "?"):
        raise CronError(source, f"{name} field {field!r}: '?' stands alone, in the day fields")
    for word in re.findall(r"[A-Za-z]+", field):
        if word.upper() not in _NAMES_BY_FIELD.get(index, frozenset()):
            raise CronError(source, f"{name} field {field!r}: unknown name {word!r}")


def zone_or_error(name: str, cron: str | None = None) -> ZoneInfo:
    """The zone called `name` (such as ``Europe/Paris``), or a `CronError` naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(cron or name, f"unknown time zone {name!r}") from None


def parse_go_duration(text: str) -> timedelta:
    """Parse a duration string such as ``"30s"``, ``"1m30s"`` or ``"500ms"``."""
    if not isinstance(text, str) or not _GO_DURATION.match(text):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit (ms, s, m, h)")
    seconds = sum(
        float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text)
    )
    return timedelta(seconds=seconds)


def jitter_offset(key: str, jitter: timedelta) -> timedelta:
    """A delay in whole seconds within [1 s, jitter), the same every time for one `key`."""
    span = int(jitter.total_seconds()) - 1
    if span <= 0:
        return MIN_JITTER
    digest = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    return timedelta(seconds=1 + digest % span)


def timer_event(
    *, cron: str, scheduled_at: datetime, fire_at: datetime, now_ms: int
) -> PreparedEvent:
    """The event a cron run receives: its id is the tick time, so a tick starts one run."""
    data: dict[str, Any] = {
        "cron": cron,
        "scheduledAt": rfc3339(scheduled_at),
        "fireAt": rfc3339(fire_at),
    }
    event = Event(
        name=SCHEDULED_TIMER,
        data=data,
        id=rfc3339(scheduled_at),
        ts=int(fire_at.timestamp() * 1000),
    )
    [prepared] = prepare(event, now_ms=now_ms, max_bytes=SYSTEM_EVENT_MAX_BYTES, allow_system=True)
    return prepared
