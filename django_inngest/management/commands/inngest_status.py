"""`manage.py inngest_status`: registered functions, their triggers, each cron schedule's next
and last tick in its own zone, runs by status, and the fleet: live and gone workers, the
backlog and missed cron ticks. `--check` prints one line and exits non-zero when the fleet is
unhealthy: for an alert on the whole fleet, not a probe of one worker (docs/howto/
deploy-postgresql.md). A thin shell over `runtime.scheduler.cron_status` and `fleet_status`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count

from django_inngest import conf, store
from django_inngest.core import clock
from django_inngest.core.config import TriggerCron, TriggerEvent
from django_inngest.core.schedule import rfc3339
from django_inngest.fleet_status import GONE_AFTER_HEARTBEATS, FleetStatus, check, fleet_status
from django_inngest.fleet_status import seconds as ago
from django_inngest.models import FunctionRun
from django_inngest.registry import registry
from django_inngest.runtime.scheduler import CronStatus, cron_status


def _moment(value: datetime | None) -> str:
    if value is None:
        return "never"
    return f"{value:%Y-%m-%d %H:%M:%S %Z} ({rfc3339(value)})"


class Command(BaseCommand):
    """``manage.py inngest_status``: the functions, workers and backlog; with `--check`, the
    fleet's health in one line, for alerts."""

    help = (
        "Show registered functions, the next tick of each cron schedule, runs by status, "
        "workers and the backlog; with --check, exit 1 with one line when unhealthy."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        """`--check`, and the two thresholds it uses: how long a worker may be silent and work may
        wait."""
        parser.add_argument(
            "--check",
            action="store_true",
            help="Print one line and exit 1 when no worker was seen recently or work waits too "
            "long; exit 0 otherwise.",
        )
        parser.add_argument(
            "--max-worker-silence",
            type=float,
            default=None,
            metavar="SECONDS",
            help="--check fails when no worker has been seen for this long "
            "(default: 3 heartbeats).",
        )
        parser.add_argument(
            "--max-backlog-age",
            type=float,
            default=300.0,
            metavar="SECONDS",
            help="--check fails when a due run has waited, or an event has waited to be "
            "matched, longer than this (default 300).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Print the status; with `--check`, print one line and exit 1 when unhealthy."""
        status = fleet_status()
        if options["check"]:
            silence = options["max_worker_silence"]
            if silence is None:
                silence = conf.get().HEARTBEAT_SECONDS * GONE_AFTER_HEARTBEATS
            reason = check(
                status, max_worker_silence=silence, max_backlog_age=options["max_backlog_age"]
            )
            if reason is not None:
                raise CommandError(reason)
            self.stdout.write(
                f"ok: {len(status.live)} live workers, {status.backlog.pending_events} events "
                f"not yet matched, {sum(d.count for d in status.backlog.due)} runs due"
            )
            return
        self._functions()
        self._fleet(status)

    def _functions(self) -> None:
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

    def _fleet(self, status: FleetStatus) -> None:
        write = self.stdout.write
        gone = len(status.workers) - len(status.live)
        write(f"Workers ({len(status.live)} live, {gone} gone):")
        for worker in status.workers:
            row = worker.record
            state = "GONE" if worker.gone else "live"
            write(
                f"  {state} {row.id}  version {row.version[:12]}  in flight "
                f"{row.in_flight}/{row.concurrency}  functions {len(row.functions)}  "
                f"last seen {ago(worker.silent_for)} ago  started {_moment(row.started_at)}"
            )
        for warning in status.warnings:
            write(f"  WARNING: {warning}")
        backlog = status.backlog
        age = status.pending_age
        oldest = f", oldest {ago(age)} ago" if age is not None else ""
        write(f"Events not yet matched: {backlog.pending_events}{oldest}")
        write(f"Runs due now, not taken ({sum(due.count for due in backlog.due)}):")
        for due in backlog.due:
            write(f"  {due.function_id}: {due.count}, oldest {ago(status.lateness(due))} late")
        write(f"Missed cron ticks ({len(status.missed_ticks)}):")
        for tick in status.missed_ticks:
            write(
                f"  {tick.function_id} {tick.cron} [{tick.zone}]: due {_moment(tick.due_at)}, "
                f"{ago(tick.late_by)} late"
            )

    def _cron_line(self, status: CronStatus | None) -> str:
        if status is None:
            return "    cron (invalid: see manage.py check)"
        return (
            f"    cron {status.cron} [{status.zone}]: next {_moment(status.next_tick)}, "
            f"last {_moment(status.last_tick)}"
        )
