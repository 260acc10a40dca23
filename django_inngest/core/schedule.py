"""Cron schedules: parse `[TZ=Area/City ]m h dom mon dow`; the only importer of croniter."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from django_inngest.core.errors import InngestError

MAX_CRON_LENGTH = 255
_TZ_PREFIX = re.compile(r"^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$")
_GO_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(h|m|s|ms))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class CronError(InngestError, ValueError):
    """A cron schedule or jitter that cannot be used."""

    def __init__(self, cron: str, reason: str) -> None:
        super().__init__(f"{cron!r} isn't a valid cron schedule: {reason}")
        self.cron = cron
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class CronSchedule:
    """A validated cron expression and the zone its wall-clock times are read in."""

    source: str
    """The string as written, prefix included."""
    fields: str
    """The five fields alone."""
    zone: ZoneInfo

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`, as an aware datetime in the schedule's zone."""
        result: datetime = croniter(self.fields, moment.astimezone(self.zone)).get_next(datetime)
        return result


def parse_cron(source: str, default_zone: str = "UTC") -> CronSchedule:
    if not isinstance(source, str):
        raise TypeError(f"cron must be a string, not {source!r}")
    if len(source) > MAX_CRON_LENGTH:
        raise CronError(source[:40] + "...", f"longer than {MAX_CRON_LENGTH} characters")
    text = source.strip()
    zone_name = default_zone
    prefix = _TZ_PREFIX.match(text)
    if prefix:
        zone_name, text = prefix.group(1), prefix.group(2).strip()
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(source, f"unknown time zone {zone_name!r}") from None
    if text.startswith("@"):
        raise CronError(source, "descriptors such as @hourly are not supported; use 5 fields")
    fields = text.split()
    if len(fields) != 5:
        raise CronError(
            source, f"expected 5 fields (minute hour day month weekday), found {len(fields)}"
        )
    if not croniter.is_valid(" ".join(fields)):
        raise CronError(source, "a field is out of range or malformed")
    return CronSchedule(source=source, fields=" ".join(fields), zone=zone)


def parse_go_duration(text: str) -> timedelta:
    """Parse a duration string such as ``"30s"``, ``"1m30s"`` or ``"500ms"``."""
    if not isinstance(text, str) or not _GO_DURATION.match(text):
        raise ValueError(f"invalid duration {text!r}: use a number and a unit (ms, s, m, h)")
    seconds = sum(
        float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text)
    )
    return timedelta(seconds=seconds)
