"""Admin of function runs: the list, the run page with its timeline, and run actions.

The list stays fast on millions of runs (see `listing`); the run page costs a fixed number of
queries whatever the number of steps. Cancel, rerun and retry need the custom permissions
`cancel_functionrun` / `rerun_functionrun` and go through `actions` (the client).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import F, IntegerField, Max, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Greatest
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
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timezone import localtime

from django_inngest.admin import actions as run_actions
from django_inngest.admin import pages, replay
from django_inngest.admin.display import (
    elapsed,
    error_parts,
    format_duration,
    json_value_response,
    payload,
    status_badge,
)
from django_inngest.admin.guard import guarded
from django_inngest.admin.listing import (
    CappedPaginator,
    CreatedWithinFilter,
    FunctionFilter,
    search_runs,
)
from django_inngest.admin.timeline import build_timeline
from django_inngest.core import clock
from django_inngest.models import Event, FunctionRun, Pause, RunStatus, RunStep
from django_inngest.registry import registry
from django_inngest.store import alias

REFRESH_SECONDS = 5
CANCEL_PERMISSION = "django_inngest.cancel_functionrun"
RERUN_PERMISSION = "django_inngest.rerun_functionrun"


def show_time(value: datetime | None, pattern: str = "Y-m-d H:i:s T") -> str:
    """`value` in the admin's time zone with `pattern`, or a dash for None."""
    return date_format(localtime(value), pattern) if value else "—"


def function_name(function_id: str) -> str | None:
    """The `name=` of a registered function, when it says more than its id."""
    function = registry.get(function_id)
    if function is None or function.name in (function.local_id, function.id):
        return None
    return function.name


def describe_pause(pause: Mapping[str, Any]) -> str:
    """What a pause waits for, in words: an event (and its condition), or an invoked run."""
    if pause["kind"] == Pause.Kind.INVOKE:
        return "the invoked run to end"
    text = f"event {pause['event_name']}"
    return f"{text} if {pause['expression']}" if pause["expression"] else text


def report(request: HttpRequest, outcome: run_actions.ActionReport, verb: str) -> None:
    """Admin messages for what an action did and what it left alone."""
    if outcome.done:
        created = ", ".join(outcome.created)
        text = f"{verb} {len(outcome.done)} run(s)" + (
            f"; new run(s): {created}" if created else ""
        )
        messages.success(request, text)
    for reason in outcome.refused:
        messages.warning(request, reason)


if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[FunctionRun]
else:  # ModelAdmin is generic only in django-stubs
    _ModelAdmin = admin.ModelAdmin


