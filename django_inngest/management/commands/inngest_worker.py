"""`manage.py inngest_worker`: a thin shell over `django_inngest.runtime.Worker`.

It parses and checks the flags, sets up logging for the `django_inngest` loggers, and, with
`--reload`, runs the worker under Django's autoreloader (as `runserver` does).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import autoreload

from django_inngest.runtime import Worker, WorkerConfigError

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def positive_int(value: str) -> int:
    """An argparse type: an int of at least 1, or an error naming the value."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value!r}")
    return number


def log_level(value: str) -> str:
    """`value` as a logging level name (case does not matter); anything else is an argparse error
    listing the levels."""
    level = value.upper()
    if level not in LEVELS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(LEVELS)}, not {value!r}")
    return level


class Command(BaseCommand):
    """``manage.py inngest_worker``: run a worker until stopped (or, with `--burst`, until no work
    is due)."""

    help = "Run durable functions: claim due runs and execute them until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        """The worker's options: concurrency, worker id, queues, poll interval, shutdown grace,
        `--burst`, `--reload`, the log level."""
        parser.add_argument(
            "-c",
            "--concurrency",
            type=positive_int,
            default=None,
            help="Runs executed at once, at least 1 (default INNGEST['WORKER_CONCURRENCY'], 10).",
        )
        parser.add_argument(
            "--burst",
            action="store_true",
            help="Process everything due now, print a summary, then exit.",
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
        parser.add_argument(
            "-l",
            "--loglevel",
            type=log_level,
            default=None,
            help="Level of the django_inngest loggers: DEBUG, INFO, WARNING, ERROR or CRITICAL "
            "(default INFO; -v 2 means DEBUG, -v 0 WARNING).",
        )
        parser.add_argument(
            "--reload",
            action="store_true",
            help="Restart when Python files change (development only), as runserver does.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Configure logging and run the worker (under the autoreloader with `--reload`) until it
        stops; a configuration error is a `CommandError`. Threads still running user code when it
        stops do not keep the process alive."""
        if options["reload"] and options["burst"]:
            raise CommandError("--reload and --burst do not go together")
        configure_logging(options["loglevel"], options["verbosity"])
        if options["reload"]:
            autoreload.run_with_reloader(self._run_reloaded, **options)
            return
        try:
            worker = self._run(**options)
        except WorkerConfigError as error:
            raise CommandError(str(error)) from None
        if options["burst"]:
            self.stdout.write(f"burst finished: {worker.summary()}")
        if worker.unfinished:
            # Threads still running user code would keep the process alive; their runs were
            # released to other workers already.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    def _run(self, **options: Any) -> Worker:
        worker = self._worker(options, handle_signals=True)
        worker.run()
        return worker

    def _worker(self, options: dict[str, Any], *, handle_signals: bool) -> Worker:
        return Worker(
            concurrency=options["concurrency"],
            worker_id=options["worker_id"],
            poll_interval=options["poll_interval"],
            burst=options["burst"],
            shutdown_grace=options["grace"],
            handle_signals=handle_signals,
            queues=options["queues"],
        )

    def _run_reloaded(self, **options: Any) -> None:
        """The worker in the autoreloader's child process, on its `django-main-thread`. A
        changed file stops it gracefully (runs finish or are released) before the reload."""
        worker = self._worker(options, handle_signals=False)
        stopped = threading.Event()

        def before_reload(sender: object, file_path: object, **kwargs: Any) -> None:
            logging.getLogger("django_inngest.worker").info(
                "%s changed: stopping the worker to reload", file_path
            )
            worker.stop()
            stopped.wait(worker.shutdown_grace + 5.0)

        autoreload.file_changed.connect(before_reload, weak=False)
        try:
            worker.run()
        except WorkerConfigError as error:
            self.stderr.write(f"CommandError: {error}")
            sys.stderr.flush()
            os._exit(1)  # the reloader's parent exits with it, instead of waiting for a change
        finally:
            stopped.set()


def configure_logging(level_name: str | None, verbosity: int) -> None:
    """Give the `django_inngest` loggers the level asked for (`--loglevel`, else from `-v`).
    When the project configured no logging, a stderr handler at that level (default INFO) is
    installed on the root logger, as `runserver` users expect of a command; otherwise only
    the `django_inngest` loggers change, and only when a level was asked for."""
    if level_name is None and verbosity >= 2:
        level_name = "DEBUG"
    elif level_name is None and verbosity == 0:
        level_name = "WARNING"
    if not logging.getLogger("django_inngest").handlers and not logging.root.handlers:
        level_name = level_name or "INFO"
        logging.basicConfig(
            level=level_name, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    if level_name is not None:
        logging.getLogger("django_inngest").setLevel(level_name)
