"""CEL expressions over events; the only importer of cel-python.

Each expression is compiled once and cached. Boolean places treat an evaluation error as
"no match", as Inngest does. Simple comparisons of a path with a literal take a fast path
that never calls the CEL interpreter.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

import celpy
from celpy import adapter as cel_adapter
from celpy import celtypes

from django_inngest.core.errors import InngestError

_PATH = r"(?:event|async)(?:\.[A-Za-z_][A-Za-z0-9_]*)+"
_LITERAL = r"'[^'\\]*'|\"[^\"\\]*\"|-?\d+(?:\.\d+)?|true|false|null"
_SIMPLE = re.compile(rf"^\s*({_PATH})\s*(==|!=)\s*({_LITERAL})\s*$")
_MISSING = object()


class ExpressionError(InngestError, ValueError):
    """An expression does not compile."""

    def __init__(self, expression: str, reason: str) -> None:
        super().__init__(f"invalid expression {expression!r}: {reason}")
        self.expression = expression
        self.reason = reason


class Expression:
    """A compiled expression; evaluate it against `event` (and `async` where it applies)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._simple = _parse_simple(source)
        self._program: Any = None
        try:
            environment = celpy.Environment()
            self._program = environment.program(environment.compile(source))
        except Exception as error:  # celpy raises its own parse errors, not a shared base
            raise ExpressionError(source, str(error).splitlines()[0]) from None

    def matches(
        self, event: Mapping[str, Any], async_event: Mapping[str, Any] | None = None
    ) -> bool:
        """True only when the expression evaluates to boolean true; errors are no match."""
        if self._simple is not None:
            path, negate, literal = self._simple
            value = _lookup({"event": event, "async": async_event or {}}, path)
            equal = value is not _MISSING and _json_equal(value, literal)
            if value is _MISSING:
                equal = literal is None
            return equal != negate
        activation: dict[str, Any] = {"event": cel_adapter.json_to_cel(dict(event))}
        if async_event is not None:
            activation["async"] = cel_adapter.json_to_cel(dict(async_event))
        try:
            result = self._program.evaluate(activation)
        except Exception:  # an evaluation error in a boolean place means "no match"
            return False
        return isinstance(result, bool | celtypes.BoolType) and bool(result)


@functools.lru_cache(maxsize=4096)
def compile_expression(source: str) -> Expression:
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError(str(source), "an expression must be a non-empty string")
    return Expression(source)


def _parse_simple(source: str) -> tuple[tuple[str, ...], bool, Any] | None:
    match = _SIMPLE.match(source)
    if match is None:
        return None
    path, operator, literal = match.groups()
    if literal.startswith("'"):
        value: Any = literal[1:-1]
    else:
        value = json.loads(literal)
    return tuple(path.split(".")), operator == "!=", value


def _lookup(root: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    current: Any = root
    for part in path:
        if not isinstance(current, Mapping) or part not in current:
            return _MISSING
        current = current[part]
    return current


def _json_equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return float(left) == float(right)
    return bool(type(left) is type(right) and left == right)
