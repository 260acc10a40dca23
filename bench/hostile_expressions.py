"""The worst CPU one expression can cost over one event: hostile expressions (nested macros,
catastrophic regular expressions, long strings, big lists) over hostile event data at the
largest event the engine accepts (`MAX_EVENT_BYTES`, 512 KiB), each stopped by the cost budget
or finishing under it. Pure Python, no database.

    python -m bench.hostile_expressions

Prints a markdown table (CPU time per evaluation: the best of 5, and the worst of 5) and the
worst case; docs/performance.md quotes it.
"""

from __future__ import annotations

import contextlib
import random
import time
from typing import Any

from django_inngest.core.expressions import (
    MAX_COST,
    EvaluationError,
    compile_expression,
    sharing_one_budget,
)

REPEATS = 5


def hostile_event() -> dict[str, Any]:
    """Data an attacker could send: each field fits in one event (512 KiB); two strings of
    500,000 characters would not, but share memory here."""
    chooser = random.Random(1)
    return {
        "name": "hostile",
        "id": "01H",
        "ts": 1,
        "user": {},
        "data": {
            "list": list(range(100_000)),
            "a": "a" * 500_000,
            "b": "a" * 499_999 + "b",
            "digits": "9" * 4_000,
            "text": "".join(chooser.choice("abcdefghij") for _ in range(500_000)),
            "strings": ["x" * 200] * 2_000,
            "map": {str(n): n for n in range(20_000)},
            "nested": [[list(range(10)) for _ in range(100)] for _ in range(100)],
            "pattern": "("
            + "|".join("".join(chooser.choice("abcdefghij") for _ in range(8)) for _ in range(400))
            + "){3}z",
        },
    }


EXPRESSIONS = [
    "event.data.list.exists(x, event.data.list.exists(y, x == y + 1000000))",
    "event.data.list.map(x, x * 2).filter(y, y < 0).size() > 0",
    "event.data.list.exists(x, string(x) + string(x) == 'a')",
    "event.data.list.exists(x, event.data.map[string(x)] == -1)",
    "event.data.nested.exists(a, a.exists(b, b.exists(c, c < 0)))",
    "event.data.nested == event.data.nested",
    "string(event.data.nested) == ''",
    "event.data.map.exists(k, k == 'zz')",
    "event.data.a.matches('^(a+)+$')",
    "event.data.text.matches('(.*a.*b.*c){10}')",
    "event.data.text.matches('(.{0,30}a){10}z')",
    "event.data.text.matches(event.data.pattern)",
    "event.data.strings.exists(s, s.matches('(x+x+)+y'))",
    "event.data.strings.map(s, s + s + s + s).exists(t, t.contains('z'))",
    "lowercase(event.data.a) == uppercase(event.data.text)",
    "json_parse(string(event.data.list)).size() == 0",
    "event.data.list.exists(x, event.data.a.contains(string(x)))",
    "event.data.list.exists(x, event.data.a == event.data.b)",
    "event.data.list.exists(x, bytes(event.data.a).size() == 0)",
    "event.data.list.exists(x, int(event.data.digits) == 0)",
]


def cpu_ms(source: str, event: dict[str, Any]) -> tuple[float, float, str]:
    expression = compile_expression(source)
    times = []
    outcome = ""
    for _ in range(REPEATS):
        started = time.process_time()
        try:
            outcome = repr(expression.evaluate(event))
        except EvaluationError as error:
            outcome = "budget spent" if "budget" in error.reason else error.reason[:40]
        times.append((time.process_time() - started) * 1000)
    return min(times), max(times), outcome


def main() -> None:
    event = hostile_event()
    print(f"MAX_COST = {MAX_COST} units\n")
    print("| expression | CPU ms (best) | CPU ms (worst) | outcome |")
    print("|---|---:|---:|---|")
    worst = 0.0
    for source in EXPRESSIONS:
        best, slowest, outcome = cpu_ms(source, event)
        worst = max(worst, best)
        print(f"| `{source}` | {best:.2f} | {slowest:.2f} | {outcome} |")
    print(f"\nWorst (best of {REPEATS}): {worst:.2f} ms CPU per evaluation")

    @sharing_one_budget
    def plan() -> None:  # a function whose every key is hostile: one budget for all
        for source in EXPRESSIONS[:4] * 3:
            with contextlib.suppress(EvaluationError):
                compile_expression(source).evaluate(event)

    runs = []
    for _ in range(REPEATS):
        started = time.process_time()
        plan()
        runs.append((time.process_time() - started) * 1000)
    print(f"Twelve hostile keys of one run, sharing one budget: {min(runs):.2f} ms CPU (best)")

    # One (event, function) as the engine routes it: the trigger's expression (its own
    # budget, `registry.matching`), then the plan's keys (one budget, `plan_run`).
    trigger = compile_expression(EXPRESSIONS[2] + " || true")
    both = []
    for _ in range(REPEATS):
        started = time.process_time()
        assert trigger.matches(event) is True  # its left side ran out of budget; `true` matched
        plan()
        both.append((time.process_time() - started) * 1000)
    print(
        f"One (event, function): a hostile trigger, then twelve hostile keys: "
        f"{min(both):.2f} ms CPU (best), {max(both):.2f} ms (worst)"
    )


if __name__ == "__main__":
    main()
