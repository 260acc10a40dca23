"""CEL expressions over events with Inngest's lenient semantics; the only importer of celpy.

cel-python parses; this module compiles the parse tree once into Python closures and evaluates
them with the rules of SPEC §4.2: a missing field is an "unknown" that behaves like null,
numbers compare across int and double, `+` of mixed types concatenates, `&&`, `||` and `?:`
take JavaScript-style truthiness, and a boolean place treats anything but `true` as no match.
Plain paths, literals and `path == path` / `path == literal` compile to fast closures, and
`index_key()` gives the lookup key that lets a waiting run be found by index. Expressions are
bounded: limits on length and nesting when compiled, RE2 for `matches`, and a cost budget for
each evaluation (`MAX_COST`); whatever goes wrong while evaluating is an `EvaluationError`.
"""

from __future__ import annotations

import base64
import contextvars
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import re2
from celpy.celparser import CELParseError, CELParser
from lark import Token, Tree

from django_inngest.core import clock
from django_inngest.core.errors import InngestError
from django_inngest.core.expression_syntax import (
    INT_MAX,
    INT_MIN,
    MAX_DEPTH,
    MAX_LENGTH,
    PASS_THROUGH,
    LiteralError,
    explain_syntax_error,
    float_literal,
    int_literal,
    nesting_depth,
    pointer,
    string_literal,
)

Node = Tree[Token]

Env = Mapping[str, Any]
Compiled = Callable[[Env], Any]

MACROS = frozenset({"has", "all", "exists", "exists_one", "map", "filter"})
CONVERSIONS = frozenset({"int", "uint", "double", "string", "bool", "bytes", "dyn", "type"})
ROOTS = ("event", "async", "vars")


class _Missing:
    """A path that does not exist: compares like null and never raises."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


class ExpressionError(InngestError, ValueError):
    """An expression does not compile, or breaks the rules of the place it is used in.

    `reason` says what is wrong (and at which column, when the parser knows); the message
    adds the expression and, for a one-line expression, a caret under that column."""

    def __init__(self, expression: str, reason: str, *, column: int | None = None) -> None:
        shown = expression if len(expression) <= 200 else f"{expression[:200]}…"
        caret = pointer(expression, column) if column else ""
        super().__init__(
            f"invalid expression {shown!r}: {reason}" + (f"\n{caret}" if caret else "")
        )
        self.expression = expression
        self.reason = reason
        self.column = column


class EvaluationError(InngestError):
    """An expression failed on a value (a type error, a division by zero, a number out of
    range, its cost budget spent). Raised by `Expression` with the expression named."""

    def __init__(self, reason: str, *, expression: str | None = None) -> None:
        shown = (
            expression if expression is None or len(expression) <= 200 else f"{expression[:200]}…"
        )
        super().__init__(reason if shown is None else f"expression {shown!r} failed: {reason}")
        self.reason = reason
        self.expression = expression


class EvaluationLimitError(EvaluationError):
    """An evaluation stopped by a limit, not by CEL's rules: its cost budget spent, or data
    Python could not evaluate (a number too large for a float, nesting deeper than the
    stack). Unlike other evaluation errors it is not read as "no match" or an `<invalid>`
    key: it reaches the caller, which skips that (event, function) and records why (DESIGN
    §11, "Data never stops the engine")."""


# --- cost -------------------------------------------------------------------------------------

MAX_COST = 15_000
"""Cost units one evaluation may spend (a unit is about 0.2 µs of CPU; see
docs/performance.md): each iteration of a macro costs 3 plus the size of its body in
parse-tree nodes (a call 6, an index 3); a string costs a unit per `_SCAN` characters scanned,
compared or built; a list or map `_PER_ITEM` units per item compared, searched or formatted;
`matches` 20, plus the text's length times the size of the compiled pattern per `_REGEX`
(RE2's worst case, when it cannot use its DFA)."""

_SCAN = 256
_PER_ITEM = 2
_REGEX = 256
_ITERATION = 3
_MATCH_CALL = 20  # RE2's Python wrapper: encoding, a match object (measured)
_NODE_COST = {"ident_arg": 6, "member_dot_arg": 6, "member_index": 3}


class _Budget:
    __slots__ = ("left",)

    def __init__(self, units: int) -> None:
        self.left = units


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "expression_budget", default=None
)


