"""Shared fixtures: an isolated function registry, a frozen clock, and the postgres marker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_inngest.core.clock import FrozenClock


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `postgres` belong to the PostgreSQL run: deselected (and counted) on SQLite.

    With DATABASE_URL pointing at PostgreSQL they run, and fail loudly if it is unreachable.
    """
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        return
    deselected = [item for item in items if item.get_closest_marker("postgres")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("postgres")]


@pytest.fixture
def isolated_registry() -> Iterator[object]:
    """Functions declared in the test exist only for the test."""
    from django_inngest.registry import registry

    with registry.isolated() as isolated:
        yield isolated


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    from django_inngest.testing import frozen_clock

    with frozen_clock() as frozen:
        yield frozen


@pytest.fixture(params=["memory", pytest.param("database", marks=pytest.mark.django_db)])
def run(request: pytest.FixtureRequest) -> object:
    """Run a function to its end in memory, or through the database with drain()."""
    from tests.helpers import run_in_memory, run_on_database

    return run_in_memory if request.param == "memory" else run_on_database
