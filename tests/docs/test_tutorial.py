"""docs/tutorial.md runs exactly as written: its blocks, in order, in a fresh directory.

`sh` blocks are run line by line (`django-admin`, `cd`, `python manage.py ...`); the
`pip install` line is the one skipped, since the package under test is already installed in
this environment. A `python` block whose first line is `# path` writes that file (`# path
(append)` appends to it), and one whose first line is `# python manage.py shell` runs in the
project's shell, each `# prints: X` comment naming a line it must print.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[2] / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{shlex.join(command)} failed:\n{done.stdout}{done.stderr}"
    return done.stdout


def run_shell_line(line: str, cwd: Path, env: dict[str, str]) -> Path:
    """Run one line of an `sh` block; return the directory the next line runs in."""
    words = shlex.split(line, comments=True)
    if not words:
        return cwd
    if words[:4] == ["python", "-m", "pip", "install"]:
        return cwd
    if words[0] == "cd":
        return cwd / words[1]
    if words[0] == "django-admin":
        run([sys.executable, "-m", "django", *words[1:]], cwd, env)
    elif words[:2] == ["python", "manage.py"]:
        run([sys.executable, *words[1:]], cwd, env)
    else:
        pytest.fail(f"the tutorial runs a command this test does not know: {line!r}")
    return cwd


def run_python_block(code: str, cwd: Path, env: dict[str, str]) -> None:
    first, _, body = code.partition("\n")
    if first == "# python manage.py shell":
        printed = run([sys.executable, "manage.py", "shell", "-c", code], cwd, env).splitlines()
        expected = re.findall(r"# prints: (.+)$", code, flags=re.MULTILINE)
        assert expected, "a shell block of the tutorial shows nothing it prints"
        assert printed[-len(expected) :] == expected, f"printed {printed}, expected {expected}"
        return
    match = re.fullmatch(r"# (\S+\.py)( \(append\))?", first)
    assert match, f"a python block of the tutorial does not say where it goes: {first!r}"
    path = cwd / match.group(1)
    if match.group(2):
        with path.open("a") as file:
            file.write("\n" + body)
    else:
        path.write_text(code)


def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "PYTHONPATH"}
    }
    blocks = BLOCK.findall(TUTORIAL.read_text())
    assert len(blocks) >= 8, "the tutorial lost its blocks"
    cwd = tmp_path
    for language, code in blocks:
        if language == "sh":
            for line in code.splitlines():
                cwd = run_shell_line(line, cwd, env)
        else:
            run_python_block(code, cwd, env)
    assert (cwd / "shop" / "functions.py").exists()
