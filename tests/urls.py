from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("inngest/", include("django_inngest.urls")),
    # Inngest's Python SDK posts to <base URL>/e/<key>, dropping the base URL's path.
    path("", include("django_inngest.urls.events")),
]
