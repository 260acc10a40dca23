"""Expressions are bounded and never crash on data: typed errors naming the expression, RE2,
a cost budget, limits on length and depth, and syntax errors that say what and where."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from django_inngest.core import expressions
from django_inngest.core.expression_syntax import MAX_DEPTH, MAX_LENGTH
from django_inngest.core.expressions import (
    EvaluationError,
    EvaluationLimitError,
    Expression,
    ExpressionError,
    compile_expression,
    event_index_keys,
)

HUGE = 10**400


def ev(**data: Any) -> dict[str, Any]:
    return {"name": "t", "data": data, "id": "01H", "ts": 1, "user": {}}


@pytest.mark.parametrize(
    "source",
    [
        "event.data.n == 1",
        "timestamp(event.data.n) > now()",
        "duration(string(event.data.n) + 's') > duration('1s')",
        "double(event.data.n) > 1.0",
        "event.data.n + 1.5 > 0",
        "int(event.data.f) > 0",
        "event.data.l[event.data.n] == 1",
        "event.data.n / 7 == 3",
        "now_plus(string(event.data.n) + 'h') > now()",
    ],
)
def test_numbers_out_of_range_give_no_match_or_an_evaluation_error_naming_the_expression(
    source: str,
) -> None:
    event = ev(n=HUGE, f=float("inf"), l=[1, 2])
    expression = compile_expression(source)
    outcomes: list[object] = []
    try:  # a boolean place: a match, no match, or a limit that is not read as "no match"
        outcomes.append(expression.matches(event))
    except EvaluationLimitError as error:
        outcomes.append(error.expression)
    assert outcomes in ([True], [False], [source])
    errors: list[EvaluationError] = []
    try:
        expression.evaluate(event)
    except EvaluationError as error:
        errors.append(error)
    assert all(error.expression == source and source in str(error) for error in errors)


def test_a_huge_int_compares_exactly_and_has_an_index_key() -> None:
    assert compile_expression("event.data.n == event.data.m").evaluate(ev(n=HUGE, m=HUGE))
    assert compile_expression("event.data.n == 1.0").evaluate(ev(n=HUGE)) is False
    assert compile_expression("event.data.n").key(ev(n=HUGE)) == str(HUGE)
    assert event_index_keys(ev(n=HUGE))
    key = compile_expression("async.data.n == event.data.n").index_key(ev(n=HUGE))
    assert key in event_index_keys({"data": {"n": HUGE}})


def test_data_nested_too_deep_for_the_stack_is_an_evaluation_error() -> None:
    deep: Any = 1
    for _ in range(sys.getrecursionlimit() + 100):
        deep = [deep]
    expression = compile_expression("event.data.a == event.data.b")
    with pytest.raises(EvaluationLimitError, match="RecursionError"):
        expression.evaluate(ev(a=deep, b=deep))
    with pytest.raises(EvaluationLimitError):  # a limit, not "no match": contained upstream
        expression.matches(ev(a=deep, b=deep))


def test_key_places_raise_evaluation_error_not_recursion_error() -> None:
    deep: Any = {}
    for _ in range(sys.getrecursionlimit() + 100):
        deep = {"a": deep}
    with pytest.raises(EvaluationError):
        compile_expression("event.data.d").key(ev(d=deep))


# --- RE2 ----------------------------------------------------------------------------------


def test_matches_speaks_re2_not_pythons_re() -> None:
    """CEL's dialect: back-references and look-arounds, which only backtracking engines such as
    Python's re offer, are errors; `^(a+)+$` over 'a' * 31 + 'b' (a minute with Python's re)
    is simply no match, and its CPU cost is measured by `python -m bench.hostile_expressions`."""
    for pattern in (r"(a)\\1", "a(?=b)"):
        with pytest.raises(EvaluationError):
            compile_expression(f"event.data.s.matches('{pattern}')").evaluate(ev(s="aa"))
    expression = compile_expression("event.data.s.matches('^(a+)+$')")
    assert expression.matches(ev(s="a" * 31 + "b")) is False
    assert expression.matches(ev(s="a" * 31)) is True


def test_matches_speaks_re2s_dialect() -> None:
    """Look-behind and back-references are not RE2; `\\pL` classes are."""
    with pytest.raises(EvaluationError, match=r"invalid regular expression.*RE2"):
        compile_expression("event.data.s.matches('(?<=a)b')").evaluate(ev(s="ab"))
    assert compile_expression("event.data.s.matches('^\\\\pL+$')").evaluate(ev(s="été"))


# --- cost budget --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "event.data.l.exists(x, event.data.l.exists(y, x == y + 5000))",
        "event.data.l.map(x, x * 2).filter(y, y < 0).size() > 0",
        "event.data.l.all(x, x >= 0) && event.data.l.exists_one(x, x == -1)",
        "event.data.l == event.data.l",
        "-1 in event.data.l",
        "string(event.data.l) == ''",
        "event.data.l.exists(x, (event.data.s + event.data.s).size() == 0)",
        "event.data.s.matches('(.{0,30}a){10}z')",
        "event.data.l.exists(x, event.data.s == event.data.t)",
        "event.data.l.exists(x, event.data.t < event.data.s)",
        "event.data.l.exists(x, bytes(event.data.s).size() == 0)",
    ],
)
def test_evaluation_past_the_cost_budget_fails_naming_the_expression(source: str) -> None:
    event = ev(
        l=list(range(100_000)),
        s="ab" * 250_000,
        t="ab" * 249_999 + "ac",
    )
    with pytest.raises(EvaluationError, match="cost budget") as raised:
        compile_expression(source).evaluate(event)
    assert raised.value.expression == source
    with pytest.raises(EvaluationLimitError):  # a limit, not "no match": contained upstream
        compile_expression(source).matches(event)


def test_the_budget_allows_a_macro_over_fifteen_hundred_items() -> None:
    assert compile_expression("event.data.l.exists(x, x == 1499)").evaluate(ev(l=list(range(1500))))


def test_the_budget_is_per_evaluation() -> None:
    expression = compile_expression("event.data.l.exists(x, x == -1)")
    event = ev(l=list(range(1500)))
    for _ in range(5):
        assert expression.evaluate(event) is False


def test_a_hostile_expression_is_stopped_by_its_budget_not_run_to_the_end() -> None:
    """9 million iterations over a 500,000-character string: stopped as a limit (its CPU cost
    is measured by `python -m bench.hostile_expressions`, not here)."""
    expression = compile_expression(
        "event.data.l.exists(x, event.data.l.exists(y, event.data.s.contains(string(x + y))))"
    )
    event = ev(l=list(range(3000)), s="a" * 500_000)
    with pytest.raises(EvaluationLimitError, match="cost budget"):
        expression.matches(event)


# --- limits at compile time ---------------------------------------------------------------


def test_an_expression_longer_than_the_limit_is_refused() -> None:
    source = "event.data.a == '" + "x" * MAX_LENGTH + "'"
    with pytest.raises(ExpressionError, match=f"more than the {MAX_LENGTH} allowed"):
        compile_expression(source)


@pytest.mark.parametrize(
    "source",
    [
        "(" * 500 + "1" + ")" * 500,
        " || ".join(["a == 1"] * 100),
        "!" * 300 + "true",
        "[" * 100 + "]" * 100,
    ],
)
def test_an_expression_nested_deeper_than_the_limit_is_refused(source: str) -> None:
    with pytest.raises(ExpressionError, match=f"more than the {MAX_DEPTH} allowed"):
        compile_expression(source)


def test_an_expression_at_the_depth_limit_evaluates_deep_in_the_stack() -> None:
    """Compiling and evaluating the deepest accepted expression fits in a stack already
    500 frames deep (a worker's)."""
    source = " || ".join(["event.data.a == 1"] * (MAX_DEPTH // 2)) + " || event.data.a == 2"
    expression = Expression(source)

    def nested(depth: int) -> bool:
        if depth:
            return nested(depth - 1)
        return Expression(source).matches(ev(a=2)) and expression.matches(ev(a=2))

    assert nested(500)


# --- literals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("'\\x'", r"invalid escape '\\\\x'"),
        ("'\\N{foo}'", r"invalid escape '\\\\N'"),
        ("'\\q'", r"invalid escape '\\\\q'"),
        ("'\\uD800'", "invalid code point"),
        ("1" * 400, "int literal .* out of range"),
        ("18446744073709551616u", "uint literal .* out of range"),
        ("1e999", "double literal .* out of range"),
    ],
)
def test_literals_cel_refuses_are_expression_errors(source: str, reason: str) -> None:
    with pytest.raises(ExpressionError, match=reason):
        compile_expression(source)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("'\\u00e9\\101\\x41\\n'", "éAA\n"),
        ("r'\\d+'", "\\d+"),
        ("'''a\nb'''", "a\nb"),
        ("b'\\xff\\000'", b"\xff\x00"),
        ('"it\'s"', "it's"),
        ("'\\`\\?'", "`?"),
        ("-9223372036854775808", -(2**63)),
        ("18446744073709551615u", 2**64 - 1),
    ],
)
def test_cel_literals_are_read_as_cel_reads_them(source: str, expected: Any) -> None:
    assert compile_expression(source).evaluate(ev()) == expected


