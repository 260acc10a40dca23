"""The one rule for what the store can hold (`core.events.storable_json`), the same on SQLite
and PostgreSQL, and error text made storable (`core.errors.error_data`)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import sys
from typing import Any

import pytest

from django_inngest.core.errors import UnstorableValueError, error_data
from django_inngest.core.events import MAX_JSON_DEPTH, storable_json

LARGEST_FLOAT_INT = int(sys.float_info.max)


def nested(levels: int) -> Any:
    """`levels` lists, one inside the other."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"n": 2**63}, '{"n":9223372036854775808}'),
        ({"n": -(2**63) - 1}, '{"n":-9223372036854775809}'),
        ({"n": LARGEST_FLOAT_INT}, json.dumps({"n": LARGEST_FLOAT_INT}, separators=(",", ":"))),
        ({"x": sys.float_info.max}, '{"x":1.7976931348623157e+308}'),
        ({"t": (1, 2)}, '{"t":[1,2]}'),
        ({1: "a", None: "b", 2.5: "c"}, '{"1":"a","null":"b","2.5":"c"}'),
        ({"s": "9" * 5000}, json.dumps({"s": "9" * 5000}, separators=(",", ":"))),
        ({"s": "é🙂\\u0000"}, '{"s":"é🙂\\\\u0000"}'),
        ({"deep": nested(MAX_JSON_DEPTH - 1)}, json.dumps({"deep": nested(99)}).replace(" ", "")),
        ({"s": "[" * 500}, json.dumps({"s": "[" * 500}, separators=(",", ":"))),
    ],
    ids=[
        "2**63",
        "-2**63-1",
        "largest int",
        "largest float",
        "tuple",
        "keys",
        "digits in text",
        "text",
        "100 deep",
        "brackets in text",
    ],
)
def test_what_the_store_holds_is_kept_exactly(value: Any, expected: str) -> None:
    assert storable_json(value, "data") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"n": 10**400}, 'data["n"] is an integer of 401 digits, outside the range of a 64-bit '
         "float (about ±1.8e308)"),
        ({"a": [1, -(10**309)]}, 'data["a"][1] is an integer of 310 digits'),
        ({"n": LARGEST_FLOAT_INT * 2}, 'data["n"] is an integer of 309 digits'),
        ({"n": 10**5000}, 'data["n"] is an integer of more than 4300 digits'),
        ({"x": "a\x00b"}, 'data["x"] contains a NUL character (\\u0000)'),
        ({"k\x00": 1}, 'data has a key with a NUL character (\\u0000): "k\\u0000"'),
        ({"a": {"b": ["ok", "\udfff"]}}, 'data["a"]["b"][1] contains a lone surrogate ("\\udfff"), '
         "which is not valid Unicode"),
        ({"\ud800": 1}, 'data has a key with a lone surrogate: "\\ud800"'),
        ({"x": float("inf")}, 'data["x"] is inf, which is not a JSON number'),
        ({"x": float("nan")}, 'data["x"] is nan, which is not a JSON number'),
        ({"user": dt.datetime(2026, 1, 1)}, 'data["user"] is a datetime'),
        ({"d": decimal.Decimal(1)}, 'data["d"] is a Decimal'),
        ({"s": {1, 2}}, 'data["s"] is a set'),
        ({(1, 2): 1}, "data has a key (1, 2) of type tuple: keys must be strings"),
        ({"deep": nested(MAX_JSON_DEPTH)}, "data nests deeper than 100 levels (at data[\"deep\"]"),
    ],
)  # fmt: skip
def test_what_the_store_cannot_hold_is_refused_naming_the_path_and_the_problem(
    value: Any, message: str
) -> None:
    with pytest.raises(UnstorableValueError) as raised:
        storable_json(value, "data")
    assert str(raised.value).startswith(message)


def test_a_value_that_contains_itself_is_refused_not_walked_forever() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(UnstorableValueError, match="nests deeper than 100 levels"):
        storable_json({"loop": loop}, "output")


def test_the_first_offending_value_in_document_order_is_named() -> None:
    with pytest.raises(UnstorableValueError) as raised:
        storable_json({"a": 1, "b": ["\x00"], "c": 10**400}, "output")
    assert raised.value.path == 'output["b"][0]'


def test_without_the_number_rule_large_integers_are_kept() -> None:
    """For events the engine emits, which may carry stored data of before the rule."""
    assert storable_json({"n": 10**400}, "data", numbers=False) == '{"n":1' + "0" * 400 + "}"


@pytest.mark.parametrize("bad", ["\x00", "\udfff"])
def test_error_text_the_store_cannot_hold_is_kept_with_those_characters_replaced(bad: str) -> None:
    try:
        raise ValueError(f"bad {bad} value")
    except ValueError as error:
        data = error_data(error)
    assert data["message"] == "bad \ufffd value"
    assert "bad \ufffd value" in data["stack"]
    assert storable_json(data, "error")  # nothing left that the store refuses


def test_an_error_whose_str_raises_is_still_recorded() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert error_data(Broken())["message"] == "<str() of the error raised RuntimeError>"
