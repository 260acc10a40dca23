"""What CEL values do under Inngest's lenient rules (SPEC §4.2), apart from any syntax: a
missing field (`MISSING`) behaves like null, numbers compare across int and double, `+` of mixed
types concatenates, truthiness is JavaScript's; the built-in functions and methods; and the cost
budget each evaluation spends (`MAX_COST`). `expressions.py` compiles the parse tree into calls
of these; this is the only importer of re2.
"""

from __future__ import annotations

import base64
import contextvars
import functools
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import re2

from django_inngest.core import clock
from django_inngest.core.errors import InngestError
from django_inngest.core.expression_syntax import INT_MAX, INT_MIN


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
ITERATION_COST = 3
_MATCH_CALL = 20  # RE2's Python wrapper: encoding, a match object (measured)


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


def start_budget() -> contextvars.Token[_Budget | None]:
    """Begin charging one evaluation: to the budget `sharing_one_budget` set up, or to one of
    its own of `MAX_COST`. Give the token back to `end_budget` when it ends."""
    return _budget.set(_shared.get() or _Budget(MAX_COST))


def end_budget(token: contextvars.Token[_Budget | None]) -> None:
    """End the evaluation `start_budget` began."""
    _budget.reset(token)


def spend(units: int) -> None:
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


def spend_on(value: Any) -> None:
    """Charge for scanning, comparing or building `value` (its top level)."""
    if isinstance(value, str | bytes):
        spend(1 + len(value) // _SCAN)
    elif isinstance(value, list | tuple | Mapping):
        spend(1 + len(value) * _PER_ITEM)


# --- values -----------------------------------------------------------------------------------


def is_number(value: Any) -> bool:
    """Whether `value` is an int or a float (a bool is not a number in CEL)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def truthy(value: Any) -> bool:
    """JavaScript-style truthiness: false, 0, "", null and missing are false."""
    if value is None or value is MISSING or value is False:
        return False
    if is_number(value):
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
    """`==` as Inngest evaluates it: missing equals null, numbers compare by value across int and
    double, other values by type and content."""
    if left is MISSING or right is MISSING:
        return (left is MISSING or left is None) and (right is MISSING or right is None)
    if is_number(left) and is_number(right):
        try:
            return float(left) == float(right)
        except OverflowError:  # an int beyond doubles: no double equals it, compare exactly
            return bool(left == right)
    if isinstance(left, bool) or isinstance(right, bool):
        return left is right
    if isinstance(left, list) and isinstance(right, list):
        spend_on(left)
        return len(left) == len(right) and all(map(equal, left, right))
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        spend_on(left)
        return left.keys() == right.keys() and all(equal(left[k], right[k]) for k in left)
    if type(left) is type(right) and isinstance(left, str | bytes) and len(left) == len(right):
        spend_on(left)  # equal lengths are compared byte by byte
    return bool(type(left) is type(right) and left == right)


def _zero_like(value: Any) -> Any:
    if isinstance(value, bool):
        return False
    if is_number(value):
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
    if is_number(left) and is_number(right):
        pass
    elif type(left) is not type(right) or isinstance(left, Mapping | list):
        return None
    try:
        if isinstance(left, str | bytes):
            spend_on(left)
        return (left > right) - (left < right)  # type: ignore[no-any-return]
    except TypeError:
        return None


_ORDER: dict[str, Callable[[int], bool]] = {
    "relation_lt": lambda c: c < 0,
    "relation_le": lambda c: c <= 0,
    "relation_gt": lambda c: c > 0,
    "relation_ge": lambda c: c >= 0,
}


def ordered(op: str, left: Any, right: Any) -> bool:
    """`<`, `<=`, `>`, `>=` (the grammar's `op`): a missing value is below everything; values of
    kinds that do not compare are not ordered (false)."""
    if left is MISSING:
        return op in ("relation_lt", "relation_le")
    if right is MISSING:
        return op in ("relation_gt", "relation_ge")
    comparison = _compare(left, right)
    return comparison is not None and _ORDER[op](comparison)


def add(left: Any, right: Any) -> Any:
    """`+`: missing adds nothing, numbers add (ints within 64 bits), strings, bytes and lists of
    one type concatenate, durations add to times, and other mixes concatenate as strings."""
    if left is MISSING:
        return right
    if right is MISSING:
        return left
    if is_number(left) and is_number(right):
        both_int = isinstance(left, int) and isinstance(right, int)
        return _int64(left + right) if both_int else left + right
    if type(left) is type(right) and isinstance(left, str | bytes | list):
        spend_on(left)
        spend_on(right)
        return left + right
    if isinstance(left, datetime) and isinstance(right, timedelta):
        return left + right
    if isinstance(left, timedelta) and isinstance(right, datetime | timedelta):
        return right + left
    return formatted(left) + formatted(right)


def formatted(value: Any) -> str:
    """`format_value`, charged first by the size of what it formats, at every depth."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            spend(1 + 2 * len(item) * _PER_ITEM)  # keys and values, formatted and sorted
            items = item.values() if isinstance(item, Mapping) else item
            stack.extend(v for v in items if isinstance(v, Mapping | list | tuple))
    text = format_value(value)
    spend_on(text)
    return text


def arith(op: str, left: Any, right: Any) -> Any:
    """`-`, `*`, `/`, `%` (the grammar's `op`) on numbers, and subtraction on times and durations;
    anything else is an `EvaluationError`."""
    if op == "addition_sub":
        if isinstance(left, datetime) and isinstance(right, datetime | timedelta):
            return left - right
        if isinstance(left, timedelta) and isinstance(right, timedelta):
            return left - right
    if not (is_number(left) and is_number(right)):
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


def size(value: Any) -> int:
    """`size()`: the length of a string, bytes, list or map; 0 for null or missing; an
    `EvaluationError` for other values."""
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
    text = to_string(value)
    spend_on(text)
    return text.encode("utf-8")


def _to_double(value: Any) -> float:
    spend_on(value)
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise EvaluationError(f"double() of {_shown(value)}") from None


def to_string(value: Any) -> str:
    """`string()`: bytes decoded as UTF-8, other values formatted as CEL shows them."""
    if isinstance(value, bytes):
        spend_on(value)
        return value.decode("utf-8", errors="replace")
    return formatted(value) if not isinstance(value, str) else value


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
    if is_number(value):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, ValueError, OSError):
            raise EvaluationError(f"timestamp() of {_shown(value)}: out of range") from None
    if isinstance(value, str):
        spend_on(value)
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
    text = value if isinstance(value, str) else to_string(value)
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
    spend(_MATCH_CALL + len(pattern) // 16)
    regex = _regex(pattern)
    spend(1 + len(text) * regex.programsize // _REGEX)
    return regex.search(text) is not None


def _string_method(name: str) -> Callable[[Any, Any], bool]:
    def method(receiver: Any, argument: Any) -> bool:
        if not isinstance(receiver, str) or not isinstance(argument, str):
            return False
        spend_on(receiver)
        return bool(getattr(receiver, name)(argument))

    return method


def _b64decode(value: Any) -> str:
    text = to_string(value)
    spend_on(text)
    try:
        return base64.b64decode(text).decode("utf-8")
    except ValueError:
        raise EvaluationError(f"b64decode() of {_shown(value)}") from None


def _json_parse(value: Any) -> Any:
    text = to_string(value)
    spend(1 + len(text) // 16)  # builds objects: dearer than a scan
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise EvaluationError(f"json_parse() of {_shown(value)}") from None


def _case(method: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        text = to_string(value)
        spend_on(text)
        return str(getattr(text, method)())

    return convert


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "size": size,
    "int": _to_int,
    "uint": _to_int,
    "double": _to_double,
    "string": to_string,
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
    "size": size,
    "lowerAscii": _case("lower"),
    "upperAscii": _case("upper"),
}