# --- syntax errors ------------------------------------------------------------------------


def test_a_single_equals_sign_says_what_is_wrong_and_where() -> None:
    with pytest.raises(ExpressionError) as raised:
        compile_expression("event.data.plan = 'pro'")
    error = raised.value
    assert error.reason == "= is not an operator; did you mean ==? at column 17"
    assert error.column == 17
    assert str(error).splitlines() == [
        "invalid expression \"event.data.plan = 'pro'\": = is not an operator; did you mean ==? "
        "at column 17",
        "    event.data.plan = 'pro'",
        "                    ^",
    ]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("event.data.x === 1", "=== is not an operator; did you mean ==\\? at column 16"),
        ("a && (b", "missing \\) at column 8"),
        ("a[1", "missing \\] at column 4"),
        ("a & b", "& is not an operator; did you mean &&\\? at column 3"),
        ("a and b", "and is not an operator; did you mean &&\\? at column 3"),
        ("event.data.x ==", "the expression ends too early at column 16"),
        ("a == 1 2", "unexpected '2' at column 8"),
        ("'abc", "unterminated string"),
        ("a # b", "unexpected character '#' at column 3"),
    ],
)
def test_syntax_errors_give_the_reason_and_the_column(source: str, reason: str) -> None:
    with pytest.raises(ExpressionError, match=reason):
        compile_expression(source)


