"""DESIGN §2 import rules, checked on the source: core is pure; nothing imports the shells; the
store's SQL that one database alone understands is in its dialect modules."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "django_inngest"
SHELLS = (
    "django_inngest.admin",
    "django_inngest.api",
    "django_inngest.management",
    "django_inngest.testing",
    "django_inngest.urls",
)
#: URL configuration only wires the shells together.
WIRING = "django_inngest.urls"
ONLY_IMPORTER = {
    "celpy": "expressions.py",
    "lark": "expressions.py",
    "re2": "expression_values.py",
    "croniter": "schedule.py",
}


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from django_inngest import testing` imports the module django_inngest.testing.
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_core_imports_only_the_standard_library_core_and_its_two_libraries() -> None:
    allowed_third_party = set(ONLY_IMPORTER)
    for path in (PACKAGE / "core").glob("*.py"):
        for module in imports_of(path):
            top = module.split(".")[0]
            if module.startswith("django_inngest."):
                assert module.startswith("django_inngest.core"), f"{path.name} imports {module}"
            elif top in sys.stdlib_module_names or top == "__future__":
                continue
            else:
                assert top in allowed_third_party, f"{path.name} imports {module}"
                assert path.name == ONLY_IMPORTER[top], f"{path.name} imports {module}"


def test_only_their_own_module_imports_celpy_and_croniter() -> None:
    for path in PACKAGE.rglob("*.py"):
        for module in imports_of(path):
            top = module.split(".")[0]
            if top in ONLY_IMPORTER:
                assert path.name == ONLY_IMPORTER[top], f"{path} imports {top}"


def test_nothing_imports_admin_api_management_or_testing_except_the_url_wiring() -> None:
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        own = ".".join(relative.parts)
        for module in imports_of(path):
            for shell in SHELLS:
                if module == shell or module.startswith(shell + "."):
                    allowed = own.startswith(shell) or own.startswith(WIRING)
                    assert allowed, f"{own} imports {module}"


def test_imports_of_a_name_from_a_package_count_as_imports_of_its_module(tmp_path: Path) -> None:
    source = tmp_path / "example.py"
    source.write_text("from django_inngest import testing\nimport django_inngest.admin\n")
    assert {"django_inngest.testing", "django_inngest.admin"} <= imports_of(source)


def test_settings_are_read_only_in_conf() -> None:
    for path in PACKAGE.rglob("*.py"):
        if path.name != "conf.py" and "migrations" not in path.parts:
            assert "django.conf import settings" not in path.read_text(), path


STORE = PACKAGE / "store"
#: The modules that may write SQL one database alone understands (`store.dialect`).
DIALECTS = ("postgresql.py", "sqlite.py")
#: Words of SQL (or of a driver) that only one of the two databases understands.
VENDOR_SQL = (
    "clock_timestamp",
    "jsonb",
    "pg_notify",
    "NOTIFY",
    "SKIP LOCKED",
    "FOR UPDATE",
    "ANY(",
    "::",
    "nextval",
    "interval '",
    "psycopg",
    "json_each",
    "julianday",
    "rowid",
    "PRAGMA",
)
#: The only modules outside the dialects that look at which database it is: `dialect()`
#: chooses one, and `_sql` queues SQLite writers on a file lock and answers `is_postgresql`.
VENDOR_CHECKS = ("dialect.py", "_sql.py")


def code_strings(path: Path) -> list[str]:
    """The string literals of a module (f-strings' literal parts too), docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_sql_only_one_database_understands_is_written_only_in_the_dialect_modules() -> None:
    for path in STORE.glob("*.py"):
        if path.name in DIALECTS:
            continue
        for text in code_strings(path):
            for word in VENDOR_SQL:
                assert word not in text, f"store/{path.name} has {word!r} in {text!r}"


def test_the_store_asks_which_database_it_is_only_where_the_dialect_is_chosen() -> None:
    for path in STORE.glob("*.py"):
        if path.name in (*DIALECTS, *VENDOR_CHECKS):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "vendor":
                raise AssertionError(f"store/{path.name} reads the connection's vendor")
            if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("is_postgresql"):
                raise AssertionError(f"store/{path.name} calls is_postgresql")


def test_the_dialect_modules_write_sql_the_test_above_would_catch_elsewhere() -> None:
    """The check can fail: the words it looks for are in the dialect modules' SQL."""
    for name in DIALECTS:
        found = {word for text in code_strings(STORE / name) for word in VENDOR_SQL if word in text}
        assert found, name


def public_names_of(package: Path) -> set[str]:
    """The `__all__` of a package's `__init__.py`, read from its source."""
    for node in ast.parse((package / "__init__.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            return set(ast.literal_eval(node.value))
    raise AssertionError(f"{package} has no __all__")


def test_the_runtime_uses_store_and_core_only_through_their_public_names() -> None:
    """No store submodule (the store package exports what the runtime may use), no name the
    store package does not export, and no `_`-prefixed name of store or core."""
    exported = public_names_of(PACKAGE / "store")
    for path in (PACKAGE / "runtime").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("django_inngest.store."), (
                        f"{path.name} imports {alias.name}"
                    )
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = {alias.name for alias in node.names}
                if node.module == "django_inngest.store":
                    assert names <= exported, f"{path.name} imports {names - exported} from store"
                assert not node.module.startswith("django_inngest.store."), (
                    f"{path.name} imports {node.module}"
                )
                if node.module.startswith("django_inngest.core"):
                    private = {name for name in names if name.startswith("_")}
                    assert not private, f"{path.name} imports {private} from {node.module}"
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "store"
            ):
                assert node.attr in exported, f"{path.name} uses store.{node.attr}"
