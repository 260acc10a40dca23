"""Admin pages beside the model lists: the registered functions (with an "invoke" form that
sends a test event) and the dashboard of recent runs.

Both are served under the runs' admin URLs and need the permission to view runs; sending a
test event also needs `django_inngest.send_event`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.timezone import localtime

from django_inngest.admin import charts, stats
from django_inngest.admin.display import STATUS_LABELS, format_duration, status_badge
from django_inngest.client import default_client
from django_inngest.core import clock
from django_inngest.core.config import TriggerCron, TriggerEvent
from django_inngest.core.errors import InngestError, UnstorableValueError
from django_inngest.core.events import MAX_JSON_DEPTH, storable_json
from django_inngest.core.events import Event as EventValue
from django_inngest.core.function import Function
from django_inngest.fleet_status import FleetStatus, fleet_status
from django_inngest.models import FunctionRun
from django_inngest.registry import registry
from django_inngest.runtime.scheduler import CronStatus, cron_status
from django_inngest.store import event_map

SEND_PERMISSION = "django_inngest.send_event"
FLOW_CONTROL = (
    "concurrency",
    "throttle",
    "rate_limit",
    "debounce",
    "batch_events",
    "priority",
    "idempotency",
    "singleton",
    "timeouts",
    "cancel",
)


def links() -> list[tuple[str, str]]:
    """The admin pages of django-inngest, for the object tools of each of them."""
    return [
        ("Dashboard", reverse("admin:django_inngest_dashboard")),
        ("Functions", reverse("admin:django_inngest_functions")),
        ("Runs", reverse("admin:django_inngest_functionrun_changelist")),
        ("Events", reverse("admin:django_inngest_event_changelist")),
        ("Replay", reverse("admin:django_inngest_replay")),
    ]


def page_context(request: HttpRequest, site: AdminSite, title: str) -> dict[str, Any]:
    """The context every page of the engine's admin shares: the admin site's, a title, and the links
    between the pages."""
    return {
        **site.each_context(request),
        "opts": FunctionRun._meta,
        "title": title,
        "inngest_links": links(),
    }


# --- functions --------------------------------------------------------------------------------


class InvokeForm(forms.Form):
    """A test event for one function: a name its triggers accept and JSON object data."""

    function_id = forms.CharField(widget=forms.HiddenInput)
    event_name = forms.CharField(max_length=512, label="Event name")
    event_data = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60, "spellcheck": "false"}),
        required=False,
        initial="{}",
        label="Data (JSON object)",
    )

    def clean_event_data(self) -> dict[str, Any]:
        """The event data as a JSON object; text that is not JSON, or JSON that is not an object, is
        a form error saying where."""
        text = str(self.cleaned_data.get("event_data") or "").strip() or "{}"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as error:
            raise forms.ValidationError(
                f"This is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})."
            ) from None
        except RecursionError:
            raise forms.ValidationError(
                f"This JSON nests deeper than {MAX_JSON_DEPTH} levels."
            ) from None
        except ValueError as error:  # such as an integer too long to read
            raise forms.ValidationError(f"This is not valid JSON: {error}.") from None
        if not isinstance(value, dict):
            raise forms.ValidationError(
                f'The data must be a JSON object such as {{"id": 1}}, not {type(value).__name__} '
                f"{text[:40]}."
            )
        try:
            storable_json(value, "data")
        except UnstorableValueError as error:
            raise forms.ValidationError(f"This data cannot be stored: {error}.") from None
        return value

    def clean(self) -> dict[str, Any]:
        """Check the function is still registered and that an event of this name and data would
        start it (its triggers, expressions included)."""
        cleaned = super().clean() or {}
        function = registry.get(str(cleaned.get("function_id", "")))
        name = cleaned.get("event_name")
        if function is None:
            raise forms.ValidationError("This function is no longer registered.")
        if name is None or "event_data" not in cleaned:
            return cleaned
        candidate = {"name": name, "data": cleaned["event_data"], "user_id": "", "id": "", "ts": 0}
        if function not in registry.matching(event_map(candidate)):
            raise forms.ValidationError(
                f"An event {name!r} with this data would not start {function.id}: "
                f"its triggers are {describe_triggers(function)}."
            )
        return cleaned


def describe_triggers(function: Function) -> str:
    """The function's triggers in words, such as ``event 'shop/order.placed' if ...`` or ``cron '0 3
    * * *'``."""
    parts = []
    for trigger in function.triggers:
        if isinstance(trigger, TriggerEvent):
            text = f"event {trigger.event!r}"
            if trigger.expression:
                text += f" if {trigger.expression}"
            parts.append(text)
        elif isinstance(trigger, TriggerCron):
            parts.append(f"cron {trigger.cron!r}")
    return ", ".join(parts) or "none"


