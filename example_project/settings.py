"""Settings of the example shop; read from the environment (django-environ).

DATABASE_URL defaults to a SQLite file next to manage.py; point it at PostgreSQL with
DATABASE_URL=postgres://user@host:5432/dbname.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

SECRET_KEY = env("SECRET_KEY", default="example-only-not-secret")
DEBUG = env.bool("DEBUG", default=True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_inngest",
    "example_project.shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "example_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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
WSGI_APPLICATION = "example_project.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {})["transaction_mode"] = "IMMEDIATE"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"

INNGEST = {
    "APP_ID": "shop",
    # Short retries so the demo finishes in seconds; production keeps Inngest's table.
    "RETRY_BACKOFF": env.list("INNGEST_RETRY_BACKOFF", cast=float, default=[1.0]),
    "RETRY_JITTER": env.float("INNGEST_RETRY_JITTER", default=0.0),
    # The HTTP API (docs/api.md): keys for POST /e/<key>, signing keys for REST v1.
    "EVENT_KEYS": env.list("INNGEST_EVENT_KEYS", default=[]),
    "ACCEPT_ANY_EVENT_KEY": env.bool("INNGEST_ACCEPT_ANY_EVENT_KEY", default=DEBUG),
    "SIGNING_KEYS": env.list("INNGEST_SIGNING_KEYS", default=[]),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "django_inngest": {
            "handlers": ["console"],
            "level": env("INNGEST_LOG_LEVEL", default="INFO"),
        },
        "shop": {"handlers": ["console"], "level": "INFO"},
    },
}
