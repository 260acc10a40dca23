"""Everything django-inngest serves over HTTP: the event endpoint, REST v1 and the OpenAPI
schema. Include it under a prefix::

    path("inngest/", include("django_inngest.urls"))

Inngest's Python SDK posts events to ``<event_api_base_url>/e/<key>``, dropping any path in the
base URL; mount `django_inngest.urls.events` at the site root for it (see docs/api.md).
"""

from django_inngest.api.urls import urlpatterns

app_name = "django_inngest"

__all__ = ["app_name", "urlpatterns"]
