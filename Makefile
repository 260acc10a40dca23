# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# e.g. PIP_CONSTRAINTS='-c .ci/django-5.2.txt' to pin dependencies of a second venv
PIP_CONSTRAINTS ?=
CHROMIUM := /usr/bin/chromium

.PHONY: demo test lint typecheck pytest docs worker clean bench bench-quick

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@# Before the rename to django-inngest-db, this checkout was installed as django-inngest,
	@# the name of an unrelated distribution with the same import name (docs/install.md).
	$(PY) -m pip uninstall --quiet --yes django-inngest
	rm -rf django_inngest.egg-info
	$(PY) -m pip install --quiet -e '.[dev,postgres]' $(PIP_CONSTRAINTS)
	touch $@

demo: $(VENV)/.installed
	$(PY) manage.py migrate --noinput
	$(PY) manage.py shop_demo

worker: $(VENV)/.installed
	$(PY) manage.py inngest_worker

test: lint typecheck pytest

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(VENV)/.installed
	$(PY) -m mypy django_inngest tests/typing

pytest: $(VENV)/.installed $(CHROMIUM)
	$(PY) -m pytest $(PYTEST_ARGS)

# The documentation site (also built, warnings as errors, by tests/docs in `make test`).
docs: $(VENV)/.installed
	$(PY) -m sphinx -W --keep-going -b html docs build/docs

# The admin's browser tests drive Debian's Chromium through Playwright; Playwright never
# downloads a browser of its own.
$(CHROMIUM):
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
		|| (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver)

# Benchmarks against the peers (see docs/performance.md); never part of `make test`.
bench:
	$(PYTHON) -m bench

bench-quick:
	$(PYTHON) -m bench --quick --output bench/RESULTS-quick.md

clean:
	rm -rf $(VENV) build dist *.egg-info db.sqlite3 db.sqlite3-wal db.sqlite3-shm
