"""The pytest plugin's fixtures and marker, used here as any project would use them."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import requests

from tests.aidol_default import from_json

if TYPE_CHECKING:
    from airflow_provider_aidol.testing import AidolServer


def test_plugin_is_loaded_through_its_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("aidol")
    assert any(line.startswith("aidol_server(") for line in pytestconfig.getini("markers"))


def test_the_plugin_imports_nothing_but_itself_until_a_fixture_is_used() -> None:
    # pytest imports the plugin in every project that installs the provider.
    script = (
        "import sys, pytest; before = set(sys.modules); "
        "import airflow_provider_aidol.testing.pytest_plugin; "
        "print(sorted(set(sys.modules) - before))"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == str(
        [
            "airflow_provider_aidol",
            "airflow_provider_aidol.testing",
            "airflow_provider_aidol.testing.pytest_plugin",
        ]
    )


def test_aidol_server_is_a_running_server_with_defaults(aidol_server: AidolServer) -> None:
    assert aidol_server.running
    assert (aidol_server.api_key, aidol_server.api_secret, aidol_server.user_id) == (
        "test-api-key",
        "test-api-secret",
        "test-user",
    )
    assert requests.post(f"{aidol_server.url}/nowhere", timeout=5).json()["code"] == 10404


@pytest.mark.aidol_server(api_key="marker-key", user_id="marker-user", quota=3)
def test_marker_configures_aidol_server(aidol_server: AidolServer) -> None:
    assert (aidol_server.api_key, aidol_server.user_id, aidol_server.quota) == (
        "marker-key",
        "marker-user",
        3,
    )


def test_aidol_default_connection_points_airflow_at_the_server(aidol_default_connection: AidolServer) -> None:
    assert os.environ["AIRFLOW_CONN_AIDOL_DEFAULT"] == aidol_default_connection.connection_json()
    connection = from_json(os.environ["AIRFLOW_CONN_AIDOL_DEFAULT"], conn_id="aidol_default")
    assert connection.host == aidol_default_connection.url
