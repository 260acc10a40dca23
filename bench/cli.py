"""`python -m bench`: install the peers, run every workload side by side, write RESULTS.md."""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import ceiling, envs, report
from bench.plan import BACKENDS, FULL, QUICK, WORKLOADS, Plan, driver_args, runs
from bench.systems.base import pathroot

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench" / ".data"


def run_driver(system: str, backend: str, workload: str, plan: Plan, run: str) -> dict[str, Any]:
    out = DATA / f"result-{system}-{backend}-{workload}.json"
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    completed = subprocess.run(
        [
            str(envs.python(system)),
            "-m",
            "bench.driver",
            "--system",
            system,
            "--backend",
            backend,
            "--workload",
            workload,
            "--run",
            run,
            "--out",
            str(out),
            *driver_args(plan, workload),
        ],
        cwd=pathroot(),
        capture_output=True,
        text=True,
    )
    if completed.returncode != 0 or not out.exists():
        tail = "\n".join(completed.stderr.strip().splitlines()[-5:])
        result: dict[str, Any] = {"error": f"driver exited {completed.returncode}: {tail}"}
    else:
        result = json.loads(out.read_text())
    summary = {k: round(v, 2) for k, v in result.items() if isinstance(v, float)}
    print(
        f"  {backend:10} {workload:7} {system:16} {run:3} "
        f"{time.perf_counter() - started:6.1f}s {result.get('error') or summary}",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--systems", default=None, help="comma-separated subset")
    parser.add_argument(
        "--w6-systems",
        default=None,
        help="comma-separated: the systems W6 runs for (default: all that run; the peers take "
        "long with the backlog)",
    )
    parser.add_argument("--backends", default="postgresql,sqlite")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--upgrade", action="store_true", help="reinstall peers from PyPI")
    parser.add_argument("--output", default=str(ROOT / "bench" / "RESULTS.md"))
    parser.add_argument(
        "--base",
        default=None,
        metavar="REF",
        help="also run django-inngest as of git REF (column django-inngest@base), for before/after",
    )
    parser.add_argument(
        "--results",
        default=str(ROOT / "bench" / "RESULTS.json"),
        help="where the raw results go (default bench/RESULTS.json, committed with RESULTS.md "
        "so that --append works on a fresh checkout)",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="RESULTS_JSON",
        help="run nothing: write --output from several raw results files, one backend each",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="keep the results of what is not rerun from --results in the table",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a size of the plan, e.g. --set w1_runs=3000",
    )
    options = parser.parse_args()

    if options.merge:
        merge(options.merge, Path(options.output))
        return
    plan = QUICK if options.quick else FULL
    if options.set:
        fields = {name: type(value) for name, value in plan.__dict__.items()}
        changes = dict(item.split("=", 1) for item in options.set)
        plan = dataclasses.replace(plan, **{k: fields[k](v) for k, v in changes.items()})
    repeats = options.repeats or plan.repeats
    wanted = set(options.systems.split(",")) if options.systems else None
    w6_wanted = set(options.w6_systems.split(",")) if options.w6_systems else None
    backends = [b for b in options.backends.split(",") if b]
    workloads = [w for w in options.workloads.split(",") if w]
    DATA.mkdir(parents=True, exist_ok=True)

    systems = sorted(
        {s for b in backends for s in BACKENDS[b] if wanted is None or s in wanted},
        key=lambda s: list(BACKENDS["postgresql"]).index(s),
    )
    for system in systems:
        envs.ensure(system, upgrade=options.upgrade)
    lineup = {backend: list(BACKENDS[backend]) for backend in backends}
    if options.base:
        sha = envs.ensure_base(options.base)
        systems.insert(1, envs.BASE)
        for names in lineup.values():
            names.insert(1, envs.BASE)
    versions = {system: envs.versions(system) for system in systems}
    if options.base:
        base = versions[envs.BASE]
        name = "django-inngest-db" if "django-inngest-db" in base else "django-inngest"
        base[name] += f" ({options.base} = {sha})"

    print("measuring the machine's ceiling", flush=True)
    ceilings: dict[str, float] = {}
    if "postgresql" in backends:
        ceilings["postgresql"] = ceiling.postgresql(seconds=5 if options.quick else 10)
    if "sqlite" in backends:
        ceilings["sqlite"] = ceiling.sqlite(seconds=3 if options.quick else 5)
    print(f"  {ceilings}", flush=True)

    results: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {}
    earlier: dict[str, Any] = {}
    if options.append and Path(options.results).exists():
        earlier = json.loads(Path(options.results).read_text())
        # Keep what this invocation does not rerun: other backends, and other workloads.
        rerun = set(workloads) | ({"backlog"} if "W6" in workloads else set())
        results = {
            backend: {
                w: found
                for w, found in by_workload.items()
                if backend not in backends or w not in rerun
            }
            for backend, by_workload in earlier["results"].items()
        }
        for name, found in earlier["meta"]["ceilings"].items():
            ceilings.setdefault(name, found)
    started = datetime.now(UTC)
    meta = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_min": 0.0,
        "machine": machine(),
        "python": platform.python_version(),
        "postgresql": postgres_version() or None,
        "sqlite": __import__("sqlite3").sqlite_version,
        "versions": versions,
        "plan": plan.__dict__ | {"repeats": repeats},
        "quick": options.quick,
        "ceilings": ceilings,
    }

    if earlier:
        meta["versions"] = {**earlier["meta"]["versions"], **versions}
        meta["earlier"] = {
            "date": earlier["meta"]["date"],
            "backends": sorted(results),
            "plan": earlier["meta"]["plan"],
        }

    def save(final: bool = False) -> None:
        """Rewrite the results after every run, so an interrupted run still leaves a table."""
        meta["duration_min"] = (datetime.now(UTC) - started).total_seconds() / 60
        meta["complete"] = final
        Path(options.results).write_text(json.dumps({"meta": meta, "results": results}))
        Path(options.output).write_text(report.render(meta, results))

    for backend in backends:
        names = [s for s in lineup[backend] if s in systems]
        store = results.setdefault(backend, {})
        w6_names = [s for s in names if (w6_wanted is None or s in w6_wanted) and runs(s, "W6")]
        for workload in [w for w in workloads if w != "W6"]:
            for repeat in range(repeats):
                # Systems take turns within each repeat, so background noise hits all alike.
                for system in [s for s in names if runs(s, workload)]:
                    result = run_driver(system, backend, workload, plan, f"r{repeat}")
                    store.setdefault(workload, {}).setdefault(system, []).append(result)
                    save()
                if workload == "W1" and "W6" in workloads:
                    # W6 is read as a fraction of W1: each of its repeats follows W1's, so
                    # that both see the machine in the same state.
                    run_w6(w6_names, backend, plan, repeat, store, save)
        if "W6" in workloads and "W1" not in workloads:
            for repeat in range(repeats):
                run_w6(w6_names, backend, plan, repeat, store, save)

    save(final=True)
    print(f"wrote {options.output}", flush=True)


