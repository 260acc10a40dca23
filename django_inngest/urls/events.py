"""The event endpoint alone (``e/<event_key>``), to mount at the site root::

path("", include("django_inngest.urls.events"))
"""

from django_inngest.api.urls import event_urlpatterns as urlpatterns

app_name = "django_inngest_events"

__all__ = ["app_name", "urlpatterns"]
