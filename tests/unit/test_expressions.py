"""Expressions: compile once, errors as no match, the fast path agrees with CEL."""

from __future__ import annotations

import pytest

from django_inngest.core.expressions import Expression, ExpressionError, compile_expression

EVENT = {"name": "t", "data": {"id": 123, "plan": "pro", "n": 1}, "id": "e", "ts": 1}


def test_expressions_compile_once() -> None:
    assert compile_expression("event.data.id == 123") is compile_expression("event.data.id == 123")


def test_invalid_expressions_raise_naming_the_expression() -> None:
    with pytest.raises(ExpressionError, match=r"invalid expression 'event\.data\.id =='"):
        compile_expression("event.data.id ==")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("event.data.id == 123", True),
        ("event.data.id == 124", False),
        ("event.data.plan == 'pro'", True),
        ('event.data.plan == "pro"', True),
        ("event.data.plan != 'pro'", False),
        ("event.data.n == 1.0", True),
        ("event.data.missing == null", True),
        ("event.data.missing == 'x'", False),
        ("event.data.missing != 'x'", True),
    ],
)
def test_fast_path_matches(source: str, expected: bool) -> None:
    assert compile_expression(source).matches(EVENT) is expected


def test_evaluation_errors_in_boolean_places_are_no_match() -> None:
    assert compile_expression("event.data.missing.deeper > 3").matches(EVENT) is False
    assert compile_expression("event.data.id > 100 && event.data.plan == 'pro'").matches(EVENT)


def test_fast_path_and_interpreter_agree_where_cel_is_defined() -> None:
    for source in ("event.data.id == 123", "event.data.plan == 'free'", "event.name == 't'"):
        fast = compile_expression(source)
        slow = Expression(source)
        slow._simple = None
        assert fast.matches(EVENT) == slow.matches(EVENT), source
