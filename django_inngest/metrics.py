"""Prometheus metrics, read from the database at scrape time (the optional extra
``django-inngest-db[metrics]``, which installs ``prometheus-client``).

Every figure is a gauge computed from the tables when Prometheus scrapes ``v1/metrics``: the
runs in flight per function and status, the runs due and not yet taken, the events not yet
matched, the workers alive and the cron ticks missed. Because the database is the only source,
the figures are the fleet's, whichever web process answers and however many workers run: there
is nothing to sum across processes and nothing is lost when a worker restarts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Count

from django_inngest.fleet_status import FleetStatus, fleet_status
from django_inngest.models import ENDED_STATUSES, FunctionRun

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

#: The exposition format's media type (Prometheus' text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class FleetCollector:
    """A `prometheus_client` collector whose every `collect()` reads the fleet's state."""

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        status = fleet_status()
        now = status.now
        in_flight = GaugeMetricFamily(
            "inngest_runs_in_flight",
            "Runs not ended, per function and status.",
            labels=["function", "status"],
        )
        for row in runs_in_flight():
            in_flight.add_metric([row["function_id"], row["status"]], row["n"])
        yield in_flight

        due = GaugeMetricFamily(
            "inngest_runs_due", "Runs due and not yet taken by a worker.", labels=["function"]
        )
        lateness = GaugeMetricFamily(
            "inngest_runs_due_oldest_seconds",
            "How late the oldest run due and not yet taken is.",
            labels=["function"],
        )
        for item in status.backlog.due:
            due.add_metric([item.function_id], item.count)
            lateness.add_metric(
                [item.function_id], max(0.0, (now - item.oldest_due_at).total_seconds())
            )
        yield due
        yield lateness

        yield GaugeMetricFamily(
            "inngest_events_pending",
            "Events received and not yet matched to functions.",
            value=status.backlog.pending_events,
        )
        age = status.pending_age
        yield GaugeMetricFamily(
            "inngest_events_pending_oldest_seconds",
            "Time since the oldest event not yet matched was received (0 when none is).",
            value=0.0 if age is None else age.total_seconds(),
        )
        yield from _workers(status)
        yield GaugeMetricFamily(
            "inngest_cron_ticks_missed",
            "Cron schedules whose tick is due for longer than CRON_GRACE_SECONDS.",
            value=len(status.missed_ticks),
        )


def _workers(status: FleetStatus) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily

    live = GaugeMetricFamily(
        "inngest_workers_live",
        "Workers seen within three heartbeats, per version of their functions' code.",
        labels=["version"],
    )
    versions: dict[str, int] = {}
    for worker in status.live:
        versions[worker.record.version] = versions.get(worker.record.version, 0) + 1
    for version, count in sorted(versions.items()):
        live.add_metric([version[:12]], count)
    yield live
    yield GaugeMetricFamily(
        "inngest_worker_runs_in_flight",
        "Runs the live workers hold, as of their last heartbeat.",
        value=sum(worker.record.in_flight for worker in status.live),
    )
    yield GaugeMetricFamily(
        "inngest_worker_slots",
        "Concurrent runs the live workers can hold (the sum of their --concurrency).",
        value=sum(worker.record.concurrency for worker in status.live),
    )


def runs_in_flight() -> list[Any]:
    """Runs not ended, counted per function and status (the status index bounds the scan to
    runs in flight)."""
    return list(
        FunctionRun.objects.exclude(status__in=ENDED_STATUSES)
        .values("function_id", "status")
        .annotate(n=Count("id"))
        .order_by("function_id", "status")
    )


def exposition() -> bytes:
    """The metrics in Prometheus' text format, read now."""
    try:
        from prometheus_client import CollectorRegistry, generate_latest
    except ImportError:
        raise ImproperlyConfigured(
            "django_inngest's metrics need prometheus-client: "
            "install django-inngest-db[metrics] (or pip install prometheus-client)"
        ) from None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector())
    return generate_latest(registry)