def run_w6(
    systems: list[str],
    backend: str,
    plan: Plan,
    repeat: int,
    store: dict[str, dict[str, list[dict[str, Any]]]],
    save: Callable[[], None],
) -> None:
    """One repeat of W6 for each system. Each starts as W1's repeats do, from a fresh database,
    here with the backlog in it (not with the earlier repeats' runs and dead rows)."""
    for system in systems:
        built = run_driver(system, backend, "backlog", plan, f"b{repeat}")
        store.setdefault("backlog", {}).setdefault(system, []).append(built)
        result = run_driver(system, backend, "W6", plan, f"r{repeat}")
        store.setdefault("W6", {}).setdefault(system, []).append(result)
        save()


def merge(paths: list[str], output: Path) -> None:
    """One table from invocations that ran different backends (each keeps its own meta)."""
    loaded = [json.loads(Path(path).read_text()) for path in paths]
    meta = dict(loaded[0]["meta"])
    results: dict[str, Any] = {}
    meta["runs"] = []
    for item in loaded:
        results.update(item["results"])
        meta["versions"] = {**meta["versions"], **item["meta"]["versions"]}
        meta["ceilings"] = {**meta["ceilings"], **item["meta"]["ceilings"]}
        meta["complete"] = meta.get("complete", True) and item["meta"].get("complete", False)
        meta["runs"].append(
            {
                "backends": sorted(item["results"]),
                "date": item["meta"]["date"],
                "duration_min": item["meta"]["duration_min"],
                "plan": item["meta"]["plan"],
                "earlier": item["meta"].get("earlier", {}).get("date"),
            }
        )
    output.write_text(report.render(meta, results))
    print(f"wrote {output}", flush=True)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        memory = "?"
    import os

    return f"{cpu}, {os.cpu_count()} cores, {memory} RAM, {platform.system()} {platform.release()}"


def postgres_version() -> str:
    return subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
