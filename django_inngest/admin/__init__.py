"""Django admin of django-inngest: runs with their timeline, events, functions, a dashboard.

Importing this package registers `FunctionRunAdmin` and `EventAdmin` with the default admin
site (Django's admin autodiscovery does it). Nothing else in the package imports it.
"""

from django_inngest.admin.events import EventAdmin
from django_inngest.admin.runs import FunctionRunAdmin

__all__ = ["EventAdmin", "FunctionRunAdmin"]
