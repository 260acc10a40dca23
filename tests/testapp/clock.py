"""A clock read from a file, so a test can move the time of worker processes it started.

`TestAppConfig.ready()` installs it as the engine's clock when TESTAPP_CLOCK_FILE is set; the
test writes an ISO 8601 time into that file (atomically, with `set_file_clock`).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

from django_inngest.core.clock import Clock


class FileClock:
    controlled = True

    def __init__(self, path: Path) -> None:
        self.path = path

    def now(self) -> datetime:
        moment = datetime.fromisoformat(self.path.read_text().strip())
        if moment.tzinfo is None:
            raise ValueError(f"{self.path} holds a naive time: {moment!r}")
        return moment


def set_file_clock(path: Path, moment: datetime) -> None:
    """Write `moment` so that no reader ever sees a half-written file."""
    partial = path.with_suffix(".partial")
    partial.write_text(moment.isoformat())
    os.replace(partial, path)


class OffsetClock:
    """Another clock, `seconds` off: a worker whose machine's clock drifted. The engine
    corrects it by the database's clock, unless its base is a controlled one."""

    def __init__(self, base: Clock, seconds: float) -> None:
        self.base = base
        self.offset = timedelta(seconds=seconds)

    @property
    def controlled(self) -> bool:
        return self.base.controlled

    def now(self) -> datetime:
        return self.base.now() + self.offset
