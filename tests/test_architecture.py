"""The house: each wing imports only the wings below it, and docs/architecture.md names every module."""

from __future__ import annotations

import ast
import re

import pytest

from tests.conftest import REPO

PACKAGE_NAME = "airflow_provider_aidol"
PACKAGE = REPO / PACKAGE_NAME

# Data flows one way: operator → hook → client → answer. The batch engine, the registry and the
# Airflow glue sit on the client, beside each other; the embedded test server shares nothing
# with the client it tests (its verifier is written separately).
BASE = frozenset({"__init__", "_compat", "_lazy", "constants", "exceptions", "outcomes"})
MAY_IMPORT: dict[str, frozenset[str]] = {
    "client": BASE,
    "batch": BASE | {"client"},
    "registry": BASE | {"client"},
    "integration": BASE | {"client"},
    "hooks": BASE | {"client", "batch", "integration"},
    "triggers": BASE | {"client", "batch", "integration", "hooks"},
    "operators": BASE | {"client", "batch", "registry", "integration", "hooks", "triggers", "retry_policy"},
    "retry_policy": BASE,
    "get_provider_info": BASE,
    "testing": frozenset(),
}


def modules() -> list[str]:
    """Every module of the package as a path without ``.py``: ``client/transport``, ``exceptions``."""
    return sorted(str(path.relative_to(PACKAGE).with_suffix("")) for path in PACKAGE.rglob("*.py"))


def wing(module: str) -> str:
    """The folder a module lives in, or the module itself at the top level."""
    return module.split("/")[0]


def imports(module: str) -> set[str]:
    """The package modules ``module`` imports anywhere: at the top, in functions, for type checking."""
    found: set[str] = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{module}.py").read_text())):
        if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith(PACKAGE_NAME):
            continue
        parent = (node.module or "").removeprefix(PACKAGE_NAME).lstrip(".").replace(".", "/")
        for alias in node.names:
            child = f"{parent}/{alias.name}".lstrip("/")
            is_module = (PACKAGE / f"{child}.py").exists() or (PACKAGE / child).is_dir()
            found.add(child if is_module else parent or "__init__")
    return found


@pytest.mark.parametrize("module", [m for m in modules() if wing(m) in MAY_IMPORT])
def test_each_module_imports_only_the_wings_below_its_own(module: str):
    allowed = MAY_IMPORT[wing(module)] | {wing(module)}
    wrong = sorted(name for name in imports(module) if wing(name) not in allowed)
    assert not wrong, f"{module} may import {sorted(allowed)}, but imports {wrong}"


def test_every_module_has_a_place_in_the_layers():
    assert {wing(m) for m in modules()} <= set(MAY_IMPORT) | BASE


def test_the_architecture_page_names_every_module_and_only_modules_that_exist():
    text = (REPO / "docs" / "architecture.md").read_text()
    named = {
        name for name in re.findall(r"`((?:[a-z_]+/)*[a-z_]+\.py)`", text) if not name.startswith("tests/")
    }
    files = {f"{module}.py" for module in modules()}
    assert sorted(files - named - {name for name in files if name.endswith("__init__.py")}) == [], (
        "docs/architecture.md does not name these modules"
    )
    assert sorted(named - files) == [], "docs/architecture.md names modules that do not exist"
