"""On SQLite the engine sets only what it needs (WAL, a busy timeout); durability is the user's."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from django.db import connection, connections

pytestmark = [
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite PRAGMAs"),
    pytest.mark.django_db,
]


def pragmas(**options: Any) -> dict[str, Any]:
    """Open a new connection to the test database with extra OPTIONS and read its PRAGMAs."""
    settings = copy.deepcopy(connection.settings_dict)
    settings["OPTIONS"].update(options)
    wrapper = type(connections[connection.alias])(settings, alias=connection.alias)
    try:
        with wrapper.cursor() as cursor:
            found = {}
            for name in ("journal_mode", "synchronous", "busy_timeout"):
                cursor.execute(f"PRAGMA {name}")
                found[name] = cursor.fetchone()[0]
            return found
    finally:
        wrapper.close()


def test_durability_stays_at_sqlites_default_full() -> None:
    """The engine never lowers `synchronous` behind the user's back (2 is FULL)."""
    assert pragmas()["synchronous"] == 2


def test_a_users_synchronous_setting_is_kept() -> None:
    found = pragmas(init_command="PRAGMA synchronous=NORMAL;")
    assert found["synchronous"] == 1


def test_wal_and_a_ten_second_busy_timeout_are_set() -> None:
    found = pragmas()
    assert found["journal_mode"] == "wal"
    assert found["busy_timeout"] == 10000


def test_a_users_own_timeout_option_is_not_overridden() -> None:
    assert pragmas(timeout=3)["busy_timeout"] == 3000
