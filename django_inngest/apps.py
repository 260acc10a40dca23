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
    """Set on SQLite only what the engine's correctness needs.

    WAL lets readers work while a worker writes; a busy timeout makes writers wait instead of
    failing (10 s unless the database's OPTIONS give a `timeout` of their own). Durability
    (`PRAGMA synchronous`) stays as the user configured it: it governs the user's own writes too.
    """
    if connection.vendor != "sqlite":
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode=WAL")
        if "timeout" not in connection.settings_dict.get("OPTIONS", {}):
            cursor.execute("PRAGMA busy_timeout=10000")
