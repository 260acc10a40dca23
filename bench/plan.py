"""Workload sizes: the full run the issue specifies, and a quick one for CI-like checks."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Plan:
    w1_runs: int
    w2_runs: int
    w3_samples: int
    w4_events: int
    w5_timers: int
    w5_delay: float
    backlog: int
    idle_seconds: float
    repeats: int


FULL = Plan(
    w1_runs=10_000,
    w2_runs=1_000,
    w3_samples=60,
    w4_events=2_000,
    w5_timers=1_000,
    w5_delay=10.0,
    backlog=1_000_000,
    idle_seconds=10.0,
    repeats=3,
)
QUICK = Plan(
    w1_runs=1_000,
    w2_runs=100,
    w3_samples=30,
    w4_events=200,
    w5_timers=100,
    w5_delay=3.0,
    backlog=20_000,
    idle_seconds=5.0,
    repeats=1,
)

SYSTEMS = ["django-inngest", "django-inngest-tasks", "procrastinate", "django-tasks-db", "dbos"]
BACKENDS = {
    "postgresql": SYSTEMS,
    "sqlite": ["django-inngest", "django-inngest-tasks", "django-tasks-db", "dbos"],
}
WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6"]
ONLY_WORKLOADS = {"django-inngest-tasks": ("W1",)}
"""Systems that run some workloads only: django-inngest as a Django tasks backend is W1
through `task.enqueue()`, side by side with our W1 through `send_sync` and django-tasks-db."""


def runs(system: str, workload: str) -> bool:
    return workload in ONLY_WORKLOADS.get(system, WORKLOADS)


def driver_args(plan: Plan, workload: str) -> list[str]:
    """Arguments of `bench.driver` for one run of `workload`."""
    if workload == "W1":
        return ["--size", str(plan.w1_runs)]
    if workload == "W2":
        return ["--size", str(plan.w2_runs)]
    if workload == "W3":
        return ["--size", str(plan.w3_samples), "--idle-seconds", str(plan.idle_seconds)]
    if workload == "W4":
        return ["--size", str(plan.w4_events)]
    if workload == "W5":
        return ["--size", str(plan.w5_timers), "--delay", str(plan.w5_delay)]
    if workload == "W6":
        return ["--size", str(plan.w1_runs)]
    if workload == "backlog":
        return ["--size", str(plan.backlog)]
    raise ValueError(workload)
