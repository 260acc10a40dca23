"""The test app. With TESTAPP_CLOCK_FILE set (end-to-end tests start workers so), the
engine's clock is read from that file; see `tests.testapp.clock`."""

from __future__ import annotations

import os
from pathlib import Path

from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        path = os.environ.get("TESTAPP_CLOCK_FILE")
        if path:
            from django_inngest.core import clock
            from tests.testapp.clock import FileClock

            clock.install(FileClock(Path(path)))
