"""`manage.py inngest_prune`: delete old runs, events and stale flow-control state."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_inngest import store
from django_inngest.core import clock


class Command(BaseCommand):
    """``manage.py inngest_prune``: delete what the retention settings no longer keep."""

    help = (
        "Delete runs that ended longer ago than their retention period (completed 7 days, "
        "failed 14, by default), with their steps; events no run refers to; expired "
        "de-duplication keys, idle flow-control state and old cron ticks. In short batches."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """`--days` (one retention for every status), `--dry-run` and `--no-input`."""
        parser.add_argument(
            "--days",
            type=float,
            default=None,
            help="Keep every ended run this many days, whatever its status (default: "
            "INNGEST['RETENTION_COMPLETED_DAYS'], 7, and ['RETENTION_FAILED_DAYS'], 14).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Say what would be deleted, and delete nothing.",
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask before deleting.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Show what would be deleted and, unless a dry run (or refused at the prompt), delete it in
        short batches."""
        days = options["days"]
        if days is not None and days < 0:
            raise CommandError(f"--days must not be negative, not {days}")
        retention = store.retention_of_settings(days)
        now = clock.now()
        if options["dry_run"] or options["interactive"]:
            planned = store.prune(now=now, retention=retention, dry_run=True)
            self.stdout.write(planned.summary())
            if options["dry_run"]:
                return
            if not self._confirmed():
                self.stdout.write("Nothing deleted.")
                return
        pruned = store.prune(now=now, retention=retention)
        self.stdout.write(pruned.summary())

    def _confirmed(self) -> bool:
        try:
            answer = input("Delete them? Type 'yes' to continue, or 'no' to cancel: ")
        except EOFError as error:
            raise CommandError(
                "cannot ask for confirmation (no input); run with --noinput to delete"
            ) from error
        return answer.strip().lower() == "yes"
