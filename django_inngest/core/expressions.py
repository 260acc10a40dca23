"""CEL expressions over events with Inngest's lenient semantics; the only importer of celpy.

cel-python parses; this module compiles the parse tree once into Python closures and evaluates
them with the rules of SPEC §4.2: a missing field is an "unknown" that behaves like null,
numbers compare across int and double, `+` of mixed types concatenates, `&&`, `||` and `?:`
take JavaScript-style truthiness, and a boolean place treats anything but `true` as no match.
Plain paths, literals and `path == path` / `path == literal` compile to fast closures, and
`index_key()` gives the lookup key that lets a waiting run be found by index.
"""

from __future__ import annotations

import ast
import base64
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from celpy.celparser import CELParseError, CELParser
from lark import Token, Tree

from django_inngest.core import clock
from django_inngest.core.errors import InngestError

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
    """An expression does not compile, or breaks the rules of the place it is used in."""

    def __init__(self, expression: str, reason: str) -> None:
        super().__init__(f"invalid expression {expression!r}: {reason}")
        self.expression = expression
        self.reason = reason


class EvaluationError(InngestError):
    """An expression failed on a value (a type error, a division by zero)."""


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
        return float(left) == float(right)
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(equal, left, right))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        return left.keys() == right.keys() and all(equal(left[k], right[k]) for k in left)
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
        return left + right
    if type(left) is type(right) and isinstance(left, str | bytes | list):
        return left + right
    if isinstance(left, datetime) and isinstance(right, timedelta):
        return left + right
    if isinstance(left, timedelta) and isinstance(right, datetime | timedelta):
        return right + left
    return format_value(left) + format_value(right)


def _arith(op: str, left: Any, right: Any) -> Any:
    if op == "addition_sub":
        if isinstance(left, datetime) and isinstance(right, datetime | timedelta):
            return left - right
        if isinstance(left, timedelta) and isinstance(right, timedelta):
            return left - right
    if not (_is_number(left) and _is_number(right)):
        raise EvaluationError(f"cannot apply {op.split('_')[1]} to {left!r} and {right!r}")
    both_int = isinstance(left, int) and isinstance(right, int)
    if op == "addition_sub":
        return left - right
    if op == "multiplication_mul":
        return left * right
    if right == 0:
        raise EvaluationError("division by zero")
    if op == "multiplication_div":
        return int(left / right) if both_int else left / right
    return int(left - right * int(left / right)) if both_int else left % right


# --- functions --------------------------------------------------------------------------------


