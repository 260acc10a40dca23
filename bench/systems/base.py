"""What a system under test provides to the driver, and the database plumbing they share."""

from __future__ import annotations

import abc
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "bench" / ".data"
PATHROOT = DATA / "pathroot"
"""The only entry of sys.path besides a venv's site-packages: a folder holding `bench` alone, so
that `django_inngest` comes from the environment (this checkout, or a base ref to compare)."""


def pathroot() -> Path:
    PATHROOT.mkdir(parents=True, exist_ok=True)
    link = PATHROOT / "bench"
    if not link.exists():
        link.symlink_to(ROOT / "bench")
    return PATHROOT


PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def pg_url(dbname: str, scheme: str = "postgresql") -> str:
    return f"{scheme}://{PG['user']}@{PG['host']}:{PG['port']}/{dbname}"


def pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as connection:  # type: ignore[arg-type]
        connection.execute(sql)


def pg_fresh(dbname: str) -> None:
    pg_admin(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
    pg_admin(f"CREATE DATABASE {dbname}")


def sqlite_fresh(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


class System(abc.ABC):
    """A system under test on one backend ("postgresql" or "sqlite")."""

    name = ""
    backends: tuple[str, ...] = ("postgresql",)
    steps_per_run = 10
    """W2: work units a run completes (10 for step engines, 10 chained jobs otherwise)."""
    chained = False
    """W2: True when 10 steps are 10 chained jobs (so `done()` counts jobs, not runs)."""

    def __init__(self, backend: str, name: str | None = None) -> None:
        self.backend = backend
        self.name = name or self.name
        self.slug = self.name.replace("-", "_").replace("@", "_")
        self.dbname = f"bench_{self.slug}"
        self.sqlite_path = DATA / f"{self.slug}.sqlite3"

    # -- lifecycle -------------------------------------------------------------------------

    @abc.abstractmethod
    def reset(self) -> None:
        """An empty database with this system's schema."""

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Open connections (or configure Django) in the driver process."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Close what `prepare` opened."""

    # -- work ------------------------------------------------------------------------------

    @abc.abstractmethod
    def enqueue(self, workload: str, key: str, **payload: Any) -> None:
        """One unit of a workload in one transaction (W4: one event, i.e. five runs)."""

    @abc.abstractmethod
    def done(self, workload: str) -> int:
        """Finished jobs or runs of this workload's kind, from the database."""

    @abc.abstractmethod
    def build_backlog(self, count: int) -> None:
        """`count` runs due in a day, written with bulk SQL."""

    @abc.abstractmethod
    def run_worker(self, concurrency: int) -> None:
        """Run one worker until killed (inside `python -m bench.worker`)."""

    def settings_note(self) -> str:
        return ""

    # -- helpers ---------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {
            "BENCH_SYSTEM": self.name,
            "BENCH_BACKEND": self.backend,
            "PYTHONPATH": str(pathroot()),
        }

    def exec_manage(self, settings: str, *argv: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "django", *argv],
            check=True,
            cwd=pathroot(),
            env={**os.environ, **self.env(), "DJANGO_SETTINGS_MODULE": settings},
            stdout=subprocess.DEVNULL,
        )


def pg_clone(cursor: Any, table: str, where: str, count: int, overrides: dict[str, str]) -> None:
    """Copy the row of `table` matching `where` `count` times (series value: `g.n`), replacing
    `overrides` columns by SQL expressions; identity and serial columns take their default."""
    cursor.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema || '.' || "
        "table_name = %s AND column_default IS DISTINCT FROM NULL AND "
        "(column_default LIKE 'nextval%%' OR is_identity = 'YES') "
        "UNION SELECT column_name FROM information_schema.columns WHERE table_schema || '.' || "
        "table_name = %s AND is_identity = 'YES'",
        [table, table],
    )
    skipped = {row[0] for row in cursor.fetchall()} - set(overrides)
    cursor.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema || '.' || "
        "table_name = %s ORDER BY ordinal_position",
        [table],
    )
    columns = [row[0] for row in cursor.fetchall() if row[0] not in skipped]
    names = ", ".join(f'"{name}"' for name in columns)
    values = ", ".join(overrides.get(name, f't."{name}"') for name in columns)
    cursor.execute(
        f"INSERT INTO {table} ({names}) SELECT {values} FROM {table} AS t, "
        f"generate_series(1, %s) AS g(n) WHERE {where}",
        [count],
    )


class DjangoSystem(System):
    """A system that lives in a Django project (`bench.systems.django_settings`)."""

    settings = "bench.systems.django_settings"

    def reset(self) -> None:
        if self.backend == "postgresql":
            pg_fresh(self.dbname)
        else:
            sqlite_fresh(self.sqlite_path)
        self.exec_manage(self.settings, "migrate", "--noinput", "-v", "0")

    def prepare(self) -> None:
        os.environ.update(self.env())
        os.environ["DJANGO_SETTINGS_MODULE"] = self.settings
        import django

        django.setup()

    def close(self) -> None:
        from django.db import connections

        connections.close_all()