def test_the_cost_constants_are_documented() -> None:
    assert expressions.MAX_COST > 0


def test_evaluations_inside_sharing_one_budget_share_it() -> None:
    """What planning one run for one event evaluates (its keys) spends one budget in all."""
    expression = compile_expression("event.data.l.exists(x, x == -1)")
    event = ev(l=list(range(int(0.6 * expressions.MAX_COST / 7))))
    assert expression.evaluate(event) is False
    assert expression.evaluate(event) is False  # each alone has its own budget

    @expressions.sharing_one_budget
    def plan() -> None:
        assert expression.evaluate(event) is False
        with pytest.raises(EvaluationError, match="cost budget"):
            expression.evaluate(event)

    plan()
    assert expression.evaluate(event) is False  # and outside, the budget is fresh again


# --- anything in, typed errors out ---------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50)
    | st.sampled_from(["1h", "-3.5ms", "2030-01-01T00:00:00Z", "[1, 2]", "YWJj", "a" * 300]),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=5)
    ),
    max_leaves=20,
)

EVERY_FUNCTION = [
    "event.data.v == 1 && event.data.v != 'x' || event.data.v < 2.5",
    "event.data.v + event.data.v",
    "event.data.v - 1",
    "event.data.v * event.data.v / 3 % 2",
    "-event.data.v",
    "!event.data.v",
    "event.data.v ? 1 : 2",
    "event.data.v in event.data.v",
    "event.data.v[event.data.v]",
    "size(event.data.v) + event.data.v.size()",
    "int(event.data.v) + uint(event.data.v) + double(event.data.v)",
    "string(event.data.v) + bool(event.data.v) + bytes(event.data.v)",
    "timestamp(event.data.v) < now() && date(event.data.v) > now()",
    "duration(event.data.v) > duration('1s') && now_plus(event.data.v) > now_minus(event.data.v)",
    "lowercase(event.data.v) + uppercase(event.data.v) + event.data.v.lowerAscii()",
    "b64decode(event.data.v) + json_parse(event.data.v)",
    "event.data.v.matches(event.data.v) || matches(event.data.v, '^a+$')",
    "event.data.v.contains(event.data.v) || event.data.v.startsWith('a') || event.data.v.endsWith('a')",
    "event.data.v.exists(x, x == event.data.v) && event.data.v.all(x, x != null)",
    "event.data.v.map(x, [x, {'k': x}]).filter(y, size(y) > 0).exists_one(z, z == z)",
    "has(event.data.v.k) && type(event.data.v) == 'int'",
    "{'a': event.data.v, event.data.v: 1}",
]


