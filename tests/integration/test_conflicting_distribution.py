"""The unrelated `django-inngest` distribution, installed beside this one, is reported by
`manage.py check` (django_inngest.W003), found through its real metadata on `sys.path`."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.checks import run_checks


def warnings_w003() -> list[str]:
    return [m.msg for m in run_checks(tags=["django_inngest"]) if m.id == "django_inngest.W003"]


def install_fake_distribution(site: Path, name: str, version: str, summary: str) -> None:
    """Write the dist-info directory pip leaves behind for an installed wheel."""
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.4\nName: {name}\nVersion: {version}\nSummary: {summary}\n"
    )
    (dist_info / "top_level.txt").write_text("django_inngest\n")


def test_the_unrelated_distribution_is_reported_with_its_version_and_how_to_remove_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_fake_distribution(
        tmp_path, "django-inngest", "0.0.7", "Missing Django integration for Inngest"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    [message] = [m for m in run_checks(tags=["django_inngest"]) if m.id == "django_inngest.W003"]
    assert "'django-inngest' 0.0.7 ('Missing Django integration for Inngest')" in message.msg
    assert message.hint is not None and "pip uninstall django-inngest" in message.hint


def test_this_project_installed_as_django_inngest_db_is_not_reported() -> None:
    """The test environment holds this project's own metadata (django-inngest-db) only."""
    assert warnings_w003() == []


def test_a_distribution_whose_name_only_starts_alike_is_not_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_fake_distribution(tmp_path, "django-inngest-db", "9.9.9", "this project, elsewhere")
    install_fake_distribution(tmp_path, "django-inngest-extras", "1.0", "someone's add-on")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert warnings_w003() == []
