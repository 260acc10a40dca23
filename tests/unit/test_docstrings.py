"""STYLE: at least 80 % of the public definitions of django_inngest have a docstring.

Public: a module, class, function or method whose name (and whose modules' and enclosing
classes' names) has no leading underscore; definitions inside functions, migrations and
Django's inner `Meta` classes do not count.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "django_inngest"
MINIMUM = 0.80
#: Definitions a reader reaches first; each must have a docstring whatever the total.
REQUIRED = ("django_inngest.registry:Registry", "django_inngest.client:create_function")

Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def public_definitions() -> dict[str, bool]:
    """Each public definition, named ``module:Class.method``, and whether it has a docstring."""
    found: dict[str, bool] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if "migrations" in parts or any(p.startswith("_") and p != "__init__" for p in parts):
            continue
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        tree = ast.parse(path.read_text())
        found[module] = ast.get_docstring(tree) is not None
        found.update(_members(tree, f"{module}:"))
    return found


def _members(node: ast.AST, prefix: str) -> dict[str, bool]:
    found: dict[str, bool] = {}
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Assign) and isinstance(node, ast.Module):
            # A public name bound to a call (`create_function = _on_default_client(...)`) is
            # documented by the string literal that follows it.
            names = [t.id for t in child.targets if isinstance(t, ast.Name)]
            if isinstance(child.value, ast.Call) and any(n in REQUIRED_NAMES for n in names):
                found[prefix + names[0]] = _string_follows(node, child)
        if not isinstance(child, Definition) or child.name.startswith("_"):
            continue
        if isinstance(child, ast.ClassDef) and child.name == "Meta":
            continue
        found[prefix + child.name] = ast.get_docstring(child) is not None
        if isinstance(child, ast.ClassDef):
            found.update(_members(child, f"{prefix}{child.name}."))
    return found


REQUIRED_NAMES = {name.split(":")[1] for name in REQUIRED}


def _string_follows(module: ast.AST, assignment: ast.stmt) -> bool:
    body = list(getattr(module, "body", []))
    after = body[body.index(assignment) + 1 : body.index(assignment) + 2]
    return bool(
        after
        and isinstance(after[0], ast.Expr)
        and isinstance(after[0].value, ast.Constant)
        and isinstance(after[0].value.value, str)
    )


def test_at_least_80_percent_of_public_definitions_have_a_docstring() -> None:
    found = public_definitions()
    missing = [name for name, documented in found.items() if not documented]
    share = 1 - len(missing) / len(found)
    worst = Counter(name.split(":")[0] for name in missing).most_common(10)
    assert share >= MINIMUM, (
        f"{share:.0%} of {len(found)} public definitions have a docstring (at least "
        f"{MINIMUM:.0%} should); most missing in: "
        + ", ".join(f"{module} ({count})" for module, count in worst)
    )


def test_the_registry_and_the_module_level_create_function_have_a_docstring() -> None:
    found = public_definitions()
    for name in REQUIRED:
        assert found.get(name), f"{name} has no docstring"