def describe_option(value: Any) -> str:
    """``Throttle(limit=10, period=1 m 00 s)``: fields that are set, durations made readable."""
    if isinstance(value, list | tuple):
        return ", ".join(describe_option(item) for item in value)
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return repr(value)
    shown = []
    for item in dataclasses.fields(value):
        field_value = getattr(value, item.name)
        if field_value is None or field_value == item.default:
            continue
        if isinstance(field_value, timedelta):
            field_value = format_duration(field_value)
        elif not isinstance(field_value, int | float | str):
            field_value = describe_option(field_value)
        shown.append(f"{item.name}={field_value}")
    return f"{type(value).__name__}({', '.join(shown)})"


def _first_event_name(function: Function) -> str:
    for trigger in function.triggers:
        if isinstance(trigger, TriggerEvent):
            return trigger.event.rstrip("*") if trigger.event.endswith("*") else trigger.event
    return ""


def _tick(moment: datetime | None, zone: str) -> str:
    return f"{moment:%Y-%m-%d %H:%M} ({zone})" if moment else "never"


def _function_row(
    function: Function,
    counts: dict[str, int],
    form: InvokeForm | None,
    schedules: Mapping[tuple[str, str], CronStatus],
) -> dict[str, Any]:
    triggers = []
    for trigger in function.triggers:
        if isinstance(trigger, TriggerEvent):
            triggers.append(
                {"kind": "event", "text": trigger.event, "expression": trigger.expression}
            )
        elif isinstance(trigger, TriggerCron):
            status = schedules.get((function.id, trigger.cron))
            if status is None:
                ticks = "invalid: see manage.py check"
            else:
                ticks = (
                    f"next tick {_tick(status.next_tick, status.zone)}, "
                    f"last {_tick(status.last_tick, status.zone)}"
                )
            triggers.append({"kind": "cron", "text": trigger.cron, "expression": ticks})
    runs_url = reverse("admin:django_inngest_functionrun_changelist")
    status_counts = [
        {
            "status": status_badge(status),
            "count": counts[status],
            "url": f"{runs_url}?{urlencode({'function': function.id, 'status__exact': status})}"
            "&within=24h",
        }
        for status in STATUS_LABELS
        if counts.get(status)
    ]
    event_name = _first_event_name(function)
    if form is None and event_name:
        form = InvokeForm(initial={"function_id": function.id, "event_name": event_name})
    return {
        "function": function,
        "triggers": triggers,
        "options": [
            (option, describe_option(getattr(function, option)))
            for option in FLOW_CONTROL
            if getattr(function, option) not in (None, ())
        ],
        "counts": status_counts,
        "total": sum(counts.values()),
        "runs_url": f"{runs_url}?{urlencode({'function': function.id})}",
        "form": form,
    }


