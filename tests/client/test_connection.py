"""Connection settings: every way to define an ``aidol`` connection reads the same, bad ones fail clearly."""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.sdk import Connection

from airflow_provider_aidol.client.connection import ConnectionSettings
from airflow_provider_aidol.constants import CONNECTION_FIELDS
from tests.aidol_default import from_json, from_uri


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
    conn = from_json(
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
    conn = from_uri("aidol://http://key:s%2Fecret@127.0.0.1:8765/?user_id=u-1", conn_id="x")
    read = ConnectionSettings.from_connection(conn)
    assert read.base_url == "http://127.0.0.1:8765"
    assert read.api_secret == "s/ecret"
    assert read.user_id == "u-1"


def test_uri_form_without_protocol_means_https():
    read = ConnectionSettings.from_connection(from_uri("aidol://key:secret@api.example.com", conn_id="x"))
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
    conn = from_uri("aidol://https://key:secret@gw.example.com/aidol?user_id=u", conn_id="x")
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


# --- hostile or mistaken values: a ValueError naming the field, never a raw exception -------------


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ("[1, 2]", 'the extra must be a JSON object such as {"user_id": "user-123"}, got a JSON list'),
        ("5", 'the extra must be a JSON object such as {"user_id": "user-123"}, got a JSON int'),
        ('"user-1"', "got a JSON str"),
    ],
)
def test_an_extra_that_is_not_a_json_object_is_refused(extra, named):
    with pytest.raises(ValueError, match="my_aidol") as caught:
        settings(extra=extra)
    assert named in str(caught.value)


def test_an_empty_extra_means_the_defaults():
    assert settings(extra="null").timeout == CONNECTION_FIELDS["timeout"]["schema"]["default"]


@pytest.mark.parametrize(
    "name",
    ["timeout", "image_timeout", "connect_timeout", "retry_max_seconds", "retry_wait_max", "deadline_margin"],
)
def test_times_beyond_a_day_are_refused(name):
    with pytest.raises(
        ValueError, match=f"extra field '{name}' must be a number .* and at most 86400, got 1e"
    ):
        settings(extra=json.dumps({name: 1e308}))


def test_max_retries_is_bounded():
    with pytest.raises(
        ValueError, match="extra field 'max_retries' must be a whole number >= 0 and at most 100"
    ):
        settings(extra=json.dumps({"max_retries": 10**9}))


def test_a_pace_slower_than_one_request_a_day_is_refused():
    with pytest.raises(ValueError, match="'requests_per_second' must be at least 1/86400"):
        settings(extra=json.dumps({"requests_per_second": 1e-300}))


@pytest.mark.parametrize("user_id", [{"id": "u"}, ["u"], True])
def test_a_user_id_extra_that_is_not_text_is_refused(user_id):
    with pytest.raises(
        ValueError, match="extra field 'user_id' must be a string such as \"user-123\", got a "
    ):
        settings(extra=json.dumps({"user_id": user_id}))


def test_a_numeric_user_id_extra_is_read_as_text():
    assert settings(extra=json.dumps({"user_id": 12345})).user_id == "12345"


def test_the_answer_deadline_margin_defaults_to_30_seconds():
    assert settings().deadline_margin == 30 == CONNECTION_FIELDS["deadline_margin"]["schema"]["default"]
    assert settings(extra=json.dumps({"deadline_margin": 0})).deadline_margin == 0


@pytest.mark.parametrize(
    "fields", [{"host": "http://localhost:0"}, {"host": "http://localhost", "port": 0}, {"port": 70000}]
)
def test_port_zero_or_out_of_range_is_refused(fields):
    with pytest.raises(ValueError, match="bad port"):
        settings(**fields)


def test_dot_segments_in_the_base_url_are_refused():
    with pytest.raises(ValueError, match=r"must not hold '\.' or '\.\.' path segments"):
        settings(host="https://gw.example.com/aidol/../v2")


#: Credentials full of what escaping, quoting and URL parsing treat specially.
KEY = "k\\e\"y'  %2F/+@\u00e9\u00a3-Key9"
SECRET = "s3\\\"cr'  e+t/%@\u00f8\u00a7\u00dc-Sec9"


@pytest.mark.parametrize(
    "host",
    [
        f"https://{KEY}:{SECRET}@api.example.com:99999",
        f"https://{KEY}:{SECRET}@api.example.com:0",
        f"ftp://{KEY}:{SECRET}@api.example.com",
        f"https://{KEY}:{SECRET}@api.example.com?a=1",
        f"{KEY}:{SECRET}@api.example.com",
        f"https://api.example.com/{SECRET}?q",
        f"https://api.example.com:{KEY}",
    ],
)
def test_connection_checks_never_repeat_a_credential(host):
    with pytest.raises(ValueError, match="my_aidol") as caught:
        settings(host=host, login=KEY, password=SECRET)
    assert_no_run_of(KEY, SECRET, in_text=str(caught.value))


def assert_no_run_of(*credentials: str, in_text: str, run: int = 6) -> None:
    """Fail if any ``run`` characters in a row of a credential appear in ``in_text``."""
    for credential in credentials:
        for start in range(len(credential) - run + 1):
            assert credential[start : start + run] not in in_text, (credential[start : start + run], in_text)


def test_a_credential_pasted_into_the_base_url_is_not_repeated_either():
    secret = SECRET.replace("@", "")
    for host in (f"https://api.example.com:99999/{secret}", f"ftp://api.example.com/{secret}"):
        with pytest.raises(ValueError, match="my_aidol") as caught:
            settings(host=host, login=KEY, password=secret)
        assert_no_run_of(secret, in_text=str(caught.value))


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"max_requests_per_day": -1}, "max_requests_per_day"),
        ({"max_requests_per_day": 2.5}, "max_requests_per_day"),
        ({"max_images_per_day": "many"}, "max_images_per_day"),
        ({"quota_timezone": "Mars/Olympus"}, "quota_timezone"),
        ({"price_per_request": "nan", "currency": "USD"}, "price_per_request"),
        ({"price_per_image": -0.5, "currency": "USD"}, "price_per_image"),
        ({"price_per_request": float("inf"), "currency": "USD"}, "price_per_request"),
        ({"price_per_request": 0.01, "currency": "XYZ"}, "currency"),
        ({"price_per_request": 0.01}, "currency"),
    ],
)
def test_a_bad_cap_price_currency_or_time_zone_is_refused_naming_the_field(extra, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        settings(extra=json.dumps(extra))


def test_caps_prices_and_time_zone_are_read_from_the_extra():
    read = settings(
        extra=json.dumps(
            {
                "max_requests_per_day": 500,
                "max_images_per_day": "20",
                "quota_timezone": "Asia/Shanghai",
                "price_per_request": "0.002",
                "price_per_image": 0.04,
                "currency": "usd",
            }
        )
    )
    assert (read.max_requests_per_day, read.max_images_per_day, read.quota_timezone) == (
        500,
        20,
        "Asia/Shanghai",
    )
    assert read.prices is not None
    assert (read.prices.per_request, read.prices.per_image, read.prices.currency) == (0.002, 0.04, "USD")
    assert read.prices.cost(requests=10, images=2) == 0.1
    assert settings().has_daily_cap is False
    assert settings().quota_timezone == "UTC"
    assert settings().prices is None
