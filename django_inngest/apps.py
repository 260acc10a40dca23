"""App configuration: autodiscover `functions` modules (and `tasks` modules with the tasks
backend), register checks, tune SQLite."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.utils.module_loading import autodiscover_modules


class DjangoInngestConfig(AppConfig):
    """The app: registers the system checks, tunes SQLite connections, and imports the `functions`
    modules of installed apps when Django is ready."""

    name = "django_inngest"
    verbose_name = "Inngest"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the checks and the SQLite connection hook, then discover the project's functions
        (and, with the tasks backend configured, its `tasks` modules)."""
        from django_inngest import checks, conf  # noqa: F401 - registers the checks
        from django_inngest.registry import autodiscover, registry

        connection_created.connect(_tune_sqlite, dispatch_uid="django_inngest_sqlite")
        # A Django task (django_inngest.tasks) not imported yet is imported when a worker
        # meets its run; with the backend in TASKS, `tasks` modules are imported up front.
        for prefix in ("tasks.", "tasks/"):
            registry.resolve_with(prefix, _task_function)
        autodiscover()
        if conf.uses_tasks_backend():
            autodiscover_modules("tasks")


def _task_function(name: str) -> Any:
    try:
        from django_inngest.tasks import resolve
    except ImportError:  # neither django.tasks (Django 6) nor the django-tasks backport
        return None
    return resolve(name)


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
