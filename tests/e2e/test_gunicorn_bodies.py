"""`POST e/<key>` with a chunked body (no Content-Length) under a real gunicorn process: read
up to `MAX_REQUEST_BYTES`, as docs/api.md says (issue 15 point 6)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from django_inngest.models import Event
from tests.e2e.conftest import ROOT, database_url

pytestmark = pytest.mark.e2e

KEY = "test-event-key"
MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def gunicorn(transactional_db: None) -> Iterator[int]:
    """A gunicorn serving the test project on 127.0.0.1 (its port), on the test database."""
    port = free_port()
    logs = ROOT / "tests" / "artifacts"
    logs.mkdir(exist_ok=True)
    with open(logs / f"gunicorn-{os.getpid()}.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "tests.wsgi"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": database_url(), "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert process.poll() is None, "gunicorn exited; see tests/artifacts"
                    assert time.monotonic() < deadline, "gunicorn did not start in 60 s"
                    time.sleep(0.2)
            yield port
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)


def post_chunked(port: int, chunks: list[bytes]) -> tuple[int, dict[str, object]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request(
        "POST",
        f"/inngest/e/{KEY}",
        body=iter(chunks),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_a_chunked_body_is_read_and_its_events_stored(gunicorn: int) -> None:
    body = json.dumps([{"name": "chunked", "data": {"n": n}} for n in range(200)]).encode()
    chunks = [body[start : start + 1000] for start in range(0, len(body), 1000)]
    status, answer = post_chunked(gunicorn, chunks)
    assert (status, answer["status"], len(answer["ids"])) == (200, 200, 200)  # type: ignore[arg-type]
    assert Event.objects.filter(name="chunked").count() == 200


def test_a_chunked_body_over_the_limit_is_refused_with_413(gunicorn: int) -> None:
    filler = b" " * MiB
    status, answer = post_chunked(gunicorn, [b'{"name": "big", "data": {}}', *[filler] * 6])
    assert status == 413
    assert answer["error"] == f"the body is over the limit of {5 * MiB} bytes"
    assert not Event.objects.exists()
