"""Errors users raise and catch, and the error object stored as a failed run's output.

Every error shares `InngestError`. Errors that carry a `code` end up in run output as
`{"code", "message", "name", "stack"}` (SPEC §1.7); `error_data()` builds that object.
"""

from __future__ import annotations

import os
import traceback
from datetime import datetime, timedelta
from typing import Any

from django_inngest.core import clock

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class InngestError(Exception):
    """Base of every error raised by django-inngest."""

    code = "unknown"


class ConfigError(InngestError, ValueError):
    """A function's configuration is invalid; found by `manage.py check`."""

    def __init__(self, message: str, *, function_id: str = "", field: str = "") -> None:
        super().__init__(message)
        self.function_id = function_id
        self.field = field


class FunctionDefinitionError(InngestError, TypeError):
    """A function was declared with the wrong types; raised at decoration time."""


class InvalidEventError(InngestError, ValueError):
    """An event cannot be sent: bad name, bad data, too large, reserved name."""

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message if index is None else f"event {index}: {message}")
        self.index = index


class UnstorableValueError(InngestError, ValueError):
    """A value the store cannot hold (see `core.events.storable_json`): `path` says where in it
    (``data["n"]``), `problem` what is wrong there."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path = path
        self.problem = problem


class InvalidEventIdSeedError(InngestError, ValueError):
    """An `x-inngest-event-id-seed` header is not ``"<milliseconds>,<base64 bytes>"``."""

    def __init__(self, seed: str, reason: str) -> None:
        super().__init__(f"invalid event id seed {seed[:100]!r}: {reason}")
        self.seed = seed
        self.reason = reason


class NonRetriableError(InngestError):
    """Fail the run now, without further attempts."""

    code = "non_retriable_error"

    def __init__(self, message: str | None = None, quiet: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.quiet = quiet


class RetryAfterError(InngestError):
    """Retry the run at a given time (an int is milliseconds from now)."""

    code = "retry_after_error"

    def __init__(
        self,
        message: str | None,
        retry_after: int | timedelta | datetime,
        quiet: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.quiet = quiet
        if isinstance(retry_after, bool) or not isinstance(retry_after, int | timedelta | datetime):
            raise TypeError(
                f"retry_after must be int ms, timedelta or datetime, not {retry_after!r}"
            )
        if isinstance(retry_after, int):
            retry_after = timedelta(milliseconds=retry_after)
        if isinstance(retry_after, timedelta):
            retry_after = clock.now() + retry_after
        elif retry_after.tzinfo is None:
            retry_after = retry_after.astimezone()
        self.retry_after: datetime = retry_after


class StepError(InngestError):
    """Raised where a step whose memo is an error is called; not retried."""

    code = "step_errored"

    def __init__(self, message: str, name: str, stack: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.stack = stack


class OutputUnserializableError(InngestError):
    """A step or function returned a value that is not JSON."""

    code = "output_unserializable"


class NestedStepError(InngestError):
    """A step was called inside another step's body."""

    code = "step_errored"


class DeterminismError(InngestError):
    """On replay, the step recorded under an id is not the kind of step the code now calls."""

    code = "non_deterministic"

    def __init__(self, step_id: str, expected: str, found: str) -> None:
        super().__init__(
            f"step {step_id!r} was recorded as {expected!r} but the code now calls {found!r}; "
            "code outside steps must call the same steps in the same order on every replay"
        )
        self.step_id = step_id
        self.expected = expected
        self.found = found


class WorkerLostError(InngestError):
    """A run lost its worker `losses` times in a row without a new step result: a step that
    kills its worker process (out of memory, a crash) would otherwise run forever."""

    code = "worker_lost"

    def __init__(self, losses: int, last_step: str | None) -> None:
        where = (
            f"after step {last_step!r}, its last completed step"
            if last_step is not None
            else "before its first step completed"
        )
        super().__init__(
            f"the worker running this run was lost {losses} times without the run making "
            f"progress, each time {where}; the code that follows may be killing the worker "
            "process (out of memory, a crash) or stopping its heartbeats"
        )
        self.losses = losses
        self.last_step = last_step


class RunNotFoundError(InngestError, LookupError):
    """No run has this id."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


class RunEndedError(InngestError, ValueError):
    """The run has already ended; it cannot be cancelled."""

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__(f"cannot cancel run {run_id!r}: it has already ended ({status})")
        self.run_id = run_id
        self.status = status


class UnstubbedStepError(InngestError):
    """`testing.run_function` met a step that needs a stub (a wait or an invoke)."""


def format_stack(error: BaseException) -> str:
    """The traceback of `error` without this package's own frames."""
    summary = traceback.TracebackException.from_exception(error)
    summary.stack = traceback.StackSummary.from_list(
        [frame for frame in summary.stack if not frame.filename.startswith(_PACKAGE_DIR)]
    )
    return "".join(summary.format())


def error_data(error: BaseException, *, code: str | None = None) -> dict[str, Any]:
    """The `{"code", "message", "name", "stack"}` object stored for a failure (SPEC §1.7).

    Its text is kept as the store can hold it: NUL characters and lone surrogates are replaced
    by U+FFFD (PostgreSQL's jsonb refuses them), on SQLite too."""
    return {
        key: storable_text(value) if isinstance(value, str) else value
        for key, value in _error_data(error, code).items()
    }


def _error_data(error: BaseException, code: str | None) -> dict[str, Any]:
    if isinstance(error, StepError):
        return {
            "code": StepError.code,
            "message": error.message,
            "name": error.name,
            "stack": error.stack,
        }
    if isinstance(error, OutputUnserializableError):
        return {"code": error.code, "message": str(error), "name": type(error).__name__}
    if isinstance(error, WorkerLostError):
        return {
            "code": error.code,
            "message": str(error),
            "name": type(error).__name__,
            "stack": None,
        }
    if isinstance(error, NestedStepError):
        return {"code": error.code, "message": str(error), "name": "CodedError", "stack": None}
    resolved = code or getattr(error, "code", None) or "unknown"
    message = getattr(error, "message", None) if isinstance(error, InngestError) else None
    return {
        "code": resolved if isinstance(resolved, str) else "unknown",
        "message": message if isinstance(message, str) else _text_of(error),
        "name": type(error).__name__,
        "stack": format_stack(error),
    }


def _text_of(error: BaseException) -> str:
    try:
        return str(error)
    except Exception as failure:  # a user's __str__ that raises
        return f"<str() of the error raised {type(failure).__name__}>"


def storable_text(text: str) -> str:
    """`text` with what the store cannot hold (NUL, lone surrogates) replaced by U+FFFD: for
    text the user's code produced that is kept wherever it can be (error messages)."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text