def functions(request: HttpRequest, site: AdminSite) -> HttpResponse:
    """Registered functions; a POST sends a test event for one of them."""
    can_send = request.user.has_perm(SEND_PERMISSION)
    bound: InvokeForm | None = None
    if request.method == "POST":
        if not can_send:
            raise PermissionDenied
        bound = InvokeForm(request.POST)
        if bound.is_valid():
            try:
                [event_id] = default_client().send_sync(
                    EventValue(
                        name=bound.cleaned_data["event_name"], data=bound.cleaned_data["event_data"]
                    )
                )
            except InngestError as error:
                bound.add_error(None, str(error))
            else:
                url = reverse("admin:django_inngest_event_change", args=[event_id])
                messages.success(
                    request,
                    format_html(
                        'Sent event <a href="{}">{}</a> to start {}.',
                        url,
                        event_id,
                        bound.cleaned_data["function_id"],
                    ),
                )
                return redirect("admin:django_inngest_functions")
    now = clock.now()
    functions = registry.all()
    counts = stats.counts_by_function(now=now, window=timedelta(hours=24))
    schedules = {(s.function_id, s.cron): s for s in cron_status(functions, now=now)}
    bound_id = bound.data.get("function_id") if bound is not None else None
    rows = [
        _function_row(
            function,
            counts.get(function.id, {}),
            bound if function.id == bound_id else None,
            schedules,
        )
        for function in functions
    ]
    context = {
        **page_context(request, site, "Functions"),
        "rows": rows,
        "can_send": can_send,
        "unregistered": sorted(set(counts) - {function.id for function in registry.all()}),
    }
    return TemplateResponse(request, "django_inngest/admin/functions.html", context)


# --- dashboard --------------------------------------------------------------------------------


def _fleet(status: FleetStatus) -> dict[str, Any]:
    """Workers, warnings, backlog and missed ticks, as the dashboard shows them."""
    age = status.pending_age
    return {
        "warnings": status.warnings,
        "live": len(status.live),
        "gone": len(status.workers) - len(status.live),
        "workers": [
            {
                "id": worker.record.id,
                "host": worker.record.host,
                "pid": worker.record.pid,
                "version": worker.record.version[:12],
                "in_flight": worker.record.in_flight,
                "concurrency": worker.record.concurrency,
                "functions": len(worker.record.functions),
                "last_seen": format_duration(worker.silent_for),
                "started": localtime(worker.record.started_at),
                "gone": worker.gone,
            }
            for worker in status.workers
        ],
        "pending_events": status.backlog.pending_events,
        "pending_age": format_duration(age) if age is not None else None,
        "due": [
            {
                "function_id": due.function_id,
                "count": due.count,
                "late": format_duration(status.lateness(due)),
            }
            for due in status.backlog.due
        ],
        "missed": [
            {
                "function_id": tick.function_id,
                "cron": tick.cron,
                "due_at": localtime(tick.due_at),
                "late": format_duration(tick.late_by),
            }
            for tick in status.missed_ticks
        ],
    }


def dashboard(request: HttpRequest, site: AdminSite) -> HttpResponse:
    """The admin's dashboard: runs enqueued per status and run durations per function over the last
    hour and day, and the state of the fleet."""
    now = clock.now()
    windows = []
    for label, window, size, size_label in (
        ("Last hour", timedelta(hours=1), timedelta(minutes=1), "minute"),
        ("Last 24 hours", timedelta(hours=24), timedelta(minutes=15), "15 minutes"),
    ):
        buckets = stats.runs_per_bucket(now=now, window=window, size=size)
        durations = stats.durations(now=now, window=window)
        windows.append(
            {
                "label": label,
                "size_label": size_label,
                "total": buckets.total,
                "statuses": [
                    (status_badge(status), sum(counts))
                    for status, counts in buckets.by_status.items()
                ],
                "runs_chart": charts.runs_chart(
                    buckets, title=f"Runs enqueued per {size_label}, {label.lower()}, by status"
                ),
                "durations_chart": charts.durations_chart(
                    durations, title=f"Run duration p50 and p95 per function, {label.lower()}"
                ),
                "durations": [
                    {
                        "function_id": row.function_id,
                        "runs": row.runs,
                        "p50": format_duration(row.p50),
                        "p95": format_duration(row.p95),
                    }
                    for row in durations
                ],
            }
        )
    context = {
        **page_context(request, site, "Inngest dashboard"),
        "fleet": _fleet(fleet_status(now)),
        "windows": windows,
        "legend": [status_badge(status) for status in STATUS_LABELS],
        "now": now,
    }
    return TemplateResponse(request, "django_inngest/admin/dashboard.html", context)
