"""The test app. With TESTAPP_CLOCK_FILE set (end-to-end tests start workers so), the
engine's clock is read from that file; with TESTAPP_CLOCK_OFFSET_SECONDS, the engine's clock
(the file's or the system's) is that far off, as a machine's clock that drifted would be
(the fault suite's clock tests); see `tests.testapp.clock`."""

from __future__ import annotations

import os
from pathlib import Path

from django.apps import AppConfig


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django_inngest.core import clock
        from tests.testapp.clock import FileClock, OffsetClock

        path = os.environ.get("TESTAPP_CLOCK_FILE")
        if path:
            clock.install(FileClock(Path(path)))
        offset = os.environ.get("TESTAPP_CLOCK_OFFSET_SECONDS")
        if offset:
            clock.install(OffsetClock(clock.install(clock.SystemClock()), float(offset)))
