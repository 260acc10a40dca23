"""A chunked body under a WSGI server that cannot pass it (no Content-Length, no
`wsgi.input_terminated`): a clear 411, not "the body is empty"."""

from __future__ import annotations

import io
import json

import pytest
from django.test import RequestFactory
from django.test.client import ClientHandler

from django_inngest.models import Event

KEY = "test-event-key"


@pytest.mark.django_db
@pytest.mark.parametrize("terminated", [False, True])
def test_a_chunked_body_is_read_when_the_server_ends_the_input_and_411_otherwise(
    terminated: bool,
) -> None:
    body = json.dumps({"name": "chunked", "data": {}}).encode()
    environ = RequestFactory()._base_environ(  # type: ignore[attr-defined]
        PATH_INFO=f"/inngest/e/{KEY}",
        REQUEST_METHOD="POST",
        CONTENT_TYPE="application/json",
        HTTP_TRANSFER_ENCODING="chunked",
    )
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = io.BytesIO(body)
    if terminated:
        environ["wsgi.input_terminated"] = True
    response = ClientHandler()(environ)
    if terminated:
        assert response.status_code == 200, response.content
        assert Event.objects.filter(name="chunked").count() == 1
    else:
        assert response.status_code == 411
        assert (
            "cannot read a chunked body: send a Content-Length header"
            in json.loads(response.content)["error"]
        )
        assert not Event.objects.exists()
