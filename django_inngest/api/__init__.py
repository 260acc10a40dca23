"""The HTTP API, on Django REST Framework: Inngest's event endpoint (``POST e/<event_key>``)
and its REST v1 surface for events, runs, cancellation and functions.

Mount it with ``path("inngest/", include("django_inngest.urls"))``; see docs/api.md.
"""
