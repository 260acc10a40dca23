"""Test settings: SQLite by default, PostgreSQL with DATABASE_URL=postgres://..."""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

SECRET_KEY = "tests-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_inngest",
    "tests.testapp.apps.TestAppConfig",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'tests' / 'db.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {})["transaction_mode"] = "IMMEDIATE"
    # A file, not memory: end-to-end tests share the database with worker processes.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = env(
        "TEST_SQLITE_NAME", default=str(BASE_DIR / "tests" / "test-db.sqlite3")
    )

INNGEST = {
    "APP_ID": "tests",
    "RETRY_BACKOFF": [0],
    "RETRY_JITTER": 0,
    "LEASE_SECONDS": env.float("INNGEST_LEASE_SECONDS", default=30.0),
    "HEARTBEAT_SECONDS": env.float("INNGEST_HEARTBEAT_SECONDS", default=10.0),
    "SWEEP_SECONDS": env.float("INNGEST_SWEEP_SECONDS", default=5.0),
    "POLL_INTERVAL": env.float("INNGEST_POLL_INTERVAL", default=None),
    "EVENT_KEYS": ["test-event-key", "next-event-key"],
    "SIGNING_KEYS": ["signkey-test-0123456789abcdef"],
}
