"""`ctx.logger` calls the wrapped logger's method of the same name, as Inngest's SDK does, so a
custom `logging.Logger` subclass or a structlog-style logger sees every call; it stays silent
while a run replays (issue 18)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

import django_inngest as inngest
from tests.helpers import Runner, make


class RecordingLogger(logging.Logger):
    """A logger whose named methods are overridden, as a project's custom logger may be."""

    def __init__(self) -> None:
        super().__init__("recording")
        self.calls: list[tuple[str, object, tuple[object, ...], dict[str, Any]]] = []

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:  # type: ignore[override]
        self.calls.append(("debug", msg, args, kwargs))

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:  # type: ignore[override]
        self.calls.append(("info", msg, args, kwargs))

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:  # type: ignore[override]
        self.calls.append(("warning", msg, args, kwargs))

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:  # type: ignore[override]
        self.calls.append(("error", msg, args, kwargs))

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:  # type: ignore[override]
        self.calls.append(("exception", msg, args, kwargs))


class KeywordLogger:
    """Not a `logging.Logger`: like structlog's, its methods take an event and key-values."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object, dict[str, Any]]] = []

    def info(self, event: object, **values: Any) -> None:
        self.calls.append(("info", event, values))

    def warning(self, event: object, **values: Any) -> None:
        self.calls.append(("warning", event, values))


def test_each_call_reaches_the_method_of_the_same_name_once_despite_replays(
    run: Runner,
) -> None:
    custom = RecordingLogger()
    client = inngest.Inngest(app_id="test", logger=custom)
    failures = iter([True, False])

    def handler(ctx: inngest.ContextSync, step: inngest.StepSync) -> None:
        ctx.logger.debug("checking %s", "stock")
        ctx.logger.info("charging order %s", 7)
        step.run("charge", lambda: None)
        ctx.logger.warning("slow card service")
        ctx.logger.error("card declined")
        try:
            raise ValueError("boom")
        except ValueError:
            ctx.logger.exception("while shipping")
        if next(failures):
            raise RuntimeError("retry the invocation")

    function = make(handler, retries=1, client=client)
    run(function)
    names = [name for name, *_ in custom.calls]
    # The lines before the step appear once; the ones after it, once per invocation.
    assert names == ["debug", "info", *(["warning", "error", "exception"] * 2)]
    assert custom.calls[1][1:3] == ("charging order %s", (7,)), "arguments stay lazy"


def test_a_logger_that_is_not_a_logging_logger_gets_only_what_the_handler_passed(
    run: Runner,
) -> None:
    keyword = KeywordLogger()
    client = inngest.Inngest(app_id="test")
    client.set_logger(keyword)  # type: ignore[arg-type]

    def handler(ctx: inngest.ContextSync) -> None:
        ctx.logger.info("order charged", order_id=7)
        ctx.logger.warning("slow")

    function = make(handler, client=client)
    run(function)
    assert keyword.calls == [("info", "order charged", {"order_id": 7}), ("warning", "slow", {})]


def test_a_plain_logger_records_the_line_of_the_handler_that_logged(
    run: Runner, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(ctx: inngest.ContextSync) -> None:
        ctx.logger.info("from the handler")

    with caplog.at_level(logging.INFO, logger="django_inngest.functions"):
        run(make(handler))
    [record] = [r for r in caplog.records if r.getMessage() == "from the handler"]
    assert record.funcName == "handler"
    assert record.pathname == __file__