@settings(max_examples=300, deadline=None)
@given(value=JSON)
def test_whatever_the_data_every_function_raises_only_evaluation_error(value: Any) -> None:
    event = ev(v=value)
    named: list[bool] = []
    for source in EVERY_FUNCTION:
        expression = compile_expression(source)
        assert expression.matches(event) in (True, False)
        for place in (expression.evaluate, expression.key):
            try:
                place(event)
            except EvaluationError as error:
                named.append(error.expression == source)
        event_index_keys(event)
        compile_expression("async.data.v == event.data.v").index_key(event)
    assert all(named)


@settings(max_examples=500, deadline=None)
@given(
    source=st.text(
        alphabet=st.sampled_from(list("ab.()[]{}'\"\\=!&|<>+-*/%?:,0129xNu e")), max_size=60
    )
    | st.text(max_size=30)
)
def test_whatever_the_text_compiling_raises_only_expression_error(source: str) -> None:
    reasons: list[str] = []
    try:
        compile_expression(source)
    except ExpressionError as error:
        reasons.append(error.reason)
    assert all(reasons)


def test_int_arithmetic_beyond_64_bits_is_an_overflow_error() -> None:
    """As CEL's: and no expression can square its way to numbers of millions of digits."""
    with pytest.raises(EvaluationError, match="integer overflow"):
        compile_expression("9223372036854775807 + 1").evaluate(ev())
    with pytest.raises(EvaluationError, match="integer overflow"):
        compile_expression("event.data.n * 2").evaluate(ev(n=2**62))
    assert compile_expression("-9223372036854775808 + 0").evaluate(ev()) == -(2**63)
    assert compile_expression("event.data.n * 2.0").evaluate(ev(n=2**62)) == 2.0**63
    square = "event.data.x"
    while len(square) * 2 + 5 < MAX_LENGTH:
        square = f"({square})*({square})"
    assert compile_expression(square).matches(ev(x=HUGE)) is False  # the first product overflows


def test_int_of_a_long_string_is_out_of_range_at_once() -> None:
    """A 4,000-digit string is refused before Python reads it (quadratic: never in a loop)."""
    expression = compile_expression("event.data.l.exists(x, int(event.data.digits) == 0)")
    with pytest.raises(EvaluationError, match=r"int\(\) of '9999.*: out of range"):
        expression.evaluate(ev(l=list(range(10_000)), digits="9" * 4000))
