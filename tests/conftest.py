"""Suite-wide setup: an isolated Airflow (its own AIRFLOW_HOME and SQLite database).

The environment is set when pytest loads this file, before any test imports Airflow.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import settings

from airflow_provider_aidol.testing.pytest_plugin import run_temp_dir
from tests.called_patches import CalledPatches
from tests.mariadb_server import MariaDbServer, find_server
from tests.postgres_server import PostgresServer, find_binaries

if TYPE_CHECKING:
    from collections.abc import Iterator

    from airflow_provider_aidol.testing.dag_runner import AirflowHome

REPO = Path(__file__).resolve().parent.parent
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="aidol-tests-airflow-home-"))

SUITE_BUNDLES = {"aidol_examples": REPO / "example_dags", "aidol_tests": REPO / "tests" / "dags"}


def bundle_config_list(first: dict[str, Path] | None = None) -> str:
    """Airflow's ``dag_bundle_config_list``: the ``first`` bundles (searched first), then the suite's.

    Airflow reads the setting again each time ``dag.test()`` runs, so a test may add a folder of
    its own with ``monkeypatch.setenv``.
    """
    bundles = {**(first or {}), **SUITE_BUNDLES}
    return json.dumps(
        [
            {
                "name": name,
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(path)},
            }
            for name, path in bundles.items()
        ]
    )


def dag_bag(dags: Path) -> Any:
    """Airflow's DagBag of a DAG file or a DAGs folder, as the DAG processor parses it."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]  # noqa: TID251

    return DagBag(dag_folder=str(dags))


for _name in [name for name in os.environ if name.startswith(("AIRFLOW_CONN_", "AIRFLOW__", "AIRFLOW_VAR_"))]:
    del os.environ[_name]
os.environ.update(
    {
        "AIRFLOW_HOME": str(AIRFLOW_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "example_dags"),
        # dag.test() runs only DAGs found in a bundle: the examples and the tests' own DAGs.
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": bundle_config_list(),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
    }
)


# `make test-fast` (the edit-test loop) draws 20 examples per property test instead of Hypothesis's
# 100 (`--hypothesis-profile=fast`); `make test` and CI draw all 100.
settings.register_profile("fast", max_examples=20)

