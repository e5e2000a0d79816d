"""The package as PyPI and Airflow see it: metadata, dependency bounds, the PyPI page, provider info."""

from __future__ import annotations

import re
import tomllib
from typing import Any

from airflow_provider_aidol.constants import DOCUMENTATION_URL
from airflow_provider_aidol.get_provider_info import get_provider_info
from tests.conftest import REPO

PROJECT: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
GITHUB = "https://github.com/airflow-provider-aidol/airflow-provider-aidol"
PYPI_PAGE = REPO / PROJECT["readme"]
# The first apache-airflow-providers-common-compat whose sdk module has get_hook_lineage_collector
# (read from the released wheels: 1.13.0's has Stats but not it).
COMMON_COMPAT_FLOOR = "1.13.1"


def test_project_urls_name_the_source_docs_changelog_and_issues():
    assert PROJECT["urls"] == {
        "Homepage": GITHUB,
        "Documentation": DOCUMENTATION_URL,
        "Source": GITHUB,
        "Changelog": f"{GITHUB}/blob/main/CHANGELOG.md",
        "Issues": f"{GITHUB}/issues",
    }


def test_the_provider_info_and_the_docs_site_use_the_same_documentation_url():
    assert get_provider_info()["documentation-url"] == DOCUMENTATION_URL
    mkdocs = (REPO / "mkdocs.yml").read_text()
    assert f"site_url: {DOCUMENTATION_URL}\n" in mkdocs
    assert f"repo_url: {GITHUB}\n" in mkdocs


def test_a_maintainer_can_be_reached():
    assert all(re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", person["email"]) for person in PROJECT["maintainers"])


def test_every_dependency_has_a_floor_and_semantically_versioned_libraries_a_ceiling():
    bounds = {
        re.split(r"[<>=]", dependency, maxsplit=1)[0]: dependency for dependency in PROJECT["dependencies"]
    }
    assert bounds == {
        "apache-airflow": "apache-airflow>=3.0.6",
        "apache-airflow-providers-common-compat": (
            f"apache-airflow-providers-common-compat>={COMMON_COMPAT_FLOOR}"
        ),
        "requests": "requests>=2.34.0,<3",
        "tenacity": "tenacity>=8.3.0",
    }


def test_the_oldest_airflow_venv_tests_the_common_compat_floor():
    # The provider imports Stats and get_hook_lineage_collector from common.compat's sdk module;
    # `make test-oldest` runs the suite with the oldest release that has them.
    oldest = re.search(r"^\$\(OLDEST_STAMP\): pyproject.toml (\S+)\b", (REPO / "Makefile").read_text(), re.M)
    assert oldest is not None
    pins = (REPO / oldest.group(1)).read_text().splitlines()
    assert f"apache-airflow-providers-common-compat=={COMMON_COMPAT_FLOOR}" in pins


def test_the_names_the_provider_imports_from_common_compat_are_there():
    from airflow.providers.common.compat.sdk import Stats, get_hook_lineage_collector

    assert callable(get_hook_lineage_collector)
    assert hasattr(Stats, "incr")


def test_the_python_classifiers_are_every_version_from_the_floor_to_the_newest_ci_tests():
    classified = sorted(
        int(classifier.rsplit(".", 1)[1])
        for classifier in PROJECT["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", classifier)
    )
    extra = re.search(r"^EXTRA_PYTHONS\s*:=\s*(.*)$", (REPO / "Makefile").read_text(), flags=re.MULTILINE)
    assert extra is not None
    tested = {11, *(int(version.split(".")[1]) for version in extra.group(1).split())}
    assert PROJECT["requires-python"] == ">=3.11"
    assert classified == list(range(11, max(tested) + 1)), "no gap between the oldest and the newest tested"
    assert "make test-extra-pythons" in (REPO / ".ci" / "run").read_text()


def test_the_pypi_page_starts_with_pip_install():
    text = PYPI_PAGE.read_text()
    first_block = re.search(r"```\w*\n(.*?)```", text, flags=re.DOTALL)
    assert first_block is not None
    assert first_block.group(1).strip() == "pip install airflow-provider-aidol"
    assert text.index("```") < text.index("\n## "), "before any section"


def test_every_link_on_the_pypi_page_is_absolute():
    links = re.findall(r"\]\(([^)]+)\)", PYPI_PAGE.read_text()) + re.findall(
        r"<(https?://[^>]+)>", PYPI_PAGE.read_text()
    )
    assert links
    assert [link for link in links if not link.startswith("https://")] == []
    docs = [link for link in links if link.startswith(DOCUMENTATION_URL)]
    for link in docs:
        page = link.removeprefix(DOCUMENTATION_URL).split("#")[0] or "index.html"
        assert (REPO / "docs" / page.replace(".html", ".md")).is_file(), f"{link} names no page of the site"


def test_the_sdist_ships_what_the_test_suite_reads():
    sdist = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["sdist"]
    assert {
        "tests",
        "docs",
        "example_dags",
        "scripts",
        PROJECT["readme"],
        "mkdocs.yml",
        "Makefile",
        ".ci",
        ".gitignore",
    } <= set(sdist["include"])


def test_mypy_checks_the_dag_authors_files_with_every_error_code():
    mypy = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]
    assert mypy["strict"] is True
    assert {"tests", "example_dags"} <= set(mypy["files"])
    silenced = [
        override["module"]
        for override in mypy.get("overrides", [])
        if "disable_error_code" in override or override.get("ignore_errors")
    ]
    assert silenced == [], "DAG files (example_dags, tests/typing/author_dag.py) type-check as a user's do"
    assert "type: ignore" not in (REPO / "tests" / "typing" / "author_dag.py").read_text()


