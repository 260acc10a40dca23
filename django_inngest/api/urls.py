"""URL patterns of the API. `event_urlpatterns` is the event endpoint alone, for mounting at
the site root (Inngest's Python SDK drops the path of its event API base URL)."""

from __future__ import annotations

from django.urls import URLPattern, path

from django_inngest.api import views

event_urlpatterns: list[URLPattern] = [
    path("e/<path:event_key>", views.SendEventsView.as_view(), name="send-events"),
]

v1_urlpatterns: list[URLPattern] = [
    path("v1/events/<str:event_id>", views.EventView.as_view(), name="event"),
    path("v1/events/<str:event_id>/runs", views.EventRunsView.as_view(), name="event-runs"),
    path("v1/runs/<str:run_id>", views.RunView.as_view(), name="run"),
    path("v1/runs/<str:run_id>/rerun", views.RerunView.as_view(), name="rerun"),
    path("v1/cancellations", views.CancellationsView.as_view(), name="cancellations"),
    path("v1/replays", views.ReplaysView.as_view(), name="replays"),
    path("v1/functions", views.FunctionsView.as_view(), name="functions"),
    path("v1/apps/<str:app_id>/functions", views.AppFunctionsView.as_view(), name="app-functions"),
]

urlpatterns: list[URLPattern] = [
    *event_urlpatterns,
    *v1_urlpatterns,
    path(
        "openapi.json",
        views.OpenAPISchemaView.as_view(patterns=[*event_urlpatterns, *v1_urlpatterns]),
        name="openapi",
    ),
    path("v1/metrics", views.MetricsView.as_view(), name="metrics"),
]
