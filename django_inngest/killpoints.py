"""Kill points for the fault suite (tests/faults): a process started with
`INNGEST_TEST_PARK_AT=<point>[,<point>...]` parks at the first of those points it reaches, so a
test can SIGKILL it exactly there rather than at a time that merely looks right.

Parking writes the point's name to the file `INNGEST_TEST_PARK_MARKER` names (when set), logs
one line, and sleeps until the process is killed. The environment is read once, at import: with
it unset, `park()` is a function that returns at once, and nothing else happens on hot paths.

Points: `after-claim`, `before-checkpoint`, `after-checkpoint`, `suspend` (a sleep or a wait
being registered), `fan-out`, `cron-tick`, `batch-flush` and `debounce` (a debounce replacing
its event), each inside the engine's transaction when there is one. User code may park too
(`step-body`, say): any name works.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

logger = logging.getLogger("django_inngest.killpoints")

#: The points named by the environment when this module was imported.
PARK_AT = frozenset(filter(None, os.environ.get("INNGEST_TEST_PARK_AT", "").split(",")))
_MARKER = os.environ.get("INNGEST_TEST_PARK_MARKER")


def _no_park(point: str) -> None:
    """No kill point is named: nothing to do."""


def _park(point: str) -> None:
    """Park the calling thread for good when `point` is named (it waits to be killed)."""
    if point not in PARK_AT:
        return
    logger.warning("parked at kill point %s pid=%s", point, os.getpid())
    if _MARKER:
        partial = Path(f"{_MARKER}.{os.getpid()}.{threading.get_ident()}")
        partial.write_text(point)
        os.replace(partial, _MARKER)
    while True:
        time.sleep(3600)


park = _park if PARK_AT else _no_park
