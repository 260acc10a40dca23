"""Render bench/RESULTS.md from the raw results: medians of the repeats with min-max, and the
ratio of django-inngest to each peer."""

from __future__ import annotations

import statistics
from typing import Any

OURS = "django-inngest"
TIMES, DASH = "\u00d7", "\u2013"
UP, DOWN = "↑", "↓"

# (label, workload, key, direction, PostgreSQL only)
ROWS: list[tuple[str, str, str, str, bool]] = [
    ("W1 enqueue, runs/s (one per transaction)", "W1", "enqueue_per_s", UP, False),
    ("W1 drain, runs/s (2 workers)", "W1", "drain_per_s", UP, False),
    ("W1 drain, % of the machine's ceiling", "W1", "ceiling_pct", UP, False),
    ("W1 queries per run", "W1", "queries_per_run", DOWN, False),
    ("W1 WAL bytes per run", "W1", "wal_bytes_per_run", DOWN, True),
    ("W1 worker peak RSS, MiB", "W1", "peak_rss_mb", DOWN, False),
    ("W1 worker CPU per run, ms", "W1", "worker_cpu_ms_per_run", DOWN, False),
    ("W1 PostgreSQL CPU per run, ms", "W1", "db_cpu_ms_per_run", DOWN, True),
    (f"W2 steps/s (1,000 runs {TIMES} 10 steps)", "W2", "steps_per_s", UP, False),
    ("W2 per-step overhead, ms (worker-seconds per step)", "W2", "per_step_ms", DOWN, False),
    ("W2 queries per run", "W2", "queries_per_run", DOWN, False),
    ("W2 worker CPU per run, ms", "W2", "worker_cpu_ms_per_run", DOWN, False),
    ("W2 WAL bytes per run", "W2", "wal_bytes_per_run", DOWN, True),
    ("W2 PostgreSQL CPU per run, ms", "W2", "db_cpu_ms_per_run", DOWN, True),
    ("W3 pickup p50, ms", "W3", "pickup_p50_ms", DOWN, False),
    ("W3 pickup p95, ms", "W3", "pickup_p95_ms", DOWN, False),
    ("W3 pickup p99, ms", "W3", "pickup_p99_ms", DOWN, False),
    ("Idle queries/s per worker", "W3", "idle_qps", DOWN, False),
    ("W4 fan-out drain, runs/s (5 per event)", "W4", "drain_per_s", UP, False),
    ("W4 send, events/s", "W4", "enqueue_per_s", UP, False),
    ("W4 queries per run", "W4", "queries_per_run", DOWN, False),
    ("W4 WAL bytes per run", "W4", "wal_bytes_per_run", DOWN, True),
    ("W5 timer lateness p50, ms", "W5", "lateness_p50_ms", DOWN, False),
    ("W5 timer lateness p95, ms", "W5", "lateness_p95_ms", DOWN, False),
    ("W6 drain with the backlog, runs/s", "W6", "drain_per_s", UP, False),
    ("W6 drain ÷ W1 drain, %", "W6", "w6_over_w1_pct", UP, False),
    ("W6 queries per run", "W6", "queries_per_run", DOWN, False),
]


def values(results: dict[str, Any], workload: str, system: str, key: str) -> list[float]:
    runs = results.get(workload, {}).get(system, [])
    return [float(run[key]) for run in runs if isinstance(run.get(key), int | float)]


def derived(results: dict[str, Any], system: str, key: str, ceiling: float | None) -> list[float]:
    if key == "ceiling_pct" and ceiling:
        return [100 * v / ceiling for v in values(results, "W1", system, "drain_per_s")]
    if key == "w6_over_w1_pct":
        w1 = values(results, "W1", system, "drain_per_s")
        w6 = values(results, "W6", system, "drain_per_s")
        if w1 and w6:
            return [100 * v / statistics.median(w1) for v in w6]
    return []