@admin.register(FunctionRun)
class FunctionRunAdmin(_ModelAdmin):
    """The admin's run list and run pages, and the engine's own pages (dashboard, functions, replay)
    under its URLs: read-only, with cancel, rerun and retry for users allowed to."""

    list_display = (
        "id",
        "colored_status",
        "function",
        "trigger",
        "started",
        "duration",
        "attempts",
    )
    list_filter = ("status", FunctionFilter, CreatedWithinFilter)
    search_fields = ("id",)
    search_help_text = (
        "A run id, an event id (ours or the sender's), or text found in the triggering event's "
        "data."
    )
    ordering = ("-id",)
    sortable_by = ("id",)
    list_per_page = 50
    list_max_show_all = 0
    paginator = CappedPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    actions = ["cancel_selected", "rerun_selected", "retry_selected"]
    change_list_template = "django_inngest/admin/run_list.html"

    # --- permissions: runs are history, changed only through actions -------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Never: runs start from events, invocations and schedules."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never: only the engine changes a run."""
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Never: ended runs go with retention (`inngest_prune`)."""
        return False

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        """Whether the user may cancel runs (the ``cancel_functionrun`` permission)."""
        return request.user.has_perm(CANCEL_PERMISSION)

    def has_rerun_permission(self, request: HttpRequest) -> bool:
        """Whether the user may rerun, retry or replay runs (the ``rerun_functionrun`` permission)."""
        return request.user.has_perm(RERUN_PERMISSION)

    # --- the list ----------------------------------------------------------------------------

    def get_queryset(self, request: HttpRequest) -> QuerySet[FunctionRun]:
        """Runs from the engine's database, without their output, each with its trigger's event name
        and the most attempts any of its steps took."""
        most_step_attempts = (
            RunStep.objects.using(alias())
            .filter(run_id=OuterRef("pk"))
            .order_by()
            .values("run_id")
            .annotate(most=Max("attempts"))
            .values("most")
        )
        return (
            super()
            .get_queryset(request)
            .using(alias())
            .defer("output", "event_ids")
            .annotate(
                # A subquery rather than a join: counting pages never touches the events.
                event_name=Subquery(
                    Event.objects.using(alias()).filter(pk=OuterRef("event_id")).values("name")[:1]
                ),
                most_attempts=Greatest(
                    Coalesce(Subquery(most_step_attempts, output_field=IntegerField()), Value(0)),
                    F("attempt") + 1,
                ),
            )
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[FunctionRun], search_term: str
    ) -> tuple[QuerySet[FunctionRun], bool]:
        """The runs `search_runs` finds for `search_term`; never duplicates."""
        return search_runs(queryset, search_term), False

    @admin.display(description="Status")
    def colored_status(self, run: FunctionRun) -> SafeString:
        return status_badge(run.status)

    @admin.display(description="Function")
    def function(self, run: FunctionRun) -> SafeString:
        name = function_name(run.function_id)
        if name is None:
            return format_html("{}", run.function_id)
        return format_html('{}<span class="inngest-fn-name">{}</span>', run.function_id, name)

    @admin.display(description="Trigger")
    def trigger(self, run: FunctionRun) -> str:
        return getattr(run, "event_name", None) or "—"

    @admin.display(description="Started")
    def started(self, run: FunctionRun) -> str:
        return show_time(run.started_at, "M j, H:i:s")

    @admin.display(description="Duration")
    def duration(self, run: FunctionRun) -> str:
        return format_duration(elapsed(run.started_at, run.ended_at, clock.now()))

    @admin.display(description="Attempts")
    def attempts(self, run: FunctionRun) -> int:
        """The most attempts anything in the run needed: 1 when nothing was retried."""
        return int(getattr(run, "most_attempts", run.attempt + 1))

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {"inngest_links": pages.links(), **(extra_context or {})}
        return super().changelist_view(request, extra)

    # --- bulk actions ------------------------------------------------------------------------

    @admin.action(description="Cancel selected runs", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[FunctionRun]) -> None:
        report(request, run_actions.cancel(queryset.values_list("pk", flat=True)), "Cancelled")

    @admin.action(description="Rerun selected runs", permissions=["rerun"])
    def rerun_selected(self, request: HttpRequest, queryset: QuerySet[FunctionRun]) -> None:
        report(request, run_actions.rerun(queryset.only("id", "status")), "Reran")

    @admin.action(
        description="Retry selected failed runs from their failed step", permissions=["rerun"]
    )
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[FunctionRun]) -> None:
        report(
            request,
            run_actions.retry_from_failed_step(queryset.only("id", "status", "output")),
            "Retried",
        )

    # --- the run page ------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        def view(function: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
            return self.admin_site.admin_view(function)

        own = [
            path("dashboard/", view(self.dashboard_view), name="django_inngest_dashboard"),
            path("functions/", view(self.functions_view), name="django_inngest_functions"),
            path("replay/", view(self.replay_view), name="django_inngest_replay"),
            path("<str:object_id>/cancel/", view(self.cancel_view), name="django_inngest_cancel"),
            path("<str:object_id>/rerun/", view(self.rerun_view), name="django_inngest_rerun"),
            path("<str:object_id>/retry/", view(self.retry_view), name="django_inngest_retry"),
            path(
                "<str:object_id>/value/<str:what>/",
                view(self.value_view),
                name="django_inngest_run_value",
            ),
        ]
        return guarded([*own, *super().get_urls()])  # type: ignore[return-value]

    def _run_or_404(self, request: HttpRequest, object_id: str) -> FunctionRun:
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = FunctionRun.objects.using(alias()).filter(pk=object_id).first()
        if run is None:
            raise Http404(f"no run with id {object_id!r}")
        return run

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """A run's page: its status and timeline, its steps with their outputs and errors, what it
        waits for, its events, and the runs rerun from it."""
        run = self._run_or_404(request, object_id)
        now = clock.now()
        steps = list(RunStep.objects.using(alias()).filter(run_id=run.id))
        events = {
            event.id: event for event in Event.objects.using(alias()).filter(pk__in=run.event_ids)
        }
        reruns = list(
            FunctionRun.objects.using(alias())
            .filter(original_run_id=run.id)
            .order_by("id")
            .values("id", "status")
        )

        def value_url(what: str) -> str:
            return reverse("admin:django_inngest_run_value", args=[run.id, what])

        pauses = list(
            Pause.objects.using(alias())
            .filter(run_id=run.id)
            .order_by("id")
            .values("kind", "hashed_id", "event_name", "expression")
        )
        failed = run.status == RunStatus.FAILED
        skipped = run.status == RunStatus.SKIPPED and isinstance(run.output, dict)
        failed_step = run_actions.step_to_retry(run, steps)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Run {run.id}",
            "subtitle": run.function_id,
            "run": run,
            "function_name": function_name(run.function_id),
            "status": status_badge(run.status),
            "started": show_time(run.started_at),
            "ended": show_time(run.ended_at),
            "enqueued": show_time(run.created_at),
            "duration": format_duration(elapsed(run.started_at, run.ended_at, now)),
            "error": error_parts(run.output) if failed else None,
            "skip": run.output if skipped else None,
            "output": None
            if failed or skipped or run.output is None
            else payload(run.output, full_url=value_url("output")),
            "timeline": build_timeline(
                run,
                steps,
                now=now,
                output_url=lambda s: value_url(f"step-{s.pk}"),
                waiting_for={p["hashed_id"]: describe_pause(p) for p in pauses if p["hashed_id"]},
            ),
            "cancelled_by": [describe_pause(p) for p in pauses if p["kind"] == Pause.Kind.CANCEL],
            "events": [
                {
                    "event": events[event_id],
                    "data": payload(
                        events[event_id].data,
                        full_url=reverse("admin:django_inngest_event_value", args=[event_id]),
                    ),
                }
                for event_id in run.event_ids
                if event_id in events
            ],
            "reruns": [{"id": r["id"], "status": status_badge(r["status"])} for r in reruns],
            "can_cancel": not run.ended and self.has_cancel_permission(request),
            "can_rerun": run.ended and self.has_rerun_permission(request),
            "failed_step": failed_step if failed else None,
            "can_retry": failed and failed_step is not None and self.has_rerun_permission(request),
            "refresh_seconds": None if run.ended else REFRESH_SECONDS,
            "inngest_links": pages.links(),
        }
        return TemplateResponse(request, "django_inngest/admin/run_detail.html", context)

    def value_view(self, request: HttpRequest, object_id: str, what: str) -> HttpResponse:
        """The whole of a value the run page cut short: the output, or a step's output."""
        run = self._run_or_404(request, object_id)
        if what == "output":
            return json_value_response(run.output)
        if what.startswith("step-") and what[5:].isdigit():
            step = RunStep.objects.using(alias()).filter(run_id=run.id, pk=int(what[5:])).first()
            if step is not None:
                return json_value_response(step.output)
        raise Http404(f"run {run.id} has no value {what!r}")

    def _action(
        self,
        request: HttpRequest,
        object_id: str,
        allowed: Callable[[HttpRequest], bool],
        act: Callable[[FunctionRun], run_actions.ActionReport],
        verb: str,
    ) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        run = self._run_or_404(request, object_id)
        if not allowed(request):
            raise PermissionDenied
        outcome = act(run)
        report(request, outcome, verb)
        target = outcome.created[0] if outcome.created else run.id
        return redirect("admin:django_inngest_functionrun_change", target)

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._action(
            request,
            object_id,
            self.has_cancel_permission,
            lambda run: run_actions.cancel([run.id]),
            "Cancelled",
        )

    def rerun_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._action(
            request,
            object_id,
            self.has_rerun_permission,
            lambda run: run_actions.rerun([run]),
            "Reran",
        )

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._action(
            request,
            object_id,
            self.has_rerun_permission,
            lambda run: run_actions.retry_from_failed_step([run]),
            "Retried",
        )

    # --- pages beside the list ---------------------------------------------------------------

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """The dashboard, for users who may view runs."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return pages.dashboard(request, self.admin_site)

    def replay_view(self, request: HttpRequest) -> HttpResponse:
        """The bulk replay page, for users who may rerun runs."""
        if not self.has_rerun_permission(request):
            raise PermissionDenied
        return replay.replay(request, self.admin_site)

    def functions_view(self, request: HttpRequest) -> HttpResponse:
        """The page of registered functions, for users who may view runs."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return pages.functions(request, self.admin_site)
