"""`manage.py inngest_sync`: make this code's functions the current set of their apps, as a
worker does when it starts; for a deploy pipeline to run before traffic moves."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_inngest.core import clock
from django_inngest.registry import registry
from django_inngest.runtime import fleet
from django_inngest.runtime.scheduler import CronScheduler
from django_inngest.runtime.startup import check_errors


class Command(BaseCommand):
    """``manage.py inngest_sync``: record this code's functions as their apps' current set, as a
    deploy does."""

    help = "Record this code's functions as the current function set of their apps."

    def handle(self, *args: Any, **options: Any) -> None:
        """Refuse when the system checks report errors or no function is registered; otherwise store
        the definitions of the registered functions per app, print each app's version, and start the
        cron schedules."""
        errors = check_errors()
        if errors:
            raise CommandError(
                "nothing synced until these are fixed:\n"
                + "\n".join(f"  {message}" for message in errors)
            )
        functions = registry.all()
        if not functions:
            raise CommandError("no functions found: nothing to sync")
        now = clock.now()
        for synced in fleet.sync_functions(functions, now=now, by="inngest_sync"):
            state = "synced" if synced.created else "unchanged"
            count = sum(function.app_id == synced.app_id for function in functions)
            self.stdout.write(
                f"app {synced.app_id}: {state}, version {synced.version[:12]}, "
                f"{count} functions (sync {synced.sync_id})"
            )
        CronScheduler(functions, worker_id="inngest_sync").start(now)