# A test using one of these runs Airflow against a migrated metadata database.
AIRFLOW_FIXTURES = frozenset({"airflow_db", "aidol_airflow", "aidol_migrated_airflow_home"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``airflow`` every test that uses a migrated Airflow database (pyproject lists the markers).

    Tests that run Airflow in other ways (an ``airflow`` command, a user's pytest) say so themselves.
    """
    for item in items:
        if AIRFLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.airflow)


@pytest.fixture(scope="session")
def airflow_db(aidol_migrated_airflow_home: AirflowHome) -> Path:
    """A migrated Airflow metadata database, made by the real ``airflow db migrate``.

    The run migrates one database (the pytest plugin's ``aidol_migrated_airflow_home``, once for
    all pytest-xdist workers); each worker's AIRFLOW_HOME gets a copy of it.
    """
    database = AIRFLOW_HOME / "airflow.db"
    shutil.copyfile(aidol_migrated_airflow_home.database, database)
    _build_the_in_process_execution_api_once()
    return database


def _build_the_in_process_execution_api_once() -> None:
    """On Airflow before 3.3, let ``dag.test()`` build its in-process execution API once per process.

    ``dag.test()`` serves each task's calls from an in-process execution API. Airflow 3.3 builds
    its routes once per process; older releases build them again for every task (about 10 s of
    CPU each time, most of the oldest-Airflow suite's time). Sharing one instance is what 3.3
    does in effect: the same app, its per-run DAG bag set again by each task.
    """
    from importlib.metadata import version

    from packaging.version import Version

    if Version(version("apache-airflow")) >= Version("3.3"):
        return
    from functools import cache

    from airflow.sdk.execution_time import supervisor

    supervisor.in_process_api_server = cache(supervisor.in_process_api_server)


def _skip_unless_installed(reason: str | None) -> None:
    """Skip the test for ``reason`` (a server or provider missing); on CI, fail it instead."""
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _require_postgres() -> None:
    if find_binaries() is None:
        _skip_unless_installed(
            "PostgreSQL server not installed: run `make postgres` (scripts/ensure-postgres.sh)"
        )


def _require_mariadb() -> None:
    import importlib.util

    if find_server() is None:
        _skip_unless_installed("MariaDB server not installed: run `make mariadb` (scripts/ensure-mariadb.sh)")
    if importlib.util.find_spec("airflow.providers.mysql") is None:
        _skip_unless_installed(
            "MySQL provider not installed: run `make install` (apache-airflow-providers-mysql)"
        )


@pytest.fixture(scope="session")
def database_template_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's folder for the database servers' templates, shared by all pytest-xdist workers:
    each kind of server makes its data directory once per run, and each server starts on a copy
    (``tests/postgres_server.py``, ``tests/mariadb_server.py``)."""
    return run_temp_dir(request.config, tmp_path_factory) / "aidol-database-templates"


@pytest.fixture(scope="session")
def postgres_server(database_template_dir: Path) -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server (Debian's package) on loopback for the session, then deleted."""
    _require_postgres()
    with PostgresServer(template_dir=database_template_dir) as server:
        yield server


@pytest.fixture(scope="session")
def mariadb_server(database_template_dir: Path) -> Iterator[MariaDbServer]:
    """A throwaway MariaDB server (Debian's package) on loopback for the session, then deleted.

    Started by the first test of a worker that asks for it (well under a second), never otherwise.
    """
    _require_mariadb()
    with MariaDbServer(template_dir=database_template_dir) as server:
        yield server


@pytest.fixture
def vanishing_database(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PostgresServer | MariaDbServer]:
    """A database server of the test's own behind the registry connection, for the test to stop.

    PostgreSQL; MariaDB with ``@pytest.mark.parametrize("vanishing_database", ["mysql"], indirect=True)``.
    """
    server: PostgresServer | MariaDbServer
    template_dir = request.getfixturevalue("database_template_dir")
    if getattr(request, "param", "postgres") == "postgres":
        _require_postgres()
        server = PostgresServer(template_dir=template_dir)
    else:
        _require_mariadb()
        server = MariaDbServer(template_dir=template_dir)
    with server:
        monkeypatch.setenv(REGISTRY_ENV_VAR, server.airflow_uri)
        yield server


@pytest.fixture
def must_call(monkeypatch: pytest.MonkeyPatch) -> Iterator[CalledPatches]:
    """``must_call.setattr(target, name, replacement)``: a patch the test fails without calling.

    Patch with this, not ``monkeypatch.setattr`` (``tests/test_called_patches.py`` holds the suite to it).
    """
    patches = CalledPatches(monkeypatch)
    yield patches
    patches.check()


REGISTRY_CONN_ID = "aidol_registry"
REGISTRY_ENV_VAR = "AIRFLOW_CONN_AIDOL_REGISTRY"


@pytest.fixture
def sqlite_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The connection id of a SQLite registry database in a temporary file."""
    connection = {"conn_type": "sqlite", "host": str(tmp_path / "registry.db")}
    monkeypatch.setenv(REGISTRY_ENV_VAR, json.dumps(connection))
    return REGISTRY_CONN_ID


@pytest.fixture
def postgres_registry(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The connection id of the session's PostgreSQL database."""
    monkeypatch.setenv(REGISTRY_ENV_VAR, postgres_server.airflow_uri)
    return REGISTRY_CONN_ID


@pytest.fixture
def mysql_registry(mariadb_server: MariaDbServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The connection id of the session's MariaDB database (connection type ``mysql``)."""
    monkeypatch.setenv(REGISTRY_ENV_VAR, mariadb_server.airflow_uri)
    return REGISTRY_CONN_ID


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def registry_conn_id(request: pytest.FixtureRequest) -> str:
    """Each registry database in turn: SQLite, PostgreSQL, then MySQL (a MariaDB server)."""
    conn_id: str = request.getfixturevalue(f"{request.param}_registry")
    return conn_id


# The embedded AI-DOL server behind ``aidol_default``, for tests in this process and for DAG runs.
# Both build on the pytest plugin's ``aidol_default_connection``: a fresh server per test
# (``@pytest.mark.aidol_server(...)`` configures it) that ``aidol_default`` points at.

if TYPE_CHECKING:
    from airflow_provider_aidol.testing import AidolServer


@pytest.fixture
def aidol_default_server(
    aidol_default_connection: AidolServer, monkeypatch: pytest.MonkeyPatch
) -> AidolServer:
    """The embedded server behind ``aidol_default``, with fast retry waits: for calling the hook here."""
    from tests.aidol_default import point_connection

    point_connection(monkeypatch, aidol_default_connection)
    return aidol_default_connection


@pytest.fixture
def airflow_with_aidol_server(airflow_db: Path, aidol_default_connection: AidolServer) -> AidolServer:
    """A migrated Airflow metadata database for ``dag.test()`` runs, and the embedded server behind
    ``aidol_default`` (the connection as the plugin sets it) that the runs' tasks talk to."""
    return aidol_default_connection


@pytest.fixture
def conversation(aidol_default_connection: AidolServer) -> Iterator[str]:
    """The id of a conversation of ``agent-1`` with ``USER``, made on the server behind ``aidol_default``."""
    from airflow_provider_aidol.hooks.aidol import AidolHook
    from tests.aidol_default import USER

    hook = AidolHook()
    try:
        yield hook.create_conversation("agent-1", user_id=USER)
    finally:
        hook.close()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Leave what import and collection made out of the garbage collector's full passes."""
    import gc

    gc.collect()
    gc.freeze()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Delete this process's AIRFLOW_HOME (each pytest process, xdist's workers too, made its own)."""
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)
