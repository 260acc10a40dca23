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
from django.utils.timezone import localtime

from django_inngest.admin import actions as run_actions
from django_inngest.admin import pages
from django_inngest.admin.display import json_value_response, payload, status_badge
from django_inngest.admin.listing import CappedPaginator, ReceivedWithinFilter, search_events
from django_inngest.models import Event, EventSkip, FunctionRun
from django_inngest.store import alias, run_ids_of_event

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
    list_display = ("id", "name", "sender_id", "received", "occurred", "run_count")
    list_filter = (ReceivedWithinFilter,)
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
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_send_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(SEND_PERMISSION)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Event]:
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
        return search_events(queryset, search_term), False

    @admin.display(description="Sender's id")
    def sender_id(self, event: Event) -> str:
        return event.user_id or "—"

    @admin.display(description="Received")
    def received(self, event: Event) -> str:
        return date_format(localtime(event.received_at), "Y-m-d H:i:s")

    @admin.display(description="Occurred (ts)")
    def occurred(self, event: Event) -> str:
        moment = datetime.fromtimestamp(event.ts / 1000, UTC)
        return date_format(localtime(moment), "Y-m-d H:i:s")

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
        return own + super().get_urls()

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
            "received": date_format(localtime(event.received_at), "Y-m-d H:i:s"),
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
            "can_send": self.has_send_permission(request),
            "inngest_links": pages.links(),
        }
        return TemplateResponse(request, "django_inngest/admin/event_detail.html", context)

    def value_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return json_value_response(self._event_or_404(request, object_id).data)

    def send_again_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        event = self._event_or_404(request, object_id)
        if not self.has_send_permission(request):
            raise PermissionDenied
        outcome = run_actions.send_again([event])
        _sent_report(request, outcome)
        target = outcome.created[0] if outcome.created else event.id
        return redirect("admin:django_inngest_event_change", target)
