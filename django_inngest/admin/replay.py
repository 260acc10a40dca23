"""The bulk replay page: rerun every FAILED (or CANCELLED) run of a function enqueued in a time
window, as Inngest's replay does. A first submit previews how many runs match; a second,
which carries the same window, reruns them through `Inngest.replay_candidates` and `rerun`.
Served under the runs' admin URLs; it needs `django_inngest.rerun_functionrun`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.dateparse import parse_datetime

from django_inngest.admin import pages
from django_inngest.client import REPLAY_STATUSES, default_client
from django_inngest.core import clock
from django_inngest.registry import registry


class ReplayForm(forms.Form):
    """Which runs a bulk replay reruns: a function, the statuses they ended in, and the window they
    were enqueued in."""

    function_id = forms.ChoiceField(label="Function")
    statuses = forms.MultipleChoiceField(
        label="Runs that ended",
        choices=[(status, status.capitalize()) for status in REPLAY_STATUSES],
        initial=["FAILED"],
        widget=forms.CheckboxSelectMultiple,
    )
    started_after = forms.DateTimeField(
        label="Enqueued from",
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    started_before = forms.DateTimeField(
        label="Enqueued before",
        required=False,
        help_text="Empty: now.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["function_id"].choices = [  # type: ignore[attr-defined]
            (function.id, function.id) for function in registry.all()
        ]

    def candidates(self, before: datetime) -> list[str] | None:
        """The runs the window selects, or None with the reason added to the form's errors."""
        values = self.cleaned_data
        try:
            return default_client().replay_candidates(
                values["function_id"],
                statuses=values["statuses"],
                started_after=values.get("started_after"),
                started_before=before,
            )
        except ValueError as error:
            self.add_error(None, str(error))
            return None


def replay(request: HttpRequest, site: AdminSite) -> HttpResponse:
    """The admin's bulk replay: a first POST previews how many runs match, a confirmed one reruns
    them."""
    context = pages.page_context(request, site, "Replay failed runs")
    form = ReplayForm(request.POST or None, initial={"function_id": request.GET.get("function")})
    if request.method == "POST" and form.is_valid():
        # "Before" left empty is the moment of the preview, so that the confirmation reruns
        # what the preview counted, not also the runs that failed in between.
        before = (
            form.cleaned_data.get("started_before")
            or parse_datetime(request.POST.get("previewed_at", ""))
            or clock.now()
        )
        found = form.candidates(before)
        if found is not None and "confirm" in request.POST:
            client = default_client()
            new_ids = [client.rerun(run_id) for run_id in found]
            messages.success(
                request, f"Replayed {len(new_ids)} run(s) of {form.cleaned_data['function_id']}."
            )
            changelist = reverse("admin:django_inngest_functionrun_changelist")
            return redirect(
                f"{changelist}?{urlencode({'function': form.cleaned_data['function_id']})}"
            )
        if found is not None:
            context["preview"] = {
                "count": len(found),
                "previewed_at": before,
            }
    context["form"] = form
    return TemplateResponse(request, "django_inngest/admin/replay.html", context)
