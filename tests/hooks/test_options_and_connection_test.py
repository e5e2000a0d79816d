"""Read-only calls: asset options, and the connection test behind the UI's "Test" button."""

from __future__ import annotations

import pytest

from airflow_provider_aidol.hooks.aidol import AidolHook
from tests.aidol_default import point_connection


def test_options_map_categories_to_items(hook, aidol_default_server):
    options = hook.get_options("custom_image", gender="female", language="en")
    assert {"Pose", "Background", "Outfit"} <= set(options)
    assert all({"code", "label", "previewUrl"} <= set(item) for items in options.values() for item in items)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [({"namespace": ""}, "namespace"), ({"namespace": "custom_image", "gender": "other"}, "gender")],
)
def test_bad_option_queries_are_refused_before_sending(hook, aidol_default_server, kwargs, named):
    with pytest.raises(ValueError, match=named):
        hook.get_options(**kwargs)
    assert aidol_default_server.requests == []


def test_connection_test_passes_without_creating_anything(hook, aidol_default_server):
    ok, message = hook.test_connection()
    assert ok, message
    assert message.startswith(f"Connected to {aidol_default_server.url}: key, signature and clock accepted")
    assert [record.path for record in aidol_default_server.requests] == ["/v1/config/options"]
    assert aidol_default_server.conversations == []


def test_connection_test_reports_a_wrong_secret_without_showing_it(monkeypatch, aidol_default_server):
    point_connection(monkeypatch, aidol_default_server, password="wrong-secret-value")
    ok, message = AidolHook().test_connection()
    assert not ok
    assert message.startswith("Authentication failed")
    assert "Invalid signature" in message
    assert "wrong-secret-value" not in message


def test_connection_test_corrects_and_reports_a_skewed_clock(hook, aidol_default_server):
    aidol_default_server.clock_offset = 600
    ok, message = hook.test_connection()
    assert ok, message
    assert "clock is +600 s off the server's" in message


def test_connection_test_reports_an_unreachable_host_at_once(monkeypatch, aidol_default_server):
    point_connection(monkeypatch, aidol_default_server, host="http://127.0.0.1:9")
    hook, waits = AidolHook(), list[float]()
    hook.sleep = waits.append
    ok, message = hook.test_connection()
    assert not ok
    assert message.startswith("Cannot reach the Base URL http://127.0.0.1:9")
    assert waits == [], "the connection test does not retry"


def test_connection_test_names_a_missing_field(monkeypatch, aidol_default_server):
    point_connection(monkeypatch, aidol_default_server, login="")
    ok, message = AidolHook().test_connection()
    assert not ok
    assert "has no API Key (login)" in message


def test_connection_test_fails_with_the_fix_for_a_connection_without_user_id(
    monkeypatch, aidol_default_server
):
    point_connection(monkeypatch, aidol_default_server, without=("user_id",))
    ok, message = AidolHook().test_connection()
    assert not ok
    assert "Key, signature and clock are accepted" in message
    assert "no User ID (extra 'user_id')" in message
    assert [record.user_id for record in aidol_default_server.requests] == ["airflow-connection-test"]
