"""The documentation site builds from docs/ with Sphinx and MyST, warnings as errors (a broken
link between pages or to a heading is a warning), and documents every public name, setting,
system check id, command and command flag."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import load_command_class
from django.core.management.base import BaseCommand

import django_inngest
from django_inngest import conf

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference.md"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML site, built once for the module in a process of its own."""
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", DOCS, out],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, f"sphinx-build failed:\n{built.stderr}{built.stdout}"
    return out


def table_keys(markdown: str, heading: str) -> set[str]:
    """The first column (`code`) of the table under a `## heading`."""
    section = markdown.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE))


def own_docstring(obj: object) -> str | None:
    """A docstring written for this object: not inherited, not a dataclass's generated one."""
    doc = vars(obj).get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    name = getattr(obj, "__name__", "")
    if not doc or doc.startswith(f"{name}("):
        return None
    return str(doc)


def test_the_site_builds_without_a_warning_and_has_every_page(site: Path) -> None:
    pages = {p.relative_to(DOCS).with_suffix("") for p in DOCS.rglob("*.md")}
    built = {p.relative_to(site).with_suffix("") for p in site.rglob("*.html")}
    assert pages <= built, f"pages not built: {sorted(pages - built)}"


def test_every_public_name_is_in_the_python_reference_with_its_own_docstring(site: Path) -> None:
    html = (site / "python-api.html").read_text()
    absent = [n for n in django_inngest.__all__ if f'id="django_inngest.{n}"' not in html]
    assert absent == [], f"public names missing from docs/python-api.md: {absent}"
    undocumented = [
        n for n in django_inngest.__all__ if own_docstring(getattr(django_inngest, n)) is None
    ]
    assert undocumented == [], f"public names without a docstring: {undocumented}"


def test_every_setting_and_no_other_is_in_the_settings_table() -> None:
    keys = {field.name for field in dataclasses.fields(conf.InngestSettings)}
    documented = table_keys(REFERENCE.read_text(), "Settings")
    assert keys - documented == set(), "settings missing from docs/reference.md"
    assert documented - keys == set(), "docs/reference.md lists settings that do not exist"


def test_every_system_check_id_and_no_other_is_in_the_checks_table() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "django_inngest").rglob("*.py"))
    ids = set(re.findall(r'id="(django_inngest\.[A-Z]\d{3})"', source))
    assert ids, "no check id found in django_inngest/"
    documented = table_keys(REFERENCE.read_text(), "System checks")
    assert ids - documented == set(), "check ids missing from docs/reference.md"
    assert documented - ids == set(), "docs/reference.md lists check ids that do not exist"


def test_every_command_and_each_of_its_flags_is_documented() -> None:
    commands = sorted(
        p.stem for p in (ROOT / "django_inngest" / "management" / "commands").glob("[!_]*.py")
    )
    assert commands, "no management command found"
    docs = "\n".join(p.read_text() for p in DOCS.rglob("*.md"))
    django_flags = {
        flag
        for action in BaseCommand().create_parser("manage.py", "x")._actions
        for flag in action.option_strings
    }
    missing = []
    for name in commands:
        if f"`{name}" not in REFERENCE.read_text():
            missing.append(name)
        parser = load_command_class("django_inngest", name).create_parser("manage.py", name)
        for action in parser._actions:
            for flag in action.option_strings:
                documented = re.search(rf"{re.escape(flag)}(?![\w-])", docs)
                if flag.startswith("--") and flag not in django_flags and not documented:
                    missing.append(f"{name} {flag}")
    assert missing == [], f"commands or flags missing from docs/: {missing}"
