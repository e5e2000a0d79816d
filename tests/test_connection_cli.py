"""The connection as docs/connection.md defines it, checked with the real ``airflow connections test``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_aidol.testing import AidolServer
    from airflow_provider_aidol.testing.dag_runner import AirflowHome

SECRET = "s3cr/t+k@y%"  # the characters that break an unencoded URI
ENABLED = {"AIRFLOW__CORE__TEST_CONNECTION": "Enabled"}


def connections_test(airflow: AirflowHome, uri: str, settings: dict[str, str]) -> str:
    result = airflow.airflow(
        "connections",
        "test",
        "aidol_default",
        env={"AIRFLOW_CONN_AIDOL_DEFAULT": uri, **settings},
        check=False,
    )
    return result.stdout + result.stderr


@pytest.mark.aidol_server(api_secret=SECRET)
def test_a_percent_encoded_uri_passes_with_test_connection_enabled(
    aidol_airflow: AirflowHome, aidol_server: AidolServer
):
    uri = aidol_server.connection_uri()
    assert "s3cr%2Ft%2Bk%40y%25" in uri

    assert "Connection success!" in connections_test(aidol_airflow, uri, ENABLED)
    assert aidol_server.count(path="/v1/config/options", http_status=200) == 1


@pytest.mark.aidol_server(api_secret=SECRET)
def test_the_same_secret_unencoded_is_not_a_usable_connection(
    aidol_airflow: AirflowHome, aidol_server: AidolServer
):
    uri = f"aidol://http://{aidol_server.api_key}:{SECRET}@127.0.0.1:{aidol_server.port}/?user_id=u"

    output = connections_test(aidol_airflow, uri, ENABLED)

    assert "Connection not found." in output, "what the warning in docs/connection.md describes"
    assert aidol_server.requests == []


def test_connection_testing_is_disabled_unless_the_documented_setting_enables_it(
    aidol_airflow: AirflowHome, aidol_server: AidolServer
):
    output = connections_test(aidol_airflow, aidol_server.connection_json(), {})

    assert "Testing connections is disabled in Airflow configuration" in output
    assert aidol_server.requests == []
