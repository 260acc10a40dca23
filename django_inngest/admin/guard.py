"""Requests the admin refuses before any view runs: a NUL character, which PostgreSQL cannot
hold in text, in an object id (404) or in a query or form value (400). One rule on both
databases, so a hostile URL gets the same answer on SQLite and PostgreSQL, never a 500.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import Http404, HttpRequest, HttpResponseBadRequest
from django.http.response import HttpResponseBase
from django.urls import URLPattern, URLResolver

NUL = "\x00"

View = Callable[..., HttpResponseBase]


def _nul_in(request: HttpRequest) -> str | None:
    """The name of the first query or form field holding a NUL, if any."""
    sources = [request.GET]
    if request.method == "POST" and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        sources.append(request.POST)
    for source in sources:
        for key, values in source.lists():
            if NUL in key or any(NUL in value for value in values):
                return key.replace(NUL, "\\x00")
    return None


def refusing_nul(view: View) -> View:
    """Wrap an admin view so that a NUL character in its URL arguments is a 404 and one in the query
    or form data a 400, before the view reaches the database (PostgreSQL refuses NUL in text)."""

    @functools.wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if any(NUL in str(value) for value in (*args, *kwargs.values())):
            raise Http404("no object with an id holding a NUL character")
        field = _nul_in(request)
        if field is not None:
            return HttpResponseBadRequest(
                f"the value of {field!r} holds a NUL character, which is never valid here",
                content_type="text/plain; charset=utf-8",
            )
        return view(request, *args, **kwargs)

    return checked


def guarded(urls: list[URLPattern | URLResolver]) -> list[URLPattern | URLResolver]:
    """`urls` with every view behind `refusing_nul`."""
    for url in urls:
        if isinstance(url, URLPattern):
            url.callback = refusing_nul(url.callback)
    return urls
