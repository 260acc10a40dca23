"""`manage.py inngest_prune`: delete old runs, events and stale flow-control state."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_inngest import conf, store
from django_inngest.core import clock


class Command(BaseCommand):
    help = (
        "Delete runs that ended, and unreferenced events received, more than the retention "
        "period ago, with expired de-duplication keys, idle flow-control state and old cron "
        "ticks."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=None,
            help="Retention in days (default: INNGEST['RETENTION_DAYS'], 30).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"] if options["days"] is not None else conf.get().RETENTION_DAYS
        if days < 0:
            raise CommandError(f"--days must not be negative, not {days}")
        pruned = store.prune(now=clock.now(), retention=timedelta(days=days))
        self.stdout.write(
            f"deleted {pruned.runs} runs, {pruned.events} events, {pruned.keys} "
            f"de-duplication keys, {pruned.pauses} expired listeners, {pruned.states} "
            f"flow-control states and {pruned.cron_ticks} cron ticks"
        )
