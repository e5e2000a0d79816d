"""Connection settings: every way to define an ``aidol`` connection reads the same, bad ones fail clearly."""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.sdk import Connection

from airflow_provider_aidol.connection import ConnectionSettings
from airflow_provider_aidol.get_provider_info import CONNECTION_FIELDS


def settings(**fields: Any) -> ConnectionSettings:
    values: dict[str, Any] = {
        "conn_type": "aidol",
        "host": "https://api.example.com",
        "login": "key",
        "password": "secret",
    }
    values.update(fields)
    return ConnectionSettings.from_connection(Connection(conn_id="my_aidol", **values))


def test_json_form_as_in_airflow_conn_env_var():
    conn = Connection.from_json(
        json.dumps(
            {
                "conn_type": "aidol",
                "host": "http://127.0.0.1:8765",
                "login": "key",
                "password": "secret",
                "extra": {"user_id": "u-1", "timeout": "12.5", "max_retries": 2},
            }
        ),
        conn_id="aidol_default",
    )
    read = ConnectionSettings.from_connection(conn)
    assert read.base_url == "http://127.0.0.1:8765"
    assert (read.api_key, read.api_secret, read.user_id) == ("key", "secret", "u-1")
    assert (read.timeout, read.max_retries) == (12.5, 2)


def test_uri_form_with_a_protocol_in_the_host():
    conn = Connection.from_uri("aidol://http://key:s%2Fecret@127.0.0.1:8765/?user_id=u-1", conn_id="x")
    read = ConnectionSettings.from_connection(conn)
    assert read.base_url == "http://127.0.0.1:8765"
    assert read.api_secret == "s/ecret"
    assert read.user_id == "u-1"


def test_uri_form_without_protocol_means_https():
    read = ConnectionSettings.from_connection(
        Connection.from_uri("aidol://key:secret@api.example.com", conn_id="x")
    )
    assert read.base_url == "https://api.example.com"
    assert read.user_id is None


def test_defaults_come_from_the_connection_form():
    read = settings()
    for name in ("timeout", "connect_timeout", "max_retries", "retry_max_seconds", "retry_wait_initial"):
        assert getattr(read, name) == CONNECTION_FIELDS[name]["schema"]["default"]
    assert read.requests_per_second is None


def test_legacy_prefixed_extra_keys_are_read():
    assert settings(extra=json.dumps({"extra__aidol__user_id": "u-9"})).user_id == "u-9"


def test_base_url_keeps_a_path_prefix_and_drops_the_trailing_slash():
    read = settings(host="https://gw.example.com/aidol/")
    assert read.base_url == "https://gw.example.com/aidol"
    assert read.base_path == "/aidol"


def test_port_field_is_added_when_the_host_has_none():
    assert settings(host="http://localhost", port=9000).base_url == "http://localhost:9000"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"host": None}, "no Base URL (host)"),
        ({"host": "  "}, "no Base URL (host)"),
        ({"login": None}, "no API Key (login)"),
        ({"password": ""}, "no API Secret (password)"),
        ({"host": "ftp://x.example.com"}, "Base URL (host) 'ftp://x.example.com'"),
        ({"host": "https://x.example.com?a=1"}, "no query"),
        ({"host": "https://x.example.com:99999"}, "bad port"),
        ({"extra": json.dumps({"timeout": "soon"})}, "extra field 'timeout' must be a number > 0"),
        ({"extra": json.dumps({"timeout": 0})}, "extra field 'timeout' must be a number > 0"),
        (
            {"extra": json.dumps({"connect_timeout": -1})},
            "extra field 'connect_timeout' must be a number > 0",
        ),
        ({"extra": json.dumps({"max_retries": 2.7})}, "extra field 'max_retries' must be a whole number"),
        ({"extra": json.dumps({"retry_max_seconds": "inf"})}, "extra field 'retry_max_seconds'"),
        ({"host": "https://user:pw@api.example.com"}, "must not hold a user or password"),
        ({"login": "key\x00x"}, "API Key (login) holds control characters"),
        ({"password": "sécret\u2603"}, "API Secret (password) holds control characters"),
        ({"extra": json.dumps({"max_retries": -1})}, "extra field 'max_retries' must be a whole number"),
        ({"extra": json.dumps({"max_retries": True})}, "extra field 'max_retries'"),
        ({"extra": json.dumps({"requests_per_second": 0})}, "'requests_per_second' must be a number > 0"),
    ],
)
def test_bad_connections_name_the_field_and_the_connection(fields, named):
    with pytest.raises(ValueError, match="my_aidol") as caught:
        settings(**fields)
    assert named in str(caught.value)


def test_credentials_lose_the_whitespace_a_secrets_file_leaves():
    read = settings(login=" key-1\n", password="secret-1\n")
    assert (read.api_key, read.api_secret) == ("key-1", "secret-1")


def test_bad_credentials_are_never_repeated_in_the_error():
    with pytest.raises(ValueError, match="API Secret") as caught:
        settings(password="very-secret\x01")
    assert "very-secret" not in str(caught.value)


def test_uri_path_prefix_is_kept():
    conn = Connection.from_uri("aidol://https://key:secret@gw.example.com/aidol?user_id=u", conn_id="x")
    assert ConnectionSettings.from_connection(conn).base_url == "https://gw.example.com/aidol"


def test_defaults_are_the_documented_ones():
    read = settings()
    assert (read.timeout, read.connect_timeout, read.max_retries) == (30, 10, 5)
    assert (read.retry_max_seconds, read.retry_wait_initial, read.retry_wait_max) == (120, 0.5, 30)


def test_repr_never_shows_key_or_secret():
    text = repr(settings(login="KEY-123", password="SECRET-456"))
    assert "KEY-123" not in text
    assert "SECRET-456" not in text
    assert "https://api.example.com" in text