def test_only_the_user_facing_extras_are_published_and_the_tools_are_dependency_groups():
    groups = tomllib.loads((REPO / "pyproject.toml").read_text())["dependency-groups"]
    assert set(PROJECT["optional-dependencies"]) == {"postgres", "sqlite", "openlineage"}
    assert set(groups) == {"dev", "release", "docs", "e2e", "e2e-distributed", "bench"}
    makefile = (REPO / "Makefile").read_text()
    assert "-e '.[dev" not in makefile
    assert "--group dev" in makefile


def test_the_author_and_every_maintainer_have_an_email():
    people = PROJECT["authors"] + PROJECT["maintainers"]
    assert all(re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]+", person.get("email", "")) for person in people)


def _make_variable(name: str) -> list[str]:
    found = re.search(rf"^{name}\s*:=\s*(.*)$", (REPO / "Makefile").read_text(), flags=re.MULTILINE)
    assert found is not None, name
    return found.group(1).split()


def _pinned_airflow(constraints: str) -> str:
    found = re.search(r"^apache-airflow==(\S+)$", (REPO / constraints).read_text(), flags=re.MULTILINE)
    assert found is not None, constraints
    return found.group(1)


def test_the_readme_supported_versions_table_says_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Supported versions\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1:-1] for line in section.splitlines() if line.startswith("| 3.")]
    header = next(line for line in section.splitlines() if line.startswith("| Airflow"))
    classified = [c.rsplit(" :: ", 1)[1] for c in PROJECT["classifiers"] if re.search(r":: 3\.\d+$", c)]
    assert [cell.strip() for cell in header.split("|")[2:-1]] == [f"Python {v}" for v in classified]
    table: dict[tuple[str, ...], list[str]] = {}
    for row in rows:
        airflow = re.fullmatch(r"\s*(3\.\d+) \((\S+), `(\S+)`\)\s*", row[0])
        assert airflow is not None, row[0]
        table[airflow.groups()] = [cell.strip() for cell in row[1:]]
    [oldest] = [name.removeprefix(".venv-airflow-") for name in _make_variable("OLDEST")]
    newest = _pinned_airflow("constraints.txt")
    oldest_constraints = f"constraints-airflow-{oldest}.txt"
    expected = {
        (".".join(newest.split(".")[:2]), newest, "constraints.txt"): ["`make test`"],
        (oldest, _pinned_airflow(oldest_constraints), oldest_constraints): ["`make test-oldest`"],
    }
    minors = _make_variable("MINORS")
    first, last = int(oldest.split(".")[1]), int(newest.split(".")[1])
    assert {f"3.{minor}" for minor in range(first + 1, last)} <= set(minors), "every minor in between"
    for minor in minors:  # the minors in between: their docs and example DAGs
        constraints = f"constraints-airflow-{minor}.txt"
        expected.setdefault((minor, _pinned_airflow(constraints), constraints), []).append(
            "`make test-minors`"
        )
    assert set(table) == set(expected)
    for key, targets in expected.items():
        for target in targets:
            assert target in table[key][0], key
    newest_row = table[next(key for key in table if key[2] == "constraints.txt")]
    extra = _make_variable("EXTRA_PYTHONS")
    for version in extra:
        assert "`make test-extra-pythons`" in newest_row[classified.index(version)]
    ci = (REPO / ".ci" / "run").read_text()
    for target in ("test", "test-slow", "test-oldest", "test-minors", "test-extra-pythons"):
        assert re.search(rf"^step make {target}\b", ci, flags=re.MULTILINE), target
