"""Expressions: Inngest's lenient CEL (SPEC §4.2, behaviours X1-X6), fast paths, index keys."""

from __future__ import annotations

from typing import Any

import celpy
import pytest
from celpy import adapter as cel_adapter
from celpy import celtypes
from hypothesis import given, settings
from hypothesis import strategies as st

from django_inngest.core.expressions import (
    Expression,
    ExpressionError,
    compile_expression,
    event_index_keys,
    format_value,
)


def ev(**data: Any) -> dict[str, Any]:
    return {"name": "t", "data": data, "id": "01H", "ts": 1, "user": {}}


def value(source: str, event: dict[str, Any], async_event: dict[str, Any] | None = None) -> Any:
    return compile_expression(source).evaluate(event, async_event)


def test_expressions_compile_once() -> None:
    assert compile_expression("event.data.id == 123") is compile_expression("event.data.id == 123")


def test_invalid_expressions_raise_naming_the_expression() -> None:
    with pytest.raises(ExpressionError, match=r"invalid expression 'event\.data\.id =='"):
        compile_expression("event.data.id ==")
    with pytest.raises(ExpressionError, match=r"unknown function nope\(\)"):
        compile_expression("nope(event.data)")


def test_missing_fields_compare_like_null() -> None:
    """X1, and SPEC §4.2 rule 1 for ordering, size and addition."""
    empty = ev()
    assert value("event.data.missing == null", empty) is True
    assert value("event.data.missing == 'x'", empty) is False
    assert value("event.data.missing != 'x'", empty) is True
    assert value("event.data.missing < 3", empty) is True
    assert value("event.data.missing >= 3", empty) is False
    assert value("size(event.data.missing)", empty) == 0
    assert value("event.data.missing.contains('a')", empty) is False
    assert value("event.data.missing + 'x'", empty) == "x"
    assert value("event.data.a.b.c == null", empty) is True


def test_ints_and_doubles_compare_numerically() -> None:
    """X2."""
    assert value("event.data.n == 1.0", ev(n=1)) is True
    assert value("event.data.n > 0.5", ev(n=1)) is True
    assert value("event.data.n < 2", ev(n=1.5)) is True


def test_adding_mixed_types_concatenates() -> None:
    """X3."""
    assert value('event.data.a + "-" + event.data.b', ev(a="x", b=2)) == "x-2"
    assert value("event.data.a + event.data.b", ev(a=1, b=2.5)) == 3.5


def test_conditional_expressions_choose_values() -> None:
    """X4."""
    source = "event.data.plan == 'enterprise' ? 180 : 0"
    assert value(source, ev(plan="enterprise")) == 180
    assert value(source, ev(plan="free")) == 0


def test_has_and_contains_work_in_triggers_but_has_is_refused_for_cancellation() -> None:
    """X5."""
    source = "has(event.data.email) && event.data.email.contains('gmail.com')"
    assert compile_expression(source).matches(ev(email="a@gmail.com"))
    assert not compile_expression(source).matches(ev())
    assert compile_expression(source).restrictive_problems()
    assert compile_expression("event.data.id == async.data.id").restrictive_problems() == []


def test_keys_stringify_like_go() -> None:
    """X6: a key of 1 and of 1.0 is the same "1"."""
    key = compile_expression("event.data.n")
    assert key.key(ev(n=1)) == key.key(ev(n=1.0)) == "1"
    assert key.key(ev(n=1.5)) == "1.5"
    assert key.key(ev(n="a")) == "a"
    assert key.key(ev()) == "<nil>"
    assert key.key(ev(n=False)) is None
    assert format_value([1, "a", True]) == "[1 a true]"


def test_boolean_places_treat_errors_and_non_booleans_as_no_match() -> None:
    assert compile_expression("event.data.a - 1 > 0").matches(ev(a="x")) is False
    assert compile_expression("event.data.a").matches(ev(a="yes")) is False
    assert compile_expression("event.data.a").matches(ev(a=True)) is True


def test_logic_uses_javascript_truthiness() -> None:
    assert value("event.data.name || 'anonymous'", ev()) is True
    assert value("event.data.n && true", ev(n=0)) is False
    assert value("event.data.s ? 1 : 2", ev(s="")) == 2


def test_functions_of_the_inngest_dialect() -> None:
    assert value("lowercase(event.data.s) == 'abc'", ev(s="AbC")) is True
    assert value("uppercase(event.data.s)", ev(s="a")) == "A"
    assert value("b64decode(event.data.s)", ev(s="aGk=")) == "hi"
    assert value("json_parse(event.data.s).a", ev(s='{"a": 2}')) == 2
    assert value("date(event.data.t) < now()", ev(t="2000-01-01T00:00:00Z")) is True
    assert value("now_plus('1h') > now_minus('1h')", ev()) is True
    assert value("event.data.tags.exists(t, t == 'vip')", ev(tags=["a", "vip"])) is True
    assert value("event.data.tags.all(t, size(t) == 1)", ev(tags=["a", "vip"])) is False
    assert value("event.data.tags.map(t, t + '!')", ev(tags=["a"])) == ["a!"]
    assert value("event.data.tags.filter(t, t != 'a')", ev(tags=["a", "b"])) == ["b"]
    assert value("'b' in event.data.tags", ev(tags=["a", "b"])) is True
    assert value("event.data.s.matches('^a.c$')", ev(s="abc")) is True
    assert value("int(event.data.s) + 1", ev(s="41")) == 42
    assert value("event.data.list[1]", ev(list=[1, 2])) == 2
    assert value("event.data['key']", ev(key="v")) == "v"
    assert value("7 / 2", ev()) == 3
    assert value("-7 % 3", ev()) == -1


