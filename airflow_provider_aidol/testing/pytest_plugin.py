"""Pytest fixtures for the embedded AI-DOL server, loaded through the ``pytest11`` entry point.

Imported by pytest in every project that installs the provider, so the server itself
(FastAPI, uvicorn) is only imported when a fixture is used, and Airflow never is: DAG runs
happen in child processes (see :mod:`airflow_provider_aidol.testing.dag_runner`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_aidol.testing import CONNECTION_ENV_VAR

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from airflow_provider_aidol.testing.dag_runner import AirflowHome
    from airflow_provider_aidol.testing.server import AidolServer


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``aidol_server`` marker."""
    config.addinivalue_line(
        "markers", "aidol_server(**kwargs): keyword arguments for the AidolServer of the aidol_server fixture"
    )


@pytest.fixture
def aidol_server(request: pytest.FixtureRequest) -> Iterator[AidolServer]:
    """Yield a fresh running AidolServer, configured by an ``aidol_server`` marker if present."""
    from airflow_provider_aidol.testing.server import AidolServer

    marker = request.node.get_closest_marker("aidol_server")
    with AidolServer(**(marker.kwargs if marker else {})) as server:
        yield server


@pytest.fixture
def aidol_default_connection(aidol_server: AidolServer, monkeypatch: pytest.MonkeyPatch) -> AidolServer:
    """Point Airflow's ``aidol_default`` connection at the ``aidol_server`` fixture's server."""
    monkeypatch.setenv(CONNECTION_ENV_VAR, aidol_server.connection_json())
    return aidol_server


def run_temp_dir(config: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the temporary folder of the whole test run, which pytest-xdist's workers share."""
    base = tmp_path_factory.getbasetemp()
    # An xdist worker's config has ``workerinput`` (a pytest started by a test inside a worker
    # inherits PYTEST_XDIST_WORKER from the environment, but is a session of its own).
    if hasattr(config, "workerinput"):
        base = base.parent  # the run's folder, above each worker's own
    return base


@pytest.fixture(scope="session")
def aidol_migrated_airflow_home(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AirflowHome:
    """Return a temporary AIRFLOW_HOME migrated once per session by ``airflow db migrate``.

    Under pytest-xdist, once for the whole run: the workers share one home in the run's
    temporary folder, and the first worker to need it migrates it (under a file lock).
    """
    from airflow_provider_aidol.testing.dag_runner import AirflowHome

    home = AirflowHome(run_temp_dir(request.config, tmp_path_factory) / "aidol-airflow-template")
    home.migrate_once()
    return home


@pytest.fixture
def aidol_airflow(
    aidol_migrated_airflow_home: AirflowHome, aidol_default_connection: AidolServer, tmp_path: Path
) -> AirflowHome:
    """Return a fresh temporary AIRFLOW_HOME whose ``aidol_default`` connection is ``aidol_server``.

    Its database is a copy of one migrated with the real ``airflow db migrate``, so each test
    starts empty (no runs, Variables or XComs of earlier tests). Run a DAG with
    ``aidol_airflow.dags_test(dag_id, dag_file_or_folder)``; the server is ``aidol_server``.
    ``~/airflow`` and the test process's own Airflow settings are never touched.
    """
    from airflow_provider_aidol.testing.dag_runner import AirflowHome

    home = AirflowHome.for_server(tmp_path / "airflow-home", aidol_default_connection)
    home.copy_database_from(aidol_migrated_airflow_home)
    return home
