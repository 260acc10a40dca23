"""What keeps the run and event lists fast on tables of millions of rows.

- `CappedPaginator` counts at most `COUNT_CAP` matching rows instead of all of them.
- Filters build their choices without reading the table (functions come from the registry) and
  select time windows on the primary key, whose ULIDs sort by creation time.
- `search_runs` looks ids up by index and scans event data only for free text.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

from django_inngest.core import clock, ids
from django_inngest.core.config import TriggerEvent
from django_inngest.models import Event, FunctionRun
from django_inngest.registry import registry
from django_inngest.store import alias

COUNT_CAP = 10_000
"""Lists count matches up to this many; past it they show "more than" and page through these."""

_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$", re.IGNORECASE)


if TYPE_CHECKING:
    _Paginator = Paginator[Any]
else:  # Paginator is generic only in django-stubs
    _Paginator = Paginator


class CappedPaginator(_Paginator):
    """Counts at most `COUNT_CAP` rows (``SELECT COUNT(*) FROM (... LIMIT n)``), so a page of
    a list over millions of rows costs an index walk, not a full count."""

    @cached_property
    def _capped_count(self) -> int:
        object_list: Any = self.object_list
        if isinstance(object_list, QuerySet):
            return int(object_list.order_by().values("pk")[: COUNT_CAP + 1].count())
        return len(object_list)

    @cached_property
    def count(self) -> int:
        """The number of rows, counted up to `COUNT_CAP`."""
        return min(self._capped_count, COUNT_CAP)

    @property
    def capped(self) -> bool:
        """More rows match than were counted."""
        return self._capped_count > COUNT_CAP


def looks_like_ulid(text: str) -> bool:
    """Whether `text` has the shape of a ULID (26 characters of Crockford's base 32), so a search
    can look it up by id."""
    return bool(_ULID.match(text))


def created_since(queryset: QuerySet[Any], field: str, start: datetime) -> QuerySet[Any]:
    """Rows whose `field` time is `start` or later.

    Run and event ids are ULIDs made at that time (or, when a clock went back, later), so
    ``id >= ulid_floor(start)`` narrows the rows on the primary key and `field` decides.
    """
    floor = ids.ulid_floor(int(start.timestamp() * 1000))
    return queryset.filter(pk__gte=floor, **{f"{field}__gte": start})


WINDOWS: dict[str, tuple[str, timedelta]] = {
    "15m": ("Last 15 minutes", timedelta(minutes=15)),
    "1h": ("Last hour", timedelta(hours=1)),
    "24h": ("Last 24 hours", timedelta(hours=24)),
    "7d": ("Last 7 days", timedelta(days=7)),
    "30d": ("Last 30 days", timedelta(days=30)),
}


class CreatedWithinFilter(admin.SimpleListFilter):
    """Rows created within a window, selected on the primary key."""

    title = "enqueued"
    parameter_name = "within"
    time_field = "created_at"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """The windows offered, from the last 15 minutes to the last 30 days."""
        return [(key, label) for key, (label, _) in WINDOWS.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """The rows whose `time_field` falls in the chosen window; all rows when none is chosen."""
        window = WINDOWS.get(str(self.value()))
        if window is None:
            return queryset
        return created_since(queryset, self.time_field, clock.now() - window[1])


class ReceivedWithinFilter(CreatedWithinFilter):
    """The created-within filter over when an event was received."""

    title = "received"
    time_field = "received_at"


class FunctionFilter(admin.SimpleListFilter):
    """Registered functions, from the registry rather than a DISTINCT over the runs."""

    title = "function"
    parameter_name = "function"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """The registered functions, and the one in the URL when it is no longer registered."""
        choices = [(function.id, function.id) for function in registry.all()]
        current = self.value()
        if current and current not in dict(choices):
            choices.append((current, f"{current} (not registered)"))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """The runs of the chosen function."""
        value = self.value()
        return queryset.filter(function_id=value) if value else queryset


class EventNameFilter(admin.SimpleListFilter):
    """Events of one name (``app/*``: a prefix). Choices are the names registered functions
    listen to; any name works in the URL, and each name in the list links to its filter."""

    title = "name"
    parameter_name = "name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """The event names the registered functions listen to, and the one in the URL when it is not
        among them."""
        names = sorted(
            {
                trigger.event
                for function in registry.all()
                for trigger in function.triggers
                if isinstance(trigger, TriggerEvent)
            }
        )
        current = self.value()
        if current and current not in names:
            names.append(current)
        return [(name, name) for name in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """The events of the chosen name; a name ending in ``*`` matches as a prefix, as a trigger
        does."""
        value = self.value()
        if not value:
            return queryset
        if value.endswith("*"):
            return queryset.filter(name__startswith=value[:-1])
        return queryset.filter(name=value)


class InternalEventsFilter(admin.SimpleListFilter):
    """Hide the events the engine emits itself (``inngest/function.finished`` and the like)."""

    title = "inngest/… events"
    parameter_name = "internal"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        """One choice, Hide; the filter's All reads Show."""
        return [("hide", "Hide")]

    def choices(self, changelist: Any) -> Any:
        """Django's choices, with All renamed Show."""
        for choice in super().choices(changelist):
            if choice["display"] == "All":
                choice["display"] = "Show"
            yield choice

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        """Without the engine's own ``inngest/...`` events when Hide is chosen."""
        if self.value() == "hide":
            return queryset.exclude(name__startswith="inngest/")
        return queryset


def matching_event_ids(term: str) -> list[str]:
    """Events whose id, ours or the sender's, is `term` (both are indexed)."""
    return list(
        Event.objects.using(alias())
        .filter(Q(pk=term.upper()) | Q(user_id=term))
        .values_list("pk", flat=True)[:100]
    )


SEARCH_WINDOWS = (20_000, 200_000)
"""Free-text search reads the newest this many events first, then all of them."""


def newest_events_where(condition: Q, limit: int) -> list[str]:
    """Ids of the newest events meeting `condition` (a scan of their data), at most `limit`.

    The newest `SEARCH_WINDOWS[0]` events are read first, then more, then all: a text found in
    most events is found without reading the whole table; a rare one costs a little more than
    one full read.
    """
    events = Event.objects.using(alias())
    for window in (*SEARCH_WINDOWS, None):
        scope = events
        if window is not None:
            bound = list(events.order_by("-pk").values_list("pk", flat=True)[window - 1 : window])
            if not bound:  # fewer events than the window: read them all
                window = None
            else:
                scope = events.filter(pk__gte=bound[0])
        found = list(scope.filter(condition).order_by("-pk").values_list("pk", flat=True)[:limit])
        if window is None or len(found) >= limit:
            return found
    raise AssertionError("unreachable: the last window is the whole table")


def search_runs(queryset: QuerySet[FunctionRun], term: str) -> QuerySet[FunctionRun]:
    """A run id, an event id (ours or the sender's), or else text in the triggering event's
    data. Ids are found by index. Free text reads the events' data, newest first, stopping
    one past `COUNT_CAP` matching events (so the list can say "more than"), whose runs the
    list then finds by index."""
    term = term.strip()
    if not term:
        return queryset
    event_ids = matching_event_ids(term)
    if event_ids or looks_like_ulid(term):
        return queryset.filter(Q(pk=term.upper()) | Q(event_id__in=event_ids))
    return queryset.filter(event_id__in=newest_events_where(Q(data__icontains=term), COUNT_CAP + 1))


def search_events(queryset: QuerySet[Event], term: str) -> QuerySet[Event]:
    """An event id (ours or the sender's), or else text in the name or the data (the newest
    such events, one past `COUNT_CAP`)."""
    term = term.strip()
    if not term:
        return queryset
    event_ids = matching_event_ids(term)
    if event_ids or looks_like_ulid(term):
        return queryset.filter(pk__in=event_ids)
    condition = Q(name__icontains=term) | Q(data__icontains=term)
    return queryset.filter(pk__in=newest_events_where(condition, COUNT_CAP + 1))
