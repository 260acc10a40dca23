"""Before a worker runs: its id, and the refusal to start on a project `manage.py check`
rejects or on a database that lacks the app's tables.
"""

from __future__ import annotations

import os
import secrets
import socket

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from django_inngest import store
from django_inngest.checks import migrations_problem
from django_inngest.runtime.threads import on_own_connection


class WorkerConfigError(ImproperlyConfigured):
    """The worker refuses to start while `manage.py check` reports errors or the tables
    are missing."""


def new_worker_id() -> str:
    """`host:pid:random`, unique among the workers of a fleet."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def check_errors() -> list[checks.CheckMessage]:
    """The errors (not warnings) django_inngest's checks report now."""
    return [
        message
        for message in checks.run_checks(tags=["django_inngest"])
        if message.level >= checks.ERROR
    ]


def refuse_unfit_start() -> None:
    """Raise `WorkerConfigError` while the app's checks report errors or its migrations are
    not applied. A database not reachable now is not a reason: the worker retries it."""
    errors = check_errors()
    if errors:
        raise WorkerConfigError(
            "the worker will not start until these are fixed:\n"
            + "\n".join(f"  {message}" for message in errors)
        )
    try:
        problem = on_own_connection(migrations_problem, store.alias())
    except DatabaseError:  # not reachable now: the claim loop reports it and retries
        problem = None
    if problem is not None:
        raise WorkerConfigError(problem)
