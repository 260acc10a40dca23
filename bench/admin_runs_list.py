"""How fast the admin's runs list renders over 100,000 runs on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/django_inngest_admin_bench \\
        .venv/bin/python -m bench.admin_runs_list [--runs 100000] [--repeat 5]

The database named in DATABASE_URL is dropped and created (with `--reuse`, a database this
script filled before is kept as it is). It is filled with runs spread over
the last 30 days across 20 functions and every status, each with its triggering event, one
run in ten with three steps. Then a superuser renders the runs list through Django's test
client (the whole request: middleware, queries, templates): the first page, a later page,
each filter, searches by id and by event data. For each view it prints the median and the
slowest time and the number of queries, and it exits with status 1 when a view takes a second
or more. It is a benchmark, not a test of the suite: it needs a few minutes and PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

LIMIT_SECONDS = 1.0
FUNCTIONS = [f"shop-task-{n:02d}" for n in range(20)]
STATUSES = [
    ("COMPLETED", 85),
    ("FAILED", 5),
    ("SLEEPING", 4),
    ("RUNNING", 2),
    ("QUEUED", 2),
    ("CANCELLED", 2),
]
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def configure(url: str, *, fresh: bool) -> None:
    """Django settings for the admin alone; with `fresh`, on a newly created database."""
    import django
    import environ
    from django.conf import settings

    database = environ.Env.db_url_config(url)
    if not database["ENGINE"].endswith("postgresql"):
        sys.exit("this benchmark needs PostgreSQL: DATABASE_URL=postgres://...")
    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench-only",
        ALLOWED_HOSTS=["testserver"],
        USE_TZ=True,
        TIME_ZONE="UTC",
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.staticfiles",
            "django_inngest",
        ],
        MIDDLEWARE=[
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        ROOT_URLCONF="tests.urls",
        TEMPLATES=[
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
        ],
        STATIC_URL="static/",
        DATABASES={"default": database},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
        INNGEST={"APP_ID": "bench"},
    )
    import psycopg

    params = {
        key: database[name]
        for key, name in (
            ("user", "USER"),
            ("host", "HOST"),
            ("port", "PORT"),
            ("password", "PASSWORD"),
        )
        if database.get(name)
    }
    if fresh:
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database["NAME"]}"')
            admin.execute(f'CREATE DATABASE "{database["NAME"]}"')
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def ulid_at(moment: datetime, rng: random.Random) -> str:
    """A ULID of `moment`, as the engine makes them."""
    ms = int(moment.timestamp() * 1000)
    head = "".join(_CROCKFORD[(ms >> (5 * (9 - i))) & 31] for i in range(10))
    return head + "".join(rng.choice(_CROCKFORD) for _ in range(16))


def fill(runs: int, *, now: datetime, seed: int = 7) -> None:
    """`runs` runs over the last 30 days, newest ones denser, in batches."""
    from django.db import connection

    from django_inngest.models import Event, FunctionRun, RunStep

    rng = random.Random(seed)
    statuses = [status for status, weight in STATUSES for _ in range(weight)]
    batch = 5000
    for start in range(0, runs, batch):
        events, rows, steps = [], [], []
        for _ in range(min(batch, runs - start)):
            moment = now - timedelta(seconds=30 * 86400 * rng.random() ** 2)
            status = rng.choice(statuses)
            event_id = ulid_at(moment, rng)
            events.append(
                Event(
                    id=event_id,
                    user_id=f"order-{rng.randrange(10**9)}" if rng.random() < 0.3 else "",
                    name=f"shop/order.{rng.choice(['placed', 'paid', 'shipped'])}",
                    data={
                        "order_id": rng.randrange(10**7),
                        "customer": f"customer-{rng.randrange(50_000)}@example.com",
                        "items": [{"sku": f"SKU-{rng.randrange(9999)}", "qty": 1}],
                    },
                    ts=int(moment.timestamp() * 1000),
                    received_at=moment,
                    pending=False,
                )
            )
            ended = status in ("COMPLETED", "FAILED", "CANCELLED")
            took = timedelta(seconds=rng.expovariate(1 / 3))
            run = FunctionRun(
                id=ulid_at(moment, rng),
                function_id=rng.choice(FUNCTIONS),
                status=status,
                event_id=event_id,
                event_ids=[event_id],
                output={"ok": True} if status == "COMPLETED" else None,
                attempt=0,
                created_at=moment,
                started_at=None if status == "QUEUED" else moment,
                ended_at=moment + took if ended else None,
            )
            rows.append(run)
            if rng.random() < 0.1:
                for index, name in enumerate(("load", "charge", "notify")):
                    steps.append(
                        RunStep(
                            run=run,
                            hashed_id=f"{index:040d}",
                            step_id=name,
                            op="run",
                            status="COMPLETED",
                            output={"n": index},
                            attempts=1 + (rng.random() < 0.1),
                            started_at=moment,
                            ended_at=moment + took / 3,
                        )
                    )
        Event.objects.bulk_create(events)
        FunctionRun.objects.bulk_create(rows)
        RunStep.objects.bulk_create(steps)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def measure(client: Any, url: str, repeat: int) -> tuple[float, float, int]:
    """Median and slowest seconds of `repeat` renders after a warm-up, and queries per render."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}")
    times = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            client.get(url)
            times.append(time.perf_counter() - started)
    return statistics.median(times), max(times), len(queries.captured_queries)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reuse", action="store_true", help="keep a database filled before")
    args = parser.parse_args()
    url = os.environ.get(
        "DATABASE_URL", "postgres://postgres@127.0.0.1:5432/django_inngest_admin_bench"
    )
    configure(url, fresh=not args.reuse)
    from django.contrib.auth.models import User
    from django.test import Client

    from django_inngest.models import FunctionRun

    now = datetime.now(UTC)
    stored = FunctionRun.objects.count()
    if args.reuse and stored:
        print(f"reusing {stored:,} runs")
    else:
        started = time.perf_counter()
        fill(args.runs, now=now)
        print(f"filled {args.runs:,} runs in {time.perf_counter() - started:.1f} s")
    user = User.objects.filter(username="bench").first()
    client = Client()
    client.force_login(user or User.objects.create_superuser("bench", "bench@example.com", "b"))
    some_run = FunctionRun.objects.filter(status="FAILED").order_by("id").first()
    assert some_run is not None and some_run.event is not None
    customer = some_run.event.data["customer"]  # in the data of one or a few events
    base = "/admin/django_inngest/functionrun/"
    views = [
        ("first page", base),
        ("page 100", f"{base}?p=100"),
        ("status = FAILED", f"{base}?status__exact=FAILED"),
        ("function", f"{base}?function={FUNCTIONS[3]}"),
        ("function and status", f"{base}?function={FUNCTIONS[3]}&status__exact=SLEEPING"),
        ("last hour", f"{base}?within=1h"),
        ("last 24 hours, failed", f"{base}?within=24h&status__exact=FAILED"),
        ("search run id", f"{base}?q={some_run.id}"),
        ("search event id", f"{base}?q={some_run.event_id}"),
        ("search data, rare text", f"{base}?q={customer}"),
        ("search data, common text", f"{base}?q=example.com"),
    ]
    slow = []
    print(f"{'view':<26} {'median':>9} {'slowest':>9} {'queries':>8}")
    for label, view_url in views:
        median, slowest, queries = measure(client, view_url, args.repeat)
        print(f"{label:<26} {median * 1000:>7.0f} ms {slowest * 1000:>6.0f} ms {queries:>8}")
        if slowest >= LIMIT_SECONDS:
            slow.append(label)
    if slow:
        print(f"slower than {LIMIT_SECONDS:.0f} s: {', '.join(slow)}")
        return 1
    print(f"every view rendered in under {LIMIT_SECONDS:.0f} s over {args.runs:,} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
