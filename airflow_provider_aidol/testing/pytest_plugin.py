"""Pytest fixtures for the embedded AI-DOL server, loaded through the ``pytest11`` entry point.

Imported by pytest in every project that installs the provider, so the server itself
(FastAPI, uvicorn) is only imported when a fixture is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_aidol.testing import CONNECTION_ENV_VAR

if TYPE_CHECKING:
    from collections.abc import Iterator

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