def test_both_bindings_are_visible_to_pause_expressions() -> None:
    source = compile_expression("event.data.id == async.data.id")
    assert source.matches(ev(id=123), ev(id=123))
    assert not source.matches(ev(id=123), ev(id=456))


def test_index_keys_find_pauses_by_the_value_they_wait_for() -> None:
    """`event.q == async.p` and `async.p == 'literal'` give a key that the incoming event carries."""
    waiting = compile_expression("event.data.order == async.data.order_id && async.data.ok")
    key = waiting.index_key(ev(order=42))
    assert key is not None
    assert key in event_index_keys(ev(order_id=42.0, other="x"))
    assert key not in event_index_keys(ev(order_id=43))
    literal = compile_expression("async.data.correlation_id == 'run.abc'")
    assert literal.index_key(ev()) in event_index_keys(ev(correlation_id="run.abc"))
    assert compile_expression("async.data.n > 3").index_key(ev()) is None
    assert compile_expression("event.data.x == async.data.x").index_key(ev()) is None


# --- generated conformance -------------------------------------------------------------------

FIELDS = ("a", "b", "c")
SCALARS = st.one_of(
    st.integers(-5, 5),
    st.floats(-5, 5, allow_nan=False).map(lambda f: round(f, 1)),
    st.sampled_from(["x", "y", ""]),
    st.booleans(),
    st.none(),
)
PATHS = st.sampled_from([f"event.data.{f}" for f in FIELDS] + [f"async.data.{f}" for f in FIELDS])
LITERALS = st.sampled_from(["1", "2.5", "'x'", "''", "true", "false", "null", "0"])
OPERATORS = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])


@st.composite
def comparisons(draw: st.DrawFn) -> str:
    left = draw(PATHS)
    right = draw(st.one_of(PATHS, LITERALS))
    return f"{left} {draw(OPERATORS)} {right}"


@st.composite
def expressions(draw: st.DrawFn) -> str:
    parts = draw(st.lists(comparisons(), min_size=1, max_size=3))
    joiners = draw(
        st.lists(
            st.sampled_from([" && ", " || "]), min_size=len(parts) - 1, max_size=len(parts) - 1
        )
    )
    source = parts[0]
    for joiner, part in zip(joiners, parts[1:], strict=True):
        source += joiner + part
    return source


events = st.dictionaries(st.sampled_from(FIELDS), SCALARS, max_size=3).map(lambda d: ev(**d))


@settings(max_examples=300, deadline=None)
@given(expressions(), events, events)
def test_fast_paths_agree_with_the_general_evaluator(
    source: str, event: dict[str, Any], other: dict[str, Any]
) -> None:
    fast = Expression(source)
    general = Expression(source, fast_paths=False)
    assert fast.matches(event, other) == general.matches(event, other)


CELPY = celpy.Environment()  # built once: it raises the recursion limit when created


def _celpy_result(source: str, event: dict[str, Any], other: dict[str, Any]) -> bool | None:
    program = CELPY.program(CELPY.compile(source))
    try:
        result = program.evaluate(
            {"event": cel_adapter.json_to_cel(event), "async": cel_adapter.json_to_cel(other)}
        )
    except Exception:
        return None
    return bool(result) if isinstance(result, celtypes.BoolType) else None


@st.composite
def same_typed_pairs(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two events whose fields all hold values of one type (CEL defines no mixed comparisons;
    cel-python also treats false == 0, which CEL does not)."""
    values = draw(
        st.sampled_from([st.integers(-3, 3), st.sampled_from(["x", "y", "z"]), st.booleans()])
    )
    first, second = (draw(st.fixed_dictionaries(dict.fromkeys(FIELDS, values))) for _ in range(2))
    return ev(**first), ev(**second)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(PATHS, OPERATORS, PATHS), min_size=1, max_size=2), same_typed_pairs())
def test_our_evaluator_agrees_with_cel_python_where_standard_cel_is_defined(
    parts: list[tuple[str, str, str]], pair: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    """With every field present and of one type, standard CEL and Inngest's dialect agree."""
    event, other = pair
    source = " && ".join(f"{left} {op} {right}" for left, op, right in parts)
    expected = _celpy_result(source, event, other)
    if expected is not None:
        assert compile_expression(source).matches(event, other) == expected
