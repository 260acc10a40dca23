from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    # Events (POST inngest/e/<key>), REST v1 and the schema at inngest/openapi.json.
    path("inngest/", include("django_inngest.urls")),
    # Inngest's Python SDK drops the path of its event API URL: it posts to /e/<key>.
    path("", include("django_inngest.urls.events")),
]
