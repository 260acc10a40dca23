"""Admin of events: the list, the event page with its payload, the runs it started and the
functions or waiting runs it skipped (and why), and "send again" (a copy under a new id,
through the client), which needs `send_event`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseNotAllowed,
)
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.formats import date_format
from django.utils.html import escape, format_html
from django.utils.http import urlencode
from django.utils.safestring import SafeString, mark_safe
from django.utils.timezone import localtime

from django_inngest.admin import actions as run_actions
from django_inngest.admin import pages
from django_inngest.admin.display import json_value_response, payload, status_badge
from django_inngest.admin.guard import guarded
from django_inngest.admin.listing import (
    CappedPaginator,
    EventNameFilter,
    InternalEventsFilter,
    ReceivedWithinFilter,
    search_events,
)
from django_inngest.core.config import TriggerEvent
from django_inngest.models import Event, EventSkip, FunctionRun
from django_inngest.registry import registry
from django_inngest.store import alias, event_map, run_ids_of_event

SEND_PERMISSION = "django_inngest.send_event"
RUNS_SHOWN = 100


def _sent_report(request: HttpRequest, outcome: run_actions.ActionReport) -> None:
    if outcome.created:
        messages.success(
            request, f"Sent {len(outcome.created)} event(s) again: {', '.join(outcome.created)}"
        )
    for reason in outcome.refused:
        messages.warning(request, reason)


if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Event]
else:  # ModelAdmin is generic only in django-stubs
    _ModelAdmin = admin.ModelAdmin


@admin.register(Event)
class EventAdmin(_ModelAdmin):
    """The admin's event list and event pages: read-only, with the runs each event started and, with
    the send permission, sending an event again."""

    list_display = (
        "id",
        "event_name",
        "sender_id",
        "received",
        "occurred",
        "matching",
        "run_count",
    )
    list_filter = (ReceivedWithinFilter, InternalEventsFilter, EventNameFilter)
    search_fields = ("id",)
    search_help_text = "An event id (ours or the sender's), or text in the name or the data."
    ordering = ("-id",)
    sortable_by = ("id",)
    list_per_page = 50
    list_max_show_all = 0
    paginator = CappedPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    actions = ["send_again_selected"]
    change_list_template = "django_inngest/admin/event_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Never: events are added by sending them, not by the admin's form."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never: a stored event is what was received, and stays so."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never: events go with retention (`inngest_prune`) once no run refers to them."""
        return False

    def has_send_permission(self, request: HttpRequest) -> bool:
        """Whether the user may send events again (the ``send_event`` permission)."""
        return request.user.has_perm(SEND_PERMISSION)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Event]:
        """Events from the engine's database, without their data (a list does not show it), each
        with the number of runs it started."""
        started = (
            FunctionRun.objects.using(alias())
            .filter(event_id=OuterRef("pk"))
            .order_by()
            .values("event_id")
            .annotate(runs=Count("pk"))
            .values("runs")
        )
        return (
            super()
            .get_queryset(request)
            .using(alias())
            .defer("data")
            .annotate(run_total=Coalesce(Subquery(started), 0))
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Event], search_term: str
    ) -> tuple[QuerySet[Event], bool]:
        """The events `search_events` finds for `search_term`; never duplicates."""
        return search_events(queryset, search_term), False

    @admin.display(description="Name")
    def event_name(self, event: Event) -> SafeString:
        """Links to the list of the events of this name."""
        # A line may break after each "/" of a narrow column, not inside a word.
        name = mark_safe(escape(event.name).replace("/", "/<wbr>"))  # escaped first
        return format_html('<a href="?{}">{}</a>', urlencode({"name": event.name}), name)

    @admin.display(description="Sender's id")
    def sender_id(self, event: Event) -> str:
        return event.user_id or "—"

    @admin.display(description="Received")
    def received(self, event: Event) -> str:
        return date_format(localtime(event.received_at), "Y-m-d H:i:s")

    @admin.display(description="Occurred")
    def occurred(self, event: Event) -> str:
        moment = datetime.fromtimestamp(event.ts / 1000, UTC)
        return date_format(localtime(moment), "Y-m-d H:i:s")

    @admin.display(description="Matched")
    def matching(self, event: Event) -> SafeString | str:
        """Events no worker has matched yet are marked: their runs do not exist yet."""
        if event.pending:
            return format_html(
                '<span class="inngest-status inngest-status-pending">{}</span>', "Pending"
            )
        return "yes"

    @admin.display(description="Runs")
    def run_count(self, event: Event) -> int:
        return int(getattr(event, "run_total", 0))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {"inngest_links": pages.links(), **(extra_context or {})}
        return super().changelist_view(request, extra)

    @admin.action(description="Send selected events again", permissions=["send"])
    def send_again_selected(self, request: HttpRequest, queryset: QuerySet[Event]) -> None:
        _sent_report(request, run_actions.send_again(queryset.only("id", "name", "data")))

    def get_urls(self) -> list[URLPattern]:
        def view(function: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
            return self.admin_site.admin_view(function)

        own = [
            path(
                "<str:object_id>/send-again/",
                view(self.send_again_view),
                name="django_inngest_send_again",
            ),
            path("<str:object_id>/data/", view(self.value_view), name="django_inngest_event_value"),
        ]
        return guarded([*own, *super().get_urls()])  # type: ignore[return-value]

    def _event_or_404(self, request: HttpRequest, object_id: str) -> Event:
        if not self.has_view_permission(request):
            raise PermissionDenied
        event = Event.objects.using(alias()).filter(pk=object_id).first()
        if event is None:
            raise Http404(f"no event with id {object_id!r}")
        return event

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """An event's page: its data, the runs it started (batched runs too), and the functions or
        waiting runs it skipped and why."""
        event = self._event_or_404(request, object_id)
        run_ids = run_ids_of_event(event.id, received_at=event.received_at)  # batches too
        runs = list(
            FunctionRun.objects.using(alias())
            .filter(id__in=run_ids)
            .order_by("-id")
            .values("id", "function_id", "status", "created_at")[: RUNS_SHOWN + 1]
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Event {event.name}",
            "subtitle": event.id,
            "event": event,
            "received": date_format(localtime(event.received_at), "Y-m-d H:i:s T"),
            "occurred": self.occurred(event),
            "data": payload(
                event.data, full_url=reverse("admin:django_inngest_event_value", args=[event.id])
            ),
            "runs": [{**run, "badge": status_badge(run["status"])} for run in runs[:RUNS_SHOWN]],
            "more_runs": len(runs) > RUNS_SHOWN,
            "skips": list(
                EventSkip.objects.using(alias())
                .filter(event_id=event.id)
                .order_by("id")
                .values("function_id", "run_id", "reason", "created_at")[:RUNS_SHOWN]
            ),
            "why_no_runs": why_no_runs(event) if not runs else "",
            "can_send": self.has_send_permission(request),
            "inngest_links": pages.links(),
        }
        return TemplateResponse(request, "django_inngest/admin/event_detail.html", context)

    def value_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The event's whole data as JSON, for the link under a shortened payload."""
        return json_value_response(self._event_or_404(request, object_id).data)

    def send_again_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """POST only: send a copy of the event (same name and data, a new id), with the send
        permission."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        event = self._event_or_404(request, object_id)
        if not self.has_send_permission(request):
            raise PermissionDenied
        outcome = run_actions.send_again([event])
        _sent_report(request, outcome)
        target = outcome.created[0] if outcome.created else event.id
        return redirect("admin:django_inngest_event_change", target)


def why_no_runs(event: Event) -> str:
    """Why an event has no run, from what the functions registered now would do with it."""
    if event.pending:
        return "None yet: no worker has matched this event."
    listening = sorted(
        {
            function.id
            for function in registry.all()
            for trigger in function.triggers
            if isinstance(trigger, TriggerEvent)
            and (
                trigger.event == event.name
                or (trigger.event.endswith("*") and event.name.startswith(trigger.event[:-1]))
            )
        }
    )
    if not listening:
        return f"None: no registered function listens to {event.name}."
    as_matched = {"id": event.id, "user_id": event.user_id, "name": event.name}
    starting = [
        f.id
        for f in registry.matching(event_map({**as_matched, "data": event.data, "ts": event.ts}))
    ]
    if starting:
        return (
            f"None: {', '.join(starting)} listen to it now, but no function did when it was "
            "matched (it came before they were deployed, or their runs were pruned). "
            "Send it again to start them."
        )
    return (
        f"None: {', '.join(listening)} listen to {event.name}, but their `if` expression "
        "does not match this event."
    )
