"""App configuration: autodiscover `functions` modules, register checks, tune SQLite."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created


class DjangoInngestConfig(AppConfig):
    name = "django_inngest"
    verbose_name = "Inngest"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_inngest import checks  # noqa: F401 - registers the checks
        from django_inngest.registry import autodiscover

        connection_created.connect(_tune_sqlite, dispatch_uid="django_inngest_sqlite")
        autodiscover()


def _tune_sqlite(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """WAL lets readers work while a worker writes; the busy timeout makes writers wait."""
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
