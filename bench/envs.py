"""One virtual environment per system under test, in bench/.venvs/ (git-ignored)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENVS = ROOT / "bench" / ".venvs"
BASE = "django-inngest@base"

# What each environment installs: the current releases from PyPI (psycopg for PostgreSQL).
REQUIREMENTS: dict[str, list[str]] = {
    "django-inngest": ["-e", f"{ROOT}[postgres]"],
    "django-inngest-tasks": ["-e", f"{ROOT}[postgres,tasks]"],
    "procrastinate": ["procrastinate", "psycopg[binary]"],
    "django-tasks-db": ["django-tasks", "django-tasks-db", "django", "psycopg[binary]"],
    "dbos": ["dbos", "psycopg[binary]"],
}
VERSIONED = {
    "django-inngest": ["django-inngest-db", "django", "psycopg"],
    "django-inngest-tasks": ["django-inngest-db", "django-tasks", "django", "psycopg"],
    "procrastinate": ["procrastinate", "psycopg"],
    "django-tasks-db": ["django-tasks", "django-tasks-db", "django", "psycopg"],
    "dbos": ["dbos", "sqlalchemy", "psycopg"],
    # A commit before the rename to django-inngest-db is installed as django-inngest.
    BASE: ["django-inngest-db", "django-inngest", "django", "psycopg"],
}


def python(system: str) -> Path:
    return VENVS / system / "bin" / "python"


def ensure(system: str, *, upgrade: bool = False) -> None:
    """Create the environment and install the system, unless it is there already."""
    marker = VENVS / system / ".installed"
    if marker.exists() and not upgrade:
        return
    print(f"installing {system} into {VENVS / system}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENVS / system)], check=True)
    pip = [str(python(system)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "--upgrade", *REQUIREMENTS[system]], check=True)
    marker.write_text("")


def ensure_base(ref: str) -> str:
    """django-inngest as of git `ref` (for before/after comparisons), installed from a copy of
    that commit's tree; returns the commit's short hash."""
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", ref],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    marker = VENVS / BASE / ".installed"
    if marker.exists() and marker.read_text() == sha:
        return sha
    print(f"installing django-inngest at {ref} ({sha}) into {VENVS / BASE}", flush=True)
    source = ROOT / "bench" / ".data" / "base-src"
    shutil.rmtree(source, ignore_errors=True)
    source.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", sha], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENVS / BASE)], check=True)
    pip = [str(python(BASE)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, f"{source}[postgres]"], check=True)
    marker.write_text(sha)
    return sha


def versions(system: str) -> dict[str, str]:
    """The installed versions of the system's distributions (those installed: see BASE)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "found = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: found[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(found))"
    )
    output = subprocess.run(
        [str(python(system)), "-c", code, *VERSIONED[system]],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(output))