def _size(value: Any) -> int:
    if value is MISSING or value is None:
        return 0
    if isinstance(value, str | bytes | list | Mapping):
        return len(value)
    raise EvaluationError(f"size() of {value!r}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise EvaluationError(f"int() of {value!r}")
    if isinstance(value, datetime):
        return int(value.timestamp())
    try:
        return int(value)
    except (TypeError, ValueError):
        raise EvaluationError(f"int() of {value!r}") from None


def _to_double(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise EvaluationError(f"double() of {value!r}") from None


def _to_string(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return format_value(value) if not isinstance(value, str) else value


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise EvaluationError(f"bool() of {value!r}")


def _date(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value
    if _is_number(value):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise EvaluationError(f"date() of {value!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise EvaluationError(f"date() of {value!r}")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    text = str(value)
    sign = -1 if text.startswith("-") else 1
    parts = _DURATION.findall(text.lstrip("-+"))
    if not parts or "".join(n + u for n, u in parts) != text.lstrip("-+"):
        raise EvaluationError(f"invalid duration {value!r}")
    return timedelta(seconds=sign * sum(float(n) * _UNITS[u] for n, u in parts))


def _matches(text: Any, pattern: Any) -> bool:
    if not isinstance(text, str) or not isinstance(pattern, str):
        return False
    try:
        return re.search(pattern, text) is not None
    except re.error:
        raise EvaluationError(f"invalid regular expression {pattern!r}") from None


def _string_method(name: str) -> Callable[[Any, Any], bool]:
    def method(receiver: Any, argument: Any) -> bool:
        if not isinstance(receiver, str) or not isinstance(argument, str):
            return False
        return bool(getattr(receiver, name)(argument))

    return method


def _b64decode(value: Any) -> str:
    try:
        return base64.b64decode(str(value)).decode("utf-8")
    except ValueError:
        raise EvaluationError(f"b64decode() of {value!r}") from None


def _json_parse(value: Any) -> Any:
    try:
        return json.loads(str(value))
    except ValueError:
        raise EvaluationError(f"json_parse() of {value!r}") from None


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "size": _size,
    "int": _to_int,
    "uint": _to_int,
    "double": _to_double,
    "string": _to_string,
    "bool": _to_bool,
    "bytes": lambda v: v if isinstance(v, bytes) else str(v).encode("utf-8"),
    "dyn": lambda v: v,
    "type": lambda v: type(v).__name__,
    "duration": _duration,
    "timestamp": _date,
    "date": _date,
    "now": lambda: clock.now(),
    "now_plus": lambda d: clock.now() + _duration(d),
    "now_minus": lambda d: clock.now() - _duration(d),
    "lowercase": lambda s: str(s).lower(),
    "uppercase": lambda s: str(s).upper(),
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
    "lowerAscii": lambda s: str(s).lower(),
    "upperAscii": lambda s: str(s).upper(),
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


def _literal_value(token: Token) -> Any:
    text = str(token)
    kind = token.type
    if kind == "NULL_LIT":
        return None
    if kind == "BOOL_LIT":
        return text == "true"
    if kind == "INT_LIT":
        return int(text, 0)
    if kind == "UINT_LIT":
        return int(text[:-1], 0)
    if kind == "FLOAT_LIT":
        return float(text)
    return ast.literal_eval(text)  # string and bytes literals share Python's escapes


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

        def items(env: Env) -> Iterator[tuple[Any, Any]]:
            collection = receiver(env)
            if isinstance(collection, Mapping):
                collection = list(collection)
            if not isinstance(collection, list):
                return
            for item in collection:
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
        return any(equal(element, item) for element in collection)
    return False


def _index(value: Any, index: Any) -> Any:
    if isinstance(value, Mapping):
        return value.get(index if isinstance(index, str) else format_value(index), MISSING)
    if isinstance(value, list) and _is_number(index) and float(index).is_integer():
        position = int(index)
        return value[position] if 0 <= position < len(value) else MISSING
    return MISSING


# --- public -----------------------------------------------------------------------------------


class Expression:
    """A compiled expression. Evaluate it with `event` and, where it applies, `async`."""

    def __init__(self, source: str, *, fast_paths: bool = True) -> None:
        self.source = source
        try:
            self.tree = _parse(source)
        except CELParseError as error:
            reason = str(error).splitlines()[0] if str(error) else "syntax error"
            raise ExpressionError(source, reason) from None
        self._index = _index_form(self.tree)
        self._program = _Compiler(source, fast_paths=fast_paths).compile(self.tree)

    def __repr__(self) -> str:
        return f"<Expression {self.source!r}>"

    def evaluate(
        self, event: Mapping[str, Any], async_event: Mapping[str, Any] | None = None
    ) -> Any:
        """The value; raises `EvaluationError` on a type error."""
        env: dict[str, Any] = {"event": event}
        if async_event is not None:
            env["async"] = async_event
        return self._program(env)

    def matches(
        self, event: Mapping[str, Any], async_event: Mapping[str, Any] | None = None
    ) -> bool:
        """A boolean place: true only for a boolean true result; errors are no match."""
        try:
            return self.evaluate(event, async_event) is True
        except (EvaluationError, RecursionError):
            return False

    def key(self, event: Mapping[str, Any]) -> str | None:
        """A key place: the `%v` string of the value; None when the value is false (no key)."""
        value = self.evaluate(event)
        if value is False:
            return None
        return format_value(value)

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


def _canonical(value: Any) -> str | None:
    if isinstance(value, bool):
        return f"b:{value}"
    if _is_number(value):
        return f"n:{format_value(float(value))}"
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
                walk(item, (*path, str(name)))
            return
        key = _index_key(path, value)
        if key is not None:
            keys.append(key)

    walk(event, ())
    return keys


@functools.lru_cache(maxsize=4096)
def compile_expression(source: str) -> Expression:
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError(str(source), "an expression must be a non-empty string")
    return Expression(source)
