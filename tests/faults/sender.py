"""A sender process for the fault suite: `python -m tests.faults.sender COUNT BATCH TAG` sends
COUNT `faults/steps` events in sends of BATCH, then prints how many it sent; a send that raises
is reported on stderr and makes the exit status 1 (nothing is retried)."""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    count, batch, tag = int(argv[0]), int(argv[1]), argv[2]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    import django_inngest as inngest
    from tests.testapp.functions import client

    sent = failed = 0
    for start in range(0, count, batch):
        events = [
            inngest.Event(name="faults/steps", data={"sender": tag, "n": n})
            for n in range(start, min(count, start + batch))
        ]
        try:
            client.send_sync(events)
            sent += len(events)
        except Exception as error:
            failed += len(events)
            print(f"send failed: {error!r}", file=sys.stderr, flush=True)
    print(f"sent {sent} failed {failed}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