def number(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(found: list[float]) -> str:
    if not found:
        return DASH
    median = number(statistics.median(found))
    if len(found) == 1:
        return median
    return f"{median} ({number(min(found))}{DASH}{number(max(found))})"


def errors(results: dict[str, Any]) -> list[str]:
    found = []
    for workload, by_system in results.items():
        for system, runs in by_system.items():
            for index, run in enumerate(runs):
                if "error" in run:
                    found.append(f"- {workload} {system} run {index + 1}: {run['error']}")
    return found


def table(backend: str, results: dict[str, Any], systems: list[str], ceiling: float | None) -> str:
    peers = [s for s in systems if s != OURS]
    header = ["", "", OURS, *peers, *[f"{TIMES} {peer}" for peer in peers]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, workload, key, direction, pg_only in ROWS:
        if pg_only and backend != "postgresql":
            continue
        columns = {}
        for system in systems:
            found = (
                derived(results, system, key, ceiling)
                if key in ("ceiling_pct", "w6_over_w1_pct")
                else values(results, workload, system, key)
            )
            columns[system] = found
        if not any(columns.values()):
            continue
        ratios = []
        for peer in peers:
            ours, theirs = columns.get(OURS), columns.get(peer)
            if ours and theirs and statistics.median(theirs):
                ratios.append(f"{statistics.median(ours) / statistics.median(theirs):.2f}")
            else:
                ratios.append(DASH)
        row = [label, direction, *[cell(columns[s]) for s in systems], *ratios]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _median(results: dict[str, Any], workload: str, system: str, key: str) -> float | None:
    found = values(results, workload, system, key)
    return statistics.median(found) if found else None


def targets(all_results: dict[str, Any]) -> list[str]:
    """The issue's targets, each with the medians it was judged on."""
    lines = []

    def check(label: str, ours: float | None, theirs: float | None, ok: bool | None) -> None:
        if ours is None or theirs is None or ok is None:
            lines.append(f"| {label} | {DASH} | not measured |")
        else:
            lines.append(
                f"| {label} | {number(ours)} vs {number(theirs)} | {'met' if ok else 'not met'} |"
            )

    pg = all_results.get("postgresql", {})
    if pg:
        ours = _median(pg, "W1", OURS, "drain_per_s")
        for peer, factor in (("procrastinate", 2.0), ("django-tasks-db", 2.0), ("dbos", 1.0)):
            theirs = _median(pg, "W1", peer, "drain_per_s")
            ok = None if ours is None or theirs is None else ours >= factor * theirs
            if factor == 1.0:
                ok = None if ours is None or theirs is None else ours > theirs
            check(
                f"PostgreSQL W1 drain {'ahead of' if factor == 1.0 else f'>= {factor:.0f}x'} {peer}",
                ours,
                theirs,
                ok,
            )
        ours = _median(pg, "W2", OURS, "per_step_ms")
        theirs = _median(pg, "W2", "dbos", "per_step_ms")
        check(
            "PostgreSQL W2 per-step overhead <= DBOS",
            ours,
            theirs,
            None if ours is None or theirs is None else ours <= theirs,
        )
        ours = _median(pg, "W3", OURS, "pickup_p50_ms")
        peers = [
            m
            for m in (
                _median(pg, "W3", p, "pickup_p50_ms")
                for p in ("procrastinate", "django-tasks-db", "dbos")
            )
            if m is not None
        ]
        best = min(peers) if peers else None
        check(
            "PostgreSQL W3 pickup p50 <= best peer",
            ours,
            best,
            None if ours is None or best is None else ours <= best,
        )
        w1 = _median(pg, "W1", OURS, "drain_per_s")
        w6 = _median(pg, "W6", OURS, "drain_per_s")
        check(
            "PostgreSQL W6 drain within 10 % of W1",
            w6,
            w1,
            None if w1 is None or w6 is None else w6 >= 0.9 * w1,
        )
    lite = all_results.get("sqlite", {})
    if lite:
        ours = _median(lite, "W1", OURS, "drain_per_s")
        theirs = _median(lite, "W1", "django-tasks-db", "drain_per_s")
        check(
            "SQLite W1 drain >= 2x django-tasks-db",
            ours,
            theirs,
            None if ours is None or theirs is None else ours >= 2 * theirs,
        )
    for backend, found in all_results.items():
        idle = _median(found, "W3", OURS, "idle_qps")
        check(
            f"{backend} idle statements/s per worker <= 1",
            idle,
            1.0,
            None if idle is None else idle <= 1.0,
        )
    if not lines:
        return []
    return [
        "",
        "## Targets of the issue",
        "",
        "| target | django-inngest vs reference | |",
        "|---|---|---|",
        *lines,
    ]


def render(meta: dict[str, Any], results: dict[str, Any]) -> str:
    plan = meta["plan"]
    out = [
        "# Benchmark results",
        "",
        "Generated by `python -m bench`"
        + (" --quick" if meta.get("quick") else "")
        + f" on {meta['date']} ({meta['duration_min']:.0f} min"
        + ("" if meta.get("complete", True) else ", still running or interrupted")
        + "). Do not edit by hand; see "
        "`docs/performance.md` for what each figure means and how it is measured.",
        "",
        f"- Machine: {meta['machine']}",
        f"- Python {meta['python']}, PostgreSQL {meta.get('postgresql') or DASH}, "
        f"SQLite {meta['sqlite']}",
        "- Versions: "
        + "; ".join(
            f"{system}: " + ", ".join(f"{k} {v}" for k, v in found.items())
            for system, found in meta["versions"].items()
        ),
        f"- Sizes: W1 {plan['w1_runs']:,} runs; W2 {plan['w2_runs']:,} runs {TIMES} 10 steps; "
        f"W3 {plan['w3_samples']} events; W4 {plan['w4_events']:,} events {TIMES} 5 functions; "
        f"W5 {plan['w5_timers']:,} timers of {plan['w5_delay']:.0f} s; "
        f"W6 = W1 with {plan['backlog']:,} sleeping runs; {plan['repeats']} repeat(s), "
        "systems taking turns within each repeat.",
        f"- Cells: median (min{DASH}max) of the repeats. `{TIMES} peer` = django-inngest's "
        "median ÷ the "
        "peer's: above 1 is better where the arrow is ↑, below 1 is better where it is ↓.",
    ]
    for run in meta.get("runs", []):
        run_plan = run["plan"]
        out.append(
            f"- {', '.join(run['backends'])}: run on {run['date']} ({run['duration_min']:.0f} min), "
            f"repeats={run_plan['repeats']}"
            + (f"; workloads it did not rerun from {run['earlier']}" if run.get("earlier") else "")
        )
    if meta.get("earlier"):
        earlier = meta["earlier"]
        out.append(
            f"- Results of workloads not rerun come from an earlier invocation (`--append`) on "
            f"{earlier['date']}, with repeats={earlier['plan']['repeats']}."
        )
    ceilings = meta.get("ceilings", {})
    if ceilings:
        out.append(
            "- Ceiling (single-row INSERT commits/s): "
            + "; ".join(
                f"{'PostgreSQL, pgbench, 2 clients' if b == 'postgresql' else 'SQLite WAL, Python, 1 connection'}: {v:,.0f}"
                for b, v in ceilings.items()
            )
        )
    for backend, by_workload in results.items():
        systems = [
            s
            for s in [
                "django-inngest",
                "django-inngest@base",
                "procrastinate",
                "django-tasks-db",
                "dbos",
            ]
            if any(s in by_system for by_system in by_workload.values())
        ]
        title = "PostgreSQL" if backend == "postgresql" else "SQLite"
        out += ["", f"## {title}", "", table(backend, by_workload, systems, ceilings.get(backend))]
    out += targets(results)
    failures = [line for backend in results.values() for line in errors(backend)]
    if failures:
        out += ["", "## Runs that failed", "", *failures]
    return "\n".join(out) + "\n"
