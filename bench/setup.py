"""A fresh database for the micro-benchmarks of this folder, configured without a project."""

from __future__ import annotations

import os
from pathlib import Path


def fresh_database(default_url: str) -> str:
    """Configure Django on DATABASE_URL (or `default_url`), empty that database, migrate."""
    import django
    import environ
    from django.conf import settings

    url = os.environ.get("DATABASE_URL", default_url)
    database = environ.Env.db_url_config(url)
    if database["ENGINE"].endswith("sqlite3"):
        database.setdefault("OPTIONS", {})["transaction_mode"] = "IMMEDIATE"
    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_inngest"],
        DATABASES={"default": database},
        USE_TZ=True,
        INNGEST={"APP_ID": "bench"},
    )
    django.setup()

    from django.core.management import call_command
    from django.db import connection

    if connection.vendor == "postgresql":
        import psycopg

        name = connection.settings_dict["NAME"]
        params = {
            key: value
            for key, value in connection.get_connection_params().items()
            if key in ("user", "host", "port", "password")
        }
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            admin.execute(f'CREATE DATABASE "{name}"')
    else:
        Path(connection.settings_dict["NAME"]).unlink(missing_ok=True)
    connection.close()
    call_command("migrate", verbosity=0)
    return url


def describe() -> str:
    import platform
    from datetime import UTC, datetime

    from django.db import connection

    version = f" {connection.pg_version}" if connection.vendor == "postgresql" else ""
    return (
        f"{datetime.now(UTC):%Y-%m-%d}, {connection.vendor}{version}, Python "
        f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs"
    )
