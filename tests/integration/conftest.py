from __future__ import annotations

import pytest

import django_inngest as inngest


@pytest.fixture
def inngest_client(isolated_registry: object) -> inngest.Inngest:
    """A client whose functions exist only for the test."""
    return inngest.Inngest(app_id="tests")
