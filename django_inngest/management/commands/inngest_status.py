"""`manage.py inngest_status`: registered functions, their triggers, each cron schedule's next
and last tick in its own zone, and runs by status. A thin shell over `scheduler.cron_status`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand
from django.db.models import Count

from django_inngest import store
from django_inngest.core import clock
from django_inngest.core.config import TriggerCron, TriggerEvent
from django_inngest.core.schedule import rfc3339
from django_inngest.models import FunctionRun
from django_inngest.registry import registry
from django_inngest.scheduler import CronStatus, cron_status


def _moment(value: datetime | None) -> str:
    if value is None:
        return "never"
    return f"{value:%Y-%m-%d %H:%M:%S %Z} ({rfc3339(value)})"


class Command(BaseCommand):
    help = "Show registered functions, the next tick of each cron schedule, and runs by status."

    def handle(self, *args: Any, **options: Any) -> None:
        functions = registry.all()
        schedules: dict[tuple[str, str], CronStatus] = {
            (status.function_id, status.cron): status
            for status in cron_status(functions, now=clock.now())
        }
        self.stdout.write(f"Functions ({len(functions)}):")
        for function in functions:
            self.stdout.write(f"  {function.id}")
            for trigger in function.triggers:
                if isinstance(trigger, TriggerEvent):
                    condition = f" if {trigger.expression}" if trigger.expression else ""
                    self.stdout.write(f"    event {trigger.event}{condition}")
                elif isinstance(trigger, TriggerCron):
                    self.stdout.write(self._cron_line(schedules.get((function.id, trigger.cron))))
        counts = (
            FunctionRun.objects.using(store.alias())
            .values_list("status")
            .annotate(n=Count("id"))
            .order_by("status")
        )
        shown = ", ".join(f"{status} {n}" for status, n in counts) or "none"
        self.stdout.write(f"Runs: {shown}")

    def _cron_line(self, status: CronStatus | None) -> str:
        if status is None:
            return "    cron (invalid: see manage.py check)"
        return (
            f"    cron {status.cron} [{status.zone}]: next {_moment(status.next_tick)}, "
            f"last {_moment(status.last_tick)}"
        )
