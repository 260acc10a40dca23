"""`manage.py inngest_worker`: a thin shell over `django_inngest.worker.Worker`."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_inngest.worker import Worker


class Command(BaseCommand):
    help = "Run durable functions: claim due runs and execute them until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--concurrency", type=int, default=None, help="Runs executed at once (default 10)."
        )
        parser.add_argument(
            "--burst", action="store_true", help="Process everything due now, then exit."
        )
        parser.add_argument("--worker-id", default=None, help="Name shown on leases and logs.")
        parser.add_argument(
            "--queue",
            action="append",
            default=None,
            dest="queues",
            help="Run only Django tasks of this queue (repeat for several); functions run anyway.",
        )
        parser.add_argument(
            "--poll-interval",
            type=float,
            default=None,
            help="Seconds between checks for new work (SQLite 0.1; PostgreSQL fallback 10).",
        )
        parser.add_argument(
            "--grace",
            type=float,
            default=30.0,
            help="On SIGTERM/SIGINT, seconds to let running runs finish before releasing them.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not logging.getLogger("django_inngest").handlers and not logging.root.handlers:
            logging.basicConfig(
                level=logging.INFO if options["verbosity"] >= 1 else logging.WARNING,
                format="%(asctime)s %(levelname)s %(name)s %(message)s",
            )
        worker = Worker(
            concurrency=options["concurrency"],
            worker_id=options["worker_id"],
            poll_interval=options["poll_interval"],
            burst=options["burst"],
            shutdown_grace=options["grace"],
            handle_signals=True,
            queues=options["queues"],
        )
        worker.run()
        if worker.unfinished:
            # Threads still running user code would keep the process alive; their runs were
            # released to other workers already.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
