"""System checks: every configuration mistake is reported by `manage.py check`, naming the
function, the field and the value. The worker refuses to start while errors remain.

Ids: E001 settings, E002 duplicate function id, E003 invalid function configuration;
W001 SQLite without IMMEDIATE transactions, W002 the event endpoint accepts any key in
production, W003 the unrelated `django-inngest` distribution is installed beside this one.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import connections

from django_inngest import conf
from django_inngest.registry import registry

TAG = "django_inngest"
APP_LABEL = "django_inngest"

# An unrelated project on the package index, whose files are also the package `django_inngest`;
# this project is distributed as `django-inngest-db`.
CONFLICTING_DISTRIBUTION = "django-inngest"


@register(TAG)
def check_settings(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """E001: each problem of the ``INNGEST`` setting (a wrong type or value)."""
    return [
        Error(message, hint="See docs/reference.md#settings.", id="django_inngest.E001")
        for message in conf.problems()
    ]


@register(TAG)
def check_settings_safety(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """W002: settings that let anyone send events (no event keys, or any key accepted)."""
    return [
        Warning(
            message,
            hint="Set INNGEST['EVENT_KEYS'] and turn ACCEPT_ANY_EVENT_KEY off.",
            id="django_inngest.W002",
        )
        for message in conf.warnings()
    ]


@register(TAG)
def check_functions(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """E002 and more: two functions with one id, and each problem of each registered function's
    configuration."""
    messages: list[CheckMessage] = [
        Error(conflict, hint="Give each function its own fn_id.", id="django_inngest.E002")
        for conflict in registry.conflicts
    ]
    for function in registry.all():
        for problem in function.problems():
            messages.append(
                Error(
                    f"function {function.id!r}: {problem}",
                    obj=function.source,
                    id="django_inngest.E003",
                )
            )
    return messages


@register(TAG, Tags.database)
def check_sqlite_transaction_mode(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """On SQLite, the engine's writes need ``transaction_mode: IMMEDIATE`` in the database OPTIONS,
    or concurrent workers fail with 'database is locked'."""
    settings = connections[conf.get().DATABASE].settings_dict
    if settings["ENGINE"] != "django.db.backends.sqlite3":
        return []
    mode = settings.get("OPTIONS", {}).get("transaction_mode")
    if mode == "IMMEDIATE":
        return []
    return [
        Warning(
            f"SQLite database {conf.get().DATABASE!r} uses transaction_mode={mode!r}; "
            "workers may fail with 'database is locked'",
            hint='Set DATABASES[...]["OPTIONS"]["transaction_mode"] = "IMMEDIATE".',
            id="django_inngest.W001",
        )
    ]


def migrations_problem(alias: str) -> str | None:
    """Why the worker cannot use the database `alias` yet (django_inngest's migrations are
    not all applied), or None. A worker checks it once as it starts."""
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(connections[alias], ignore_no_migrations=True)
    applied = {name for app, name in loader.applied_migrations if app == APP_LABEL}
    declared = {name for app, name in loader.graph.nodes if app == APP_LABEL}
    if not applied:
        return "the django_inngest tables are missing: run `manage.py migrate`"
    missing = sorted(declared - applied)
    if missing:
        return (
            f"the django_inngest tables are not up to date ({', '.join(missing)} not applied): "
            "run `manage.py migrate`"
        )
    return None


@register(TAG)
def check_conflicting_distribution(
    app_configs: Sequence[AppConfig] | None, **kwargs: Any
) -> list[CheckMessage]:
    """W003: the unrelated `django-inngest` distribution is installed beside this one; both provide
    the `django_inngest` package."""
    try:
        found = metadata.distribution(CONFLICTING_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return []
    summary = found.metadata["Summary"] or "no summary"
    return [
        Warning(
            f"the distribution {found.metadata['Name']!r} {found.version} ({summary!r}) is "
            "installed: it is an unrelated project whose files are also the package "
            "'django_inngest', so it overwrites or shadows this one's",
            hint=(
                f"pip uninstall {CONFLICTING_DISTRIBUTION}, then reinstall django-inngest-db "
                "(see docs/install.md)."
            ),
            id="django_inngest.W003",
        )
    ]