_shared: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "expression_shared_budget", default=None
)

_Function = TypeVar("_Function", bound=Callable[..., Any])


def sharing_one_budget(function: _Function) -> _Function:
    """Run `function` with one budget of `MAX_COST` for all the evaluations it makes (and not
    one each): what planning one run of one function for one event may spend in total."""

    @functools.wraps(function)
    def shared(*args: Any, **kwargs: Any) -> Any:
        token = _shared.set(_Budget(MAX_COST))
        try:
            return function(*args, **kwargs)
        finally:
            _shared.reset(token)

    return shared  # type: ignore[return-value]


def _spend(units: int) -> None:
    """Charge the evaluation under way (nothing outside one)."""
    budget = _budget.get()
    if budget is None:
        return
    budget.left -= units
    if budget.left < 0:
        raise EvaluationLimitError(
            f"cost budget of {MAX_COST} units spent (macro iterations and the sizes of the "
            "strings and lists it scans or builds); simplify it or send smaller data"
        )


def _spend_on(value: Any) -> None:
    """Charge for scanning, comparing or building `value` (its top level)."""
    if isinstance(value, str | bytes):
        _spend(1 + len(value) // _SCAN)
    elif isinstance(value, list | tuple | Mapping):
        _spend(1 + len(value) * _PER_ITEM)


# --- values -----------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def truthy(value: Any) -> bool:
    """JavaScript-style truthiness: false, 0, "", null and missing are false."""
    if value is None or value is MISSING or value is False:
        return False
    if _is_number(value):
        return bool(value)
    if isinstance(value, str | bytes):
        return len(value) > 0
    return True


def format_value(value: Any) -> str:
    """Stringify as Go's `%v` does, so a key of 1 and of 1.0 is the same "1"."""
    if value is None or value is MISSING:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + " ".join(format_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = sorted((str(k), format_value(v)) for k, v in value.items())
        return "map[" + " ".join(f"{k}:{v}" for k, v in items) + "]"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def equal(left: Any, right: Any) -> bool:
    if left is MISSING or right is MISSING:
        return (left is MISSING or left is None) and (right is MISSING or right is None)
    if _is_number(left) and _is_number(right):
        try:
            return float(left) == float(right)
        except OverflowError:  # an int beyond doubles: no double equals it, compare exactly
            return bool(left == right)
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, list) and isinstance(right, list):
        _spend_on(left)
        return len(left) == len(right) and all(map(equal, left, right))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        _spend_on(left)
        return left.keys() == right.keys() and all(equal(left[k], right[k]) for k in left)
    if type(left) is type(right) and isinstance(left, str | bytes) and len(left) == len(right):
        _spend_on(left)  # equal lengths are compared byte by byte
    return bool(type(left) is type(right) and left == right)


def _zero_like(value: Any) -> Any:
    if isinstance(value, bool):
        return False
    if _is_number(value):
        return 0
    if isinstance(value, str):
        return ""
    if isinstance(value, bytes):
        return b""
    if isinstance(value, list):
        return []
    return None


def _compare(left: Any, right: Any) -> int | None:
    """-1, 0 or 1; None when the two cannot be ordered."""
    if left is None and right is not None:
        left = _zero_like(right)
    elif right is None and left is not None:
        right = _zero_like(left)
    if left is None and right is None:
        return 0
    if _is_number(left) and _is_number(right):
        pass
    elif type(left) is not type(right) or isinstance(left, Mapping | list):
        return None
    try:
        if isinstance(left, str | bytes):
            _spend_on(left)
        return (left > right) - (left < right)  # type: ignore[no-any-return]
    except TypeError:
        return None


_ORDER: dict[str, Callable[[int], bool]] = {
    "relation_lt": lambda c: c < 0,
    "relation_le": lambda c: c <= 0,
    "relation_gt": lambda c: c > 0,
    "relation_ge": lambda c: c >= 0,
}


def _ordered(op: str, left: Any, right: Any) -> bool:
    if left is MISSING:
        return op in ("relation_lt", "relation_le")
    if right is MISSING:
        return op in ("relation_gt", "relation_ge")
    comparison = _compare(left, right)
    return comparison is not None and _ORDER[op](comparison)


def _add(left: Any, right: Any) -> Any:
    if left is MISSING:
        return right
    if right is MISSING:
        return left
    if _is_number(left) and _is_number(right):
        both_int = isinstance(left, int) and isinstance(right, int)
        return _int64(left + right) if both_int else left + right
    if type(left) is type(right) and isinstance(left, str | bytes | list):
        _spend_on(left)
        _spend_on(right)
        return left + right
    if isinstance(left, datetime) and isinstance(right, timedelta):
        return left + right
    if isinstance(left, timedelta) and isinstance(right, datetime | timedelta):
        return right + left
    return _formatted(left) + _formatted(right)


def _formatted(value: Any) -> str:
    """`format_value`, charged first by the size of what it formats, at every depth."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            _spend(1 + 2 * len(item) * _PER_ITEM)  # keys and values, formatted and sorted
            items = item.values() if isinstance(item, Mapping) else item
            stack.extend(v for v in items if isinstance(v, Mapping | list | tuple))
    text = format_value(value)
    _spend_on(text)
    return text


def _arith(op: str, left: Any, right: Any) -> Any:
    if op == "addition_sub":
        if isinstance(left, datetime) and isinstance(right, datetime | timedelta):
            return left - right
        if isinstance(left, timedelta) and isinstance(right, timedelta):
            return left - right
    if not (_is_number(left) and _is_number(right)):
        raise EvaluationError(
            f"cannot apply {op.split('_')[1]} to {_shown(left)} and {_shown(right)}"
        )
    both_int = isinstance(left, int) and isinstance(right, int)
    if op == "addition_sub":
        return _int64(left - right) if both_int else left - right
    if op == "multiplication_mul":
        return _int64(left * right) if both_int else left * right
    if right == 0:
        raise EvaluationError("division by zero")
    if both_int:  # exact, truncated toward zero as CEL's ints
        quotient = abs(left) // abs(right) * (1 if (left < 0) == (right < 0) else -1)
        return _int64(quotient if op == "multiplication_div" else left - right * quotient)
    return left / right if op == "multiplication_div" else left % right


def _int64(value: int) -> int:
    """CEL's ints are 64 bits: a result beyond is an error (and no expression can build
    numbers of millions of digits by multiplying)."""
    if not INT_MIN <= value <= INT_MAX:
        raise EvaluationError(f"integer overflow: {_shown(value)} is beyond 64 bits")
    return value


# --- functions --------------------------------------------------------------------------------


def _size(value: Any) -> int:
    if value is MISSING or value is None:
        return 0
    if isinstance(value, str | bytes | list | Mapping):
        return len(value)
    raise EvaluationError(f"size() of {_shown(value)}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise EvaluationError(f"int() of {_shown(value)}")
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, str | bytes) and len(value) > 64:  # reading digits is quadratic
        raise EvaluationError(f"int() of {_shown(value)}: out of range")
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise EvaluationError(f"int() of {_shown(value)}") from None


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    text = _to_string(value)
    _spend_on(text)
    return text.encode("utf-8")


def _to_double(value: Any) -> float:
    _spend_on(value)
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise EvaluationError(f"double() of {_shown(value)}") from None


def _to_string(value: Any) -> str:
    if isinstance(value, bytes):
        _spend_on(value)
        return value.decode("utf-8", errors="replace")
    return _formatted(value) if not isinstance(value, str) else value


def _shown(value: Any) -> str:
    """A value in an error message, cut short and cheap to make whatever the data."""
    if isinstance(value, Mapping | list | tuple):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, int) and value.bit_length() > 1000:
        return f"an int of {value.bit_length()} bits"
    if isinstance(value, str | bytes) and len(value) > 60:
        return f"{value[:40]!r}… ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}…{text[-10:]} ({len(text)} characters)"


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise EvaluationError(f"bool() of {_shown(value)}")


def _date(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if _is_number(value):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, ValueError, OSError):
            raise EvaluationError(f"timestamp() of {_shown(value)}: out of range") from None
    if isinstance(value, str):
        _spend_on(value)
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise EvaluationError(f"timestamp() of {_shown(value)}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise EvaluationError(f"timestamp() of {_shown(value)}")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    text = value if isinstance(value, str) else _to_string(value)
    if len(text) > 64:  # no real duration is longer; the pattern below is not for long text
        raise EvaluationError(f"invalid duration {_shown(value)}")
    sign = -1 if text.startswith("-") else 1
    parts = _DURATION.findall(text.lstrip("-+"))
    if not parts or "".join(n + u for n, u in parts) != text.lstrip("-+"):
        raise EvaluationError(f"invalid duration {_shown(value)}")
    try:
        return timedelta(seconds=sign * sum(float(n) * _UNITS[u] for n, u in parts))
    except (OverflowError, ValueError):
        raise EvaluationError(f"duration {_shown(value)} is out of range") from None


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # the error is raised, not written to stderr
_RE2_OPTIONS.max_mem = 2 << 20  # per compiled pattern; a larger one fails to compile
_RE2_OPTIONS.never_capture = True  # a yes or no needs no groups; finding them can cost 100x


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as error:
        detail = error.args[0] if error.args else b""
        reason = detail.decode("utf-8", "replace") if isinstance(detail, bytes) else str(detail)
        raise EvaluationError(
            f"invalid regular expression {_shown(pattern)}: {reason} (RE2 syntax)"
        ) from None


def _matches(text: Any, pattern: Any) -> bool:
    """RE2, CEL's own dialect, in time linear in the text."""
    if not isinstance(text, str) or not isinstance(pattern, str):
        return False
    _spend(_MATCH_CALL + len(pattern) // 16)
    regex = _regex(pattern)
    _spend(1 + len(text) * regex.programsize // _REGEX)
    return regex.search(text) is not None


def _string_method(name: str) -> Callable[[Any, Any], bool]:
    def method(receiver: Any, argument: Any) -> bool:
        if not isinstance(receiver, str) or not isinstance(argument, str):
            return False
        _spend_on(receiver)
        return bool(getattr(receiver, name)(argument))

    return method


def _b64decode(value: Any) -> str:
    text = _to_string(value)
    _spend_on(text)
    try:
        return base64.b64decode(text).decode("utf-8")
    except ValueError:
        raise EvaluationError(f"b64decode() of {_shown(value)}") from None


def _json_parse(value: Any) -> Any:
    text = _to_string(value)
    _spend(1 + len(text) // 16)  # builds objects: dearer than a scan
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise EvaluationError(f"json_parse() of {_shown(value)}") from None


def _case(method: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = _to_string(value)
        _spend_on(text)
        return str(getattr(text, method)())

    return convert


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "size": _size,
    "int": _to_int,
    "uint": _to_int,
    "double": _to_double,
    "string": _to_string,
    "bool": _to_bool,
    "bytes": _to_bytes,
    "dyn": lambda v: v,
    "type": lambda v: type(v).__name__,
    "duration": _duration,
    "timestamp": _date,
    "date": _date,
    "now": lambda: clock.now(),
    "now_plus": lambda d: clock.now() + _duration(d),
    "now_minus": lambda d: clock.now() - _duration(d),
    "lowercase": _case("lower"),
    "uppercase": _case("upper"),
    "b64decode": _b64decode,
    "json_parse": _json_parse,
    "matches": _matches,
}

METHODS: dict[str, Callable[..., Any]] = {
    "contains": _string_method("__contains__"),
    "startsWith": _string_method("startswith"),
    "endsWith": _string_method("endswith"),
    "matches": _matches,
    "size": _size,
    "lowerAscii": _case("lower"),
    "upperAscii": _case("upper"),
}


# --- compiler ---------------------------------------------------------------------------------

_parser = CELParser()


def _parse(source: str) -> Node:
    return _parser.parse(source)


def _child(tree: Node, index: int) -> Node:
    child = tree.children[index]
    assert isinstance(child, Tree), f"expected a subtree in {tree.data!r}"
    return child


def _token(tree: Node, index: int) -> Token:
    child = tree.children[index]
    assert isinstance(child, Token), f"expected a token in {tree.data!r}"
    return child


def _child_trees(tree: Node) -> list[Node]:
    return [child for child in tree.children if isinstance(child, Tree)]


def _unwrap(tree: Node) -> Node:
    """Skip the single-child levels of the grammar (expr → conditionalor → ... → primary)."""
    while (
        tree.data
        in (
            "expr",
            "conditionalor",
            "conditionaland",
            "relation",
            "addition",
            "multiplication",
            "unary",
            "member",
            "primary",
        )
        and len(tree.children) == 1
        and isinstance(tree.children[0], Tree)
    ):
        tree = tree.children[0]
    return tree


def _path_of(tree: Node) -> tuple[str, ...] | None:
    """`event.data.x` as ("event", "data", "x"), for a plain chain of fields from a root."""
    tree = _unwrap(tree)
    if tree.data == "ident":
        name = str(tree.children[0])
        return (name,) if name in ROOTS else None
    if tree.data == "member_dot":
        base = _path_of(_child(tree, 0))
        return None if base is None else (*base, str(tree.children[1]))
    if tree.data == "paren_expr":
        return _path_of(_child(tree, 0))
    return None


def _literal_of(tree: Node) -> tuple[bool, Any]:
    tree = _unwrap(tree)
    if tree.data != "literal":
        return False, None
    return True, _literal_value(_token(tree, 0))


class _LiteralAt(LiteralError):
    def __init__(self, reason: str, column: int | None) -> None:
        super().__init__(reason)
        self.column = column


def _literal_value(token: Token) -> Any:
    text = str(token)
    kind = token.type
    try:
        if kind == "NULL_LIT":
            return None
        if kind == "BOOL_LIT":
            return text == "true"
        if kind == "INT_LIT":
            return int_literal(text, unsigned=False)
        if kind == "UINT_LIT":
            return int_literal(text[:-1], unsigned=True)
        if kind == "FLOAT_LIT":
            return float_literal(text)
        return string_literal(text)
    except LiteralError as error:
        column = getattr(token, "column", None)
        raise _LiteralAt(f"{error}{f' at column {column}' if column else ''}", column) from None


def _lookup(value: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if isinstance(value, Mapping):
            value = value.get(part, MISSING)
        else:
            return MISSING
    return value


class _Compiler:
    """Turns a parse tree into nested closures. With `fast_paths`, a plain path compiles to one
    loop of lookups instead of a closure per field."""

    def __init__(self, source: str, *, fast_paths: bool = True) -> None:
        self.source = source
        self.fast_paths = fast_paths

    def compile(self, tree: Node) -> Compiled:
        tree = _unwrap(tree)
        path = _path_of(tree) if self.fast_paths else None
        if path is not None:
            root, rest = path[0], path[1:]
            return lambda env: _lookup(env.get(root, MISSING), rest)
        is_literal, value = _literal_of(tree)
        if is_literal:
            return lambda env: value
        method = getattr(self, f"_{tree.data}", None)
        if method is None:
            raise ExpressionError(self.source, f"unsupported syntax {tree.data!r}")
        compiled: Compiled = method(tree)
        return compiled

    def _weight(self, tree: Node) -> int:
        """What one evaluation of a subtree costs: its nodes that do something, a call or an
        index dearer than an operator or a name (measured, docs/performance.md)."""
        return sum(
            _NODE_COST.get(node.data, 1)
            for node in tree.iter_subtrees()
            if not (node.data in PASS_THROUGH and len(node.children) == 1)
        )

    def _expr(self, tree: Node) -> Compiled:
        condition, then, otherwise = (self.compile(t) for t in _child_trees(tree))
        return lambda env: then(env) if truthy(condition(env)) else otherwise(env)

    def _conditionalor(self, tree: Node) -> Compiled:
        left, right = (self.compile(t) for t in _child_trees(tree))
        return lambda env: _either(left, right, env)

    def _conditionaland(self, tree: Node) -> Compiled:
        left, right = (self.compile(t) for t in _child_trees(tree))
        return lambda env: _both(left, right, env)

    def _relation(self, tree: Node) -> Compiled:
        operator, right_tree = _child_trees(tree)
        left = self.compile(_child(operator, 0))
        right = self.compile(right_tree)
        op = operator.data
        if op == "relation_eq":
            return lambda env: equal(left(env), right(env))
        if op == "relation_ne":
            return lambda env: not equal(left(env), right(env))
        if op == "relation_in":
            return lambda env: _contains(right(env), left(env))
        return lambda env: _ordered(op, left(env), right(env))

    def _addition(self, tree: Node) -> Compiled:
        operator, right_tree = _child_trees(tree)
        left = self.compile(_child(operator, 0))
        right = self.compile(right_tree)
        if operator.data == "addition_add":
            return lambda env: _add(left(env), right(env))
        op = operator.data
        return lambda env: _arith(op, left(env), right(env))

    _multiplication = _addition

    def _unary(self, tree: Node) -> Compiled:
        operator, operand_tree = _child_trees(tree)
        operand = self.compile(operand_tree)
        if operator.data == "unary_not":
            return lambda env: not truthy(operand(env))
        return lambda env: _arith("addition_sub", 0, operand(env))

    def _paren_expr(self, tree: Node) -> Compiled:
        return self.compile(_child_trees(tree)[0])

    def _ident(self, tree: Node) -> Compiled:
        name = str(tree.children[0])
        return lambda env: env.get(name, MISSING)

    def _member_dot(self, tree: Node) -> Compiled:
        base = self.compile(_child(tree, 0))
        field = str(tree.children[1])
        return lambda env: _lookup(base(env), (field,))

    def _member_index(self, tree: Node) -> Compiled:
        base_tree, index_tree = _child_trees(tree)
        base, index = self.compile(base_tree), self.compile(index_tree)
        return lambda env: _index(base(env), index(env))

    def _list_lit(self, tree: Node) -> Compiled:
        items = [self.compile(t) for t in self._arguments(tree)]
        return lambda env: [item(env) for item in items]

    def _map_lit(self, tree: Node) -> Compiled:
        inits = _child_trees(tree)
        parts = [self.compile(t) for t in _child_trees(inits[0])] if inits else []
        pairs = list(zip(parts[::2], parts[1::2], strict=True))
        return lambda env: {_to_string(k(env)): v(env) for k, v in pairs}

    def _arguments(self, tree: Node) -> list[Node]:
        lists = [child for child in _child_trees(tree) if child.data == "exprlist"]
        return _child_trees(lists[0]) if lists else []

    def _ident_arg(self, tree: Node) -> Compiled:
        name = str(tree.children[0])
        arguments = self._arguments(tree)
        if name == "has":
            return self._has(arguments)
        function = FUNCTIONS.get(name)
        if function is None:
            raise ExpressionError(self.source, f"unknown function {name}()")
        compiled = [self.compile(t) for t in arguments]
        if name == "size":
            return lambda env: _size(compiled[0](env)) if compiled else 0

        def call(env: Env) -> Any:
            values = [argument(env) for argument in compiled]
            if any(value is MISSING for value in values):
                return False
            return function(*values)

        return call

    def _has(self, arguments: list[Node]) -> Compiled:
        target = _unwrap(arguments[0]) if len(arguments) == 1 else None
        if target is None or target.data != "member_dot":
            raise ExpressionError(self.source, "has() takes one field selection, like has(a.b)")
        base = self.compile(_child(target, 0))
        field = str(target.children[1])
        return lambda env: isinstance(base(env), Mapping) and field in base(env)

    def _member_dot_arg(self, tree: Node) -> Compiled:
        name = str(tree.children[1])
        arguments = self._arguments(tree)
        receiver = self.compile(_child(tree, 0))
        if name in MACROS:
            return self._macro(name, receiver, arguments)
        method = METHODS.get(name)
        if method is None:
            raise ExpressionError(self.source, f"unknown method .{name}()")
        compiled = [self.compile(t) for t in arguments]

        def call(env: Env) -> Any:
            target = receiver(env)
            if target is MISSING:
                return 0 if name == "size" else False
            return method(target, *(argument(env) for argument in compiled))

        return call

    def _macro(self, name: str, receiver: Compiled, arguments: list[Node]) -> Compiled:
        variable = _unwrap(arguments[0]) if arguments else None
        if len(arguments) != 2 or variable is None or variable.data != "ident":
            raise ExpressionError(self.source, f".{name}() takes a variable and an expression")
        var = str(variable.children[0])
        body = self.compile(arguments[1])
        weight = _ITERATION + self._weight(arguments[1])

        def items(env: Env) -> Iterator[tuple[Any, Any]]:
            collection = receiver(env)
            if isinstance(collection, Mapping):
                _spend_on(collection)
                collection = list(collection)
            if not isinstance(collection, list):
                return
            for item in collection:
                _spend(weight)
                yield item, body({**env, var: item})

        if name == "all":
            return lambda env: all(truthy(result) for _, result in items(env))
        if name == "exists":
            return lambda env: any(truthy(result) for _, result in items(env))
        if name == "exists_one":
            return lambda env: sum(1 for _, result in items(env) if truthy(result)) == 1
        if name == "map":
            return lambda env: [result for _, result in items(env)]
        return lambda env: [item for item, result in items(env) if truthy(result)]


def _either(left: Compiled, right: Compiled, env: Env) -> bool:
    try:
        if truthy(left(env)):
            return True
    except EvaluationError:
        if truthy(right(env)):
            return True
        raise
    return truthy(right(env))


def _both(left: Compiled, right: Compiled, env: Env) -> bool:
    try:
        if not truthy(left(env)):
            return False
    except EvaluationError:
        if not truthy(right(env)):
            return False
        raise
    return truthy(right(env))


def _contains(collection: Any, item: Any) -> bool:
    if isinstance(collection, Mapping):
        return isinstance(item, str) and item in collection
    if isinstance(collection, list):
        _spend_on(collection)
        return any(equal(element, item) for element in collection)
    return False


def _index(value: Any, index: Any) -> Any:
    if isinstance(value, Mapping):
        return value.get(index if isinstance(index, str) else _formatted(index), MISSING)
    if isinstance(value, list) and _is_number(index):
        if isinstance(index, float) and not index.is_integer():
            return MISSING
        position = int(index)  # a whole float; not an inf or nan, which are not integers
        return value[position] if 0 <= position < len(value) else MISSING
    return MISSING


# --- public -----------------------------------------------------------------------------------


class Expression:
    """A compiled expression. Evaluate it with `event` and, where it applies, `async`."""

    def __init__(self, source: str, *, fast_paths: bool = True) -> None:
        self.source = source
        if len(source) > MAX_LENGTH:
            raise ExpressionError(
                source, f"{len(source)} characters, more than the {MAX_LENGTH} allowed"
            )
        try:
            self.tree = _parse(source)
        except CELParseError as error:
            cause = error.__context__
            column = error.column
            if getattr(getattr(cause, "token", None), "type", "") == "$END":
                column = len(source.rstrip()) + 1  # just past the end: what is missing
            if "\n" in source.strip():
                column = None  # a column without its line would mislead
            raise ExpressionError(
                source, explain_syntax_error(source, cause, column), column=column
            ) from None
        depth = nesting_depth(self.tree)
        if depth > MAX_DEPTH:
            raise ExpressionError(
                source, f"nested {depth} levels deep, more than the {MAX_DEPTH} allowed"
            )
        try:
            self._index = _index_form(self.tree)
            self._program = _Compiler(source, fast_paths=fast_paths).compile(self.tree)
        except _LiteralAt as error:
            raise ExpressionError(source, str(error), column=error.column) from None

    def __repr__(self) -> str:
        return f"<Expression {self.source!r}>"

    def evaluate(
        self, event: Mapping[str, Any], async_event: Mapping[str, Any] | None = None
    ) -> Any:
        """The value. Raises `EvaluationError`, naming the expression, for whatever goes wrong
        (a type error, a number out of range, data nested too deep, the budget spent)."""
        env: dict[str, Any] = {"event": event}
        if async_event is not None:
            env["async"] = async_event
        return self._guarded(lambda: self._program(env))

    def _guarded(self, work: Callable[[], Any]) -> Any:
        token = _budget.set(_shared.get() or _Budget(MAX_COST))
        try:
            return work()
        except EvaluationError as error:
            raise type(error)(error.reason, expression=self.source) from None
        except Exception as error:  # an OverflowError, a RecursionError: data, not a crash
            raise EvaluationLimitError(
                f"{type(error).__name__}: {_shown_error(error)}", expression=self.source
            ) from None
        finally:
            _budget.reset(token)

    def matches(
        self, event: Mapping[str, Any], async_event: Mapping[str, Any] | None = None
    ) -> bool:
        """A boolean place: true only for a boolean true result; errors are no match, except
        `EvaluationLimitError`, which is raised."""
        try:
            return self.evaluate(event, async_event) is True
        except EvaluationLimitError:
            raise
        except EvaluationError:
            return False

    def key(self, event: Mapping[str, Any]) -> str | None:
        """A key place: the `%v` string of the value; None when the value is false (no key).
        Raises `EvaluationError`."""

        def work() -> str | None:
            value = self._program({"event": event})
            return None if value is False else _formatted(value)

        result: str | None = self._guarded(work)
        return result

    def index_key(self, event: Mapping[str, Any]) -> str | None:
        """For `async.p == <literal>` or `event.q == async.p` (alone or as one side of `&&`):
        the key an incoming event must have (see `event_index_keys`); None otherwise."""
        if self._index is None:
            return None
        async_path, other = self._index
        value = _lookup(event, other[1:]) if isinstance(other, tuple) else other
        return _index_key(async_path, value)

    def restrictive_problems(self) -> list[str]:
        """What the cancellation policy refuses: macros and calls other than conversions."""
        found = []
        for node in self.tree.iter_subtrees():
            name = None
            if node.data == "ident_arg":
                name = str(node.children[0])
            elif node.data == "member_dot_arg":
                name = str(node.children[1])
            if name is not None and (name in MACROS or name not in CONVERSIONS):
                found.append(
                    f"{name}() is not allowed here: only comparisons, logic and type conversions"
                )
        return found


def _index_form(tree: Node) -> tuple[tuple[str, ...], Any] | None:
    """Find `async.p == literal` or `event.q == async.p`, alone or under top-level `&&`."""
    tree = _unwrap(tree)
    if tree.data == "conditionaland":
        for side in _child_trees(tree):
            found = _index_form(side)
            if found is not None:
                return found
        return None
    if tree.data != "relation":
        return None
    operator, right = _child_trees(tree)
    if operator.data != "relation_eq":
        return None
    left = _child(operator, 0)
    for one, other in ((left, right), (right, left)):
        path, other_path = _path_of(one), _path_of(other)
        if path is None or path[0] != "async":
            continue
        if other_path is not None and other_path[0] == "event":
            return path[1:], other_path
        is_literal, literal = _literal_of(other)
        if is_literal:
            return path[1:], literal
    return None


def _shown_error(error: Exception) -> str:
    text = str(error)
    return text if len(text) <= 200 else f"{text[:200]}…"


def _canonical(value: Any) -> str | None:
    if isinstance(value, bool):
        return f"b:{value}"
    if _is_number(value):
        try:
            return f"n:{format_value(float(value))}"
        except OverflowError:  # an int beyond doubles: no double equals it
            return f"n:{value}"
    if isinstance(value, str):
        return f"s:{value}"
    return None  # null, missing, lists and objects are not indexed


def _index_key(path: tuple[str, ...], value: Any) -> str | None:
    canonical = _canonical(value)
    if canonical is None:
        return None
    return hashlib.sha1(f"{'.'.join(path)}\x1f{canonical}".encode()).hexdigest()


def event_index_keys(event: Mapping[str, Any], *, limit: int = 256) -> list[str]:
    """Every key under which a pause could be waiting for this event: one per scalar field."""
    keys: list[str] = []

    def walk(value: Any, path: tuple[str, ...]) -> None:
        if len(keys) >= limit or len(path) > 8:
            return
        if isinstance(value, Mapping):
            for name, item in value.items():
                if len(keys) >= limit:
                    return  # a map of 100,000 keys is not walked to its end for nothing
                walk(item, (*path, str(name)))
            return
        key = _index_key(path, value)
        if key is not None:
            keys.append(key)

    walk(event, ())
    return keys


@functools.lru_cache(maxsize=4096)
def compile_expression(source: str) -> Expression:
    """The compiled expression (cached). Raises `ExpressionError`, which says what is wrong
    and where: a syntax error, a literal out of range, too long or too deep."""
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError(str(source)[:200], "an expression must be a non-empty string")
    return Expression(source)
