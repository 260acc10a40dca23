"""Django settings shared by the Django-based systems (django-inngest and django-tasks-db).

BENCH_SYSTEM picks the app, BENCH_BACKEND the database; both engines get the same SQLite
tuning (WAL, the same `synchronous`, IMMEDIATE transactions, a busy timeout).
"""

import os

from bench.systems.base import DATA, PG

SYSTEM = os.environ.get("BENCH_SYSTEM", "django-inngest")
BACKEND = os.environ.get("BENCH_BACKEND", "postgresql")
# SQLite durability for both engines alike: FULL is SQLite's default, NORMAL the faster setting.
SQLITE_SYNCHRONOUS = os.environ.get("BENCH_SQLITE_SYNCHRONOUS", "FULL")
SLUG = SYSTEM.replace("-", "_").replace("@", "_")

SECRET_KEY = "bench-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ALLOWED_HOSTS: list[str] = []

if BACKEND == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": f"bench_{SLUG}",
            "USER": PG["user"],
            "HOST": PG["host"],
            "PORT": PG["port"],
            "CONN_MAX_AGE": None,
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(DATA / f"{SLUG}.sqlite3"),
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": f"PRAGMA journal_mode=WAL; PRAGMA synchronous={SQLITE_SYNCHRONOUS};",
            },
        }
    }

if SYSTEM.startswith("django-inngest"):
    INSTALLED_APPS = ["django_inngest", "bench.systems.inngest_app"]
    INNGEST = {"APP_ID": "bench", "RETRY_BACKOFF": [1], "RETRY_JITTER": 0}
else:
    INSTALLED_APPS = ["django_tasks", "django_tasks_db", "bench.systems.tasks_db_app"]
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": "WARNING"},
}
