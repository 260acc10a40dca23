#!/usr/bin/env bash
# The wheel as users get it: build the sdist and the wheel, check both, install the wheel (not the
# source tree) into a fresh virtual environment, start a new Django project with the app, migrate,
# check, run one function through a worker and fetch admin pages and a static file.
# Usage: tests/packaging/wheel_smoke.sh [PYTHON ...]   (default python3)
# The wheel is built once, with the first interpreter (pure Python: one wheel for every version),
# and each interpreter given installs it into a new project of its own.
set -euo pipefail

if [ $# -eq 0 ]; then set -- python3; fi
PYTHON=$1
repo=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "${server_pid}" ]; then kill "${server_pid}" 2>/dev/null || true; fi
    rm -rf "${work}"
}
trap cleanup EXIT
# This machine's pip configuration names index directories that may be absent; say nothing of it.
pip_install() {
    local python=$1
    shift
    "${python}" -m pip install --quiet --disable-pip-version-check "$@" \
        2> >(grep -v "^WARNING: Location 'file:" >&2)
}

echo "=== wheel smoke: build with $("${PYTHON}" --version) in ${work} ==="
"${PYTHON}" -m venv "${work}/tools"
pip_install "${work}/tools/bin/python" build twine check-wheel-contents
# Without --sdist/--wheel, build makes the sdist and then the wheel from the sdist, so a file
# missing from the sdist is missing from the wheel too.
"${work}/tools/bin/python" -m build --outdir "${work}/dist" "${repo}" > "${work}/build.log" 2>&1 \
    || { cat "${work}/build.log"; exit 1; }
"${work}/tools/bin/twine" check --strict "${work}"/dist/*
"${work}/tools/bin/check-wheel-contents" --config "${repo}/pyproject.toml" "${work}"/dist/*.whl
wheel=$(ls "${work}"/dist/django_inngest_db-*.whl)
# The MIT licence travels with both (pyproject's license-files). The listings are read whole
# first: `grep -q` stopping early would kill the lister with SIGPIPE and fail the pipeline.
wheel_files=$("${work}/tools/bin/python" -m zipfile -l "${wheel}")
grep -q "dist-info/licenses/LICENSE " <<< "${wheel_files}" \
    || { echo "LICENSE missing from ${wheel}" >&2; exit 1; }
sdist_files=$(tar -tzf "${work}"/dist/*.tar.gz)
grep -q "^django_inngest_db-[^/]*/LICENSE$" <<< "${sdist_files}" \
    || { echo "LICENSE missing from the sdist" >&2; exit 1; }
echo "built $(basename "${wheel}") and $(basename "$(ls "${work}"/dist/*.tar.gz)")"

try_wheel_with() {
    local PYTHON=$1 n=$2
    unset PYTHONWARNINGS  # set for the project's commands below, not for venv and pip
    echo "=== wheel smoke: a new project on $("${PYTHON}" --version) ==="
    "${PYTHON}" -m venv "${work}/app-${n}"
    py="${work}/app-${n}/bin/python"
    pip_install "${py}" "${wheel}"
    "${py}" -c "import django; print('Django', django.get_version())"

    # A project started as a user would, away from the source tree.
    mkdir "${work}/site-${n}" && cd "${work}/site-${n}"
    "${work}/app-${n}/bin/django-admin" startproject smoke .
    "${py}" manage.py startapp orders
    cat >> smoke/settings.py <<'SETTINGS'

INSTALLED_APPS += ["rest_framework", "django_inngest", "orders"]
DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE"}
INNGEST = {"APP_ID": "smoke"}
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
SETTINGS
    cat > orders/functions.py <<'FUNCTIONS'
import django_inngest as inngest

client = inngest.Inngest(app_id="smoke")


def greeting(name: str) -> str:
    return f"hello {name}"


@client.create_function(fn_id="greet", trigger=inngest.TriggerEvent(event="smoke/hello"))
def greet(ctx: inngest.ContextSync, step: inngest.StepSync) -> dict:
    return {"greeting": step.run("greet", greeting, ctx.event.data["name"])}
FUNCTIONS

    # From here on, a deprecation warning (Django's included) in what the project runs is an error.
    export PYTHONWARNINGS=error::DeprecationWarning,error::PendingDeprecationWarning
    "${py}" manage.py migrate --noinput -v 0
    "${py}" manage.py check --fail-level WARNING
    "${py}" manage.py inngest_send smoke/hello --data '{"name": "wheel"}'
    "${py}" manage.py inngest_worker --burst -v 0

    cat > "${work}/verify-${n}.py" <<'VERIFY'
"""Runs inside the new project: the run completed, the code came from the wheel, admin pages render."""

import os
import sys
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "smoke.settings")
sys.path.insert(0, os.getcwd())
django.setup()

import django_inngest  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.contrib.staticfiles import finders  # noqa: E402
from django.test import Client  # noqa: E402
from django_inngest.models import FunctionRun  # noqa: E402

site_packages = Path(sys.prefix).resolve()
package = Path(django_inngest.__file__).resolve()
assert site_packages in package.parents, f"django_inngest imported from {package}, not {site_packages}"

run = FunctionRun.objects.get(function_id="smoke-greet")
assert run.status == "COMPLETED" and run.output == {"greeting": "hello wheel"}, (run.status, run.output)

css = finders.find("django_inngest/admin/inngest.css")
assert css and site_packages in Path(css).resolve().parents, css

admin = User.objects.create_superuser("admin", "admin@example.com", "pw")
client = Client()
client.force_login(admin)
for url in (
    "/admin/django_inngest/functionrun/",
    f"/admin/django_inngest/functionrun/{run.pk}/change/",
):
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    body = response.content.decode()
    assert "django_inngest/admin/inngest.css" in body, url
    print(f"GET {url}: {response.status_code}, {len(body)} bytes")
assert "hello wheel" in body
print(f"run {run.pk} {run.status} {run.output}; django_inngest from {package.parent}")
VERIFY
    "${py}" "${work}/verify-${n}.py"

    # The static file served over HTTP by runserver, from the wheel's files.
    port=$("${py}" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    "${py}" manage.py runserver --noreload "127.0.0.1:${port}" > "${work}/server-${n}.log" 2>&1 &
    server_pid=$!
    "${py}" - "${port}" <<'FETCH'
import sys
import time
import urllib.request

url = f"http://127.0.0.1:{sys.argv[1]}/static/django_inngest/admin/inngest.css"
deadline = time.monotonic() + 60
while True:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read()
            break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
assert response.status == 200 and body, (response.status, len(body))
print(f"GET {url}: {response.status}, {len(body)} bytes")
FETCH
    kill "${server_pid}" 2>/dev/null || true
    server_pid=
}

n=0
for python in "$@"; do
    n=$((n + 1))
    try_wheel_with "${python}" "${n}"
done
echo "=== wheel smoke passed with $# interpreter(s) ==="
