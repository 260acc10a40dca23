"""The text of a CEL expression around cel-python's parser: limits on its length and nesting,
CEL's literals (string and bytes escapes, 64-bit numbers), and syntax errors that say what is
wrong and where. Pure text work: the parser and its exceptions stay in `expressions.py`.
"""

from __future__ import annotations

import re
from typing import Any

MAX_LENGTH = 4096
"""Longest expression accepted, in characters."""

MAX_DEPTH = 64
"""Deepest nesting accepted: operands, calls, brackets and chained operators each add a level
(`a || b || c` is three deep)."""

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
UINT_MAX = 2**64 - 1


class LiteralError(ValueError):
    """A literal CEL does not accept; the message says why."""


# --- where -------------------------------------------------------------------------------------


def pointer(source: str, column: int) -> str:
    """Two lines: the expression and a caret under its `column` (1-based), when it fits on one
    line; "" otherwise."""
    if "\n" in source or len(source) > 200 or column < 1:
        return ""
    return f"    {source}\n    {' ' * (column - 1)}^"


# --- syntax errors -----------------------------------------------------------------------------

_CLOSING = {"RPAR": ")", "RSQB": "]", "RBRACE": "}"}
_WORDS = {"and": "&&", "or": "||", "not": "!", "AND": "&&", "OR": "||", "NOT": "!"}


def explain_syntax_error(source: str, cause: Any, column: int | None) -> str:
    """What is wrong at `column`, from the lark exception `cause` (an unexpected character or
    token, with the tokens it expected), in words a user of the expression understands."""
    where = f" at column {column}" if column else ""
    char = getattr(cause, "char", None)
    if isinstance(char, str):
        rest = source[column - 1 :] if column else char
        if column and source[max(column - 3, 0) : column] == "===":
            return f"=== is not an operator; did you mean ==?{where}"
        if char == "=":
            return f"= is not an operator; did you mean ==?{where}"
        if char in "&|" and not rest.startswith(char * 2):
            return f"{char} is not an operator; did you mean {char * 2}?{where}"
        if char in "'\"":
            return f"unterminated string or invalid character in it{where}"
        return f"unexpected character {char!r}{where}"
    token = getattr(cause, "token", None)
    expected = set(getattr(cause, "expected", None) or ())
    if token is None or getattr(token, "type", "") == "$END":
        missing = [_CLOSING[name] for name in sorted(expected) if name in _CLOSING]
        if len(expected) == 1 and missing:
            return f"missing {missing[0]}{where}"
        return f"the expression ends too early{where}"
    text = str(token)
    if text in _WORDS:
        return f"{text} is not an operator; did you mean {_WORDS[text]}?{where}"
    if getattr(token, "type", "") == "EQUAL" or text == "=":
        return f"= is not an operator; did you mean ==?{where}"
    return f"unexpected {text!r}{where}"


# --- depth -------------------------------------------------------------------------------------

WRAPPERS = frozenset(
    {
        "expr",
        "conditionalor",
        "conditionaland",
        "relation",
        "addition",
        "multiplication",
        "unary",
        "member",
        "primary",
    }
)
"""Grammar levels that only wrap their single child (expr → conditionalor → ... → primary)."""

PASS_THROUGH = WRAPPERS | {"exprlist", "fieldinits", "mapinits"}
"""Levels that do nothing of their own when they have a single child: the wrappers, and lists
of one item. They add no nesting depth and cost nothing to evaluate."""


def nesting_depth(tree: Any) -> int:
    """The deepest chain of nodes that do something (wrappers of one child not counted),
    walked without recursion so that a hostile tree cannot exhaust the stack."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        children = [child for child in node.children if hasattr(child, "children")]
        if not (node.data in PASS_THROUGH and len(node.children) == 1):
            depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest


# --- literals ----------------------------------------------------------------------------------


def int_literal(text: str, *, unsigned: bool) -> int:
    """An int (or uint, without its `u`) literal within CEL's 64 bits."""
    hexadecimal = text.lstrip("-")[:2].lower() == "0x"
    value = int(text, 16 if hexadecimal else 10)  # base 10 reads "01" as 1, as CEL does
    if unsigned and not 0 <= value <= UINT_MAX:
        raise LiteralError(f"uint literal {_short(text)} is out of range (0 to 2^64-1)")
    # 2^63 is accepted because `-9223372036854775808` is read as minus 9223372036854775808.
    if not unsigned and not INT_MIN <= value <= INT_MAX + 1:
        raise LiteralError(f"int literal {_short(text)} is out of range (64-bit)")
    return value


def float_literal(text: str) -> float:
    """A double literal; one beyond the range of a float is a `LiteralError`."""
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise LiteralError(f"double literal {_short(text)} is out of range")
    return value


_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
    "?": "?",
}
_ESCAPE = re.compile(
    r"\\(?:(?P<simple>[abfnrtv\\'\"`?])|(?P<octal>[0-3][0-7]{2})|[xX](?P<hex>[0-9a-fA-F]{2})"
    r"|u(?P<u4>[0-9a-fA-F]{4})|U(?P<u8>[0-9a-fA-F]{8})|(?P<bad>.?))",
    re.DOTALL,
)


def string_literal(text: str) -> str | bytes:
    """A string (or, with a `b` prefix, bytes) literal as CEL reads it: `r` for raw, one or
    three quotes of either kind, and CEL's escapes only (no `\\N{...}`, octal in three digits)."""
    prefix = ""
    while text and text[0] in "rRbB":
        prefix += text[0].lower()
        text = text[1:]
    quotes = 3 if text[:3] in ('"""', "'''") else 1
    body = text[quotes:-quotes]
    raw, is_bytes = "r" in prefix, "b" in prefix
    if raw:
        return body.encode("utf-8") if is_bytes else body
    parts: list[bytes] = []
    position = 0
    for found in _ESCAPE.finditer(body):
        parts.append(body[position : found.start()].encode("utf-8"))
        position = found.end()
        if found["bad"] is not None:
            raise LiteralError(f"invalid escape {found.group(0)!r} in a string literal")
        if found["simple"] is not None:
            parts.append(_SIMPLE_ESCAPES[found["simple"]].encode("utf-8"))
            continue
        number = found["octal"] or found["hex"] or found["u4"] or found["u8"]
        value = int(number, 8 if found["octal"] else 16)
        if is_bytes and (found["octal"] or found["hex"]):
            parts.append(bytes([value]))
        elif 0xD800 <= value <= 0xDFFF or value > 0x10FFFF:
            raise LiteralError(f"invalid code point {found.group(0)!r} in a string literal")
        else:
            parts.append(chr(value).encode("utf-8"))
    parts.append(body[position:].encode("utf-8"))
    joined = b"".join(parts)
    if is_bytes:
        return joined
    try:
        return joined.decode("utf-8")
    except UnicodeDecodeError:
        raise LiteralError("a string literal's escapes do not make valid UTF-8") from None


def _short(text: str) -> str:
    return text if len(text) <= 24 else f"{text[:10]}…{text[-6:]} ({len(text)} digits)"
