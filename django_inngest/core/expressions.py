"""CEL expressions over events: the compiler; the only importer of celpy.

cel-python parses; this module compiles the parse tree once into Python closures that apply the
value rules of `expression_values` (SPEC §4.2), and a boolean place treats anything but `true`
as no match. Plain paths, literals and `path == path` / `path == literal` compile to fast
closures, and `index_key()` gives the lookup key that lets a waiting run be found by index.
Expressions are bounded: limits on length and nesting when compiled (`expression_syntax`), and
a cost budget for each evaluation (`MAX_COST`); whatever goes wrong while evaluating is an
`EvaluationError`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from celpy.celparser import CELParseError, CELParser
from lark import Token, Tree

from django_inngest.core.errors import InngestError
from django_inngest.core.expression_syntax import (
    MAX_DEPTH,
    MAX_LENGTH,
    PASS_THROUGH,
    WRAPPERS,
    LiteralError,
    explain_syntax_error,
    float_literal,
    int_literal,
    nesting_depth,
    pointer,
    string_literal,
)
from django_inngest.core.expression_values import (
    FUNCTIONS,
    ITERATION_COST,
    MAX_COST,
    METHODS,
    MISSING,
    EvaluationError,
    EvaluationLimitError,
    add,
    arith,
    end_budget,
    equal,
    format_value,
    formatted,
    is_number,
    ordered,
    sharing_one_budget,
    size,
    spend,
    spend_on,
    start_budget,
    to_string,
    truthy,
)

__all__ = [
    "MAX_COST",
    "MISSING",
    "EvaluationError",
    "EvaluationLimitError",
    "Expression",
    "ExpressionError",
    "compile_expression",
    "event_index_keys",
    "format_value",
    "sharing_one_budget",
]

Node = Tree[Token]

Env = Mapping[str, Any]
Compiled = Callable[[Env], Any]

MACROS = frozenset({"has", "all", "exists", "exists_one", "map", "filter"})
CONVERSIONS = frozenset({"int", "uint", "double", "string", "bool", "bytes", "dyn", "type"})
ROOTS = ("event", "async", "vars")
_NODE_COST = {"ident_arg": 6, "member_dot_arg": 6, "member_index": 3}


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
    while tree.data in WRAPPERS and len(tree.children) == 1 and isinstance(tree.children[0], Tree):
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
        return lambda env: ordered(op, left(env), right(env))

    def _addition(self, tree: Node) -> Compiled:
        operator, right_tree = _child_trees(tree)
        left = self.compile(_child(operator, 0))
        right = self.compile(right_tree)
        if operator.data == "addition_add":
            return lambda env: add(left(env), right(env))
        op = operator.data
        return lambda env: arith(op, left(env), right(env))

    _multiplication = _addition

    def _unary(self, tree: Node) -> Compiled:
        operator, operand_tree = _child_trees(tree)
        operand = self.compile(operand_tree)
        if operator.data == "unary_not":
            return lambda env: not truthy(operand(env))
        return lambda env: arith("addition_sub", 0, operand(env))

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
        return lambda env: {to_string(k(env)): v(env) for k, v in pairs}

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
            return lambda env: size(compiled[0](env)) if compiled else 0

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
        weight = ITERATION_COST + self._weight(arguments[1])

        def items(env: Env) -> Iterator[tuple[Any, Any]]:
            collection = receiver(env)
            if isinstance(collection, Mapping):
                spend_on(collection)
                collection = list(collection)
            if not isinstance(collection, list):
                return
            for item in collection:
                spend(weight)
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
        spend_on(collection)
        return any(equal(element, item) for element in collection)
    return False


def _index(value: Any, index: Any) -> Any:
    if isinstance(value, Mapping):
        return value.get(index if isinstance(index, str) else formatted(index), MISSING)
    if isinstance(value, list) and is_number(index):
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
        token = start_budget()
        try:
            return work()
        except EvaluationError as error:
            raise type(error)(error.reason, expression=self.source) from None
        except Exception as error:  # an OverflowError, a RecursionError: data, not a crash
            raise EvaluationLimitError(
                f"{type(error).__name__}: {_shown_error(error)}", expression=self.source
            ) from None
        finally:
            end_budget(token)

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
            return None if value is False else formatted(value)

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
    if is_number(value):
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
