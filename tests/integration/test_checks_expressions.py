"""`manage.py check` refuses function expressions past the limits, or with a syntax error,
saying what and where (issue 15 point 4, issue 18)."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks

import django_inngest as inngest
from django_inngest.core.expression_syntax import MAX_DEPTH, MAX_LENGTH


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("(" * 80 + "event.data.a == 1" + ")" * 80, f"levels deep, more than the {MAX_DEPTH}"),
        ("event.data.a == '" + "x" * MAX_LENGTH + "'", f"more than the {MAX_LENGTH} allowed"),
        ("event.data.plan = 'pro'", "= is not an operator; did you mean ==? at column 17"),
        ("event.data.a == " + "9" * 30, "int literal"),
    ],
)
def test_a_trigger_expression_past_a_limit_is_a_check_error_saying_why(
    inngest_client: inngest.Inngest, expression: str, reason: str
) -> None:
    inngest_client.create_function(
        fn_id="filtered", trigger=inngest.TriggerEvent(event="t", expression=expression)
    )(lambda ctx: None)
    found = [(m.id, m.msg) for m in run_checks(tags=["django_inngest"])]
    assert any(
        id_ == "django_inngest.E003" and "tests-filtered" in msg and reason in msg
        for id_, msg in found
    ), found
