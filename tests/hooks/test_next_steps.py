"""What a failed task's log says: the error, then the same next step the connection test gives.

Each case runs against the embedded server over real HTTP (or a closed port): a wrong secret, a
Base URL nothing listens on, a rate limit that outlasts the retries, a used-up quota.
"""

from __future__ import annotations

import re

import pytest

from airflow_provider_aidol.exceptions import (
    AidolAuthError,
    AidolConnectionError,
    AidolQuotaExceededError,
    AidolRateLimitError,
    AidolRequestError,
)
from airflow_provider_aidol.hooks.aidol import AidolHook
from airflow_provider_aidol.testing.faults import Fault
from tests.aidol_default import point_connection
from tests.loopback import free_port


def failure(hook: AidolHook) -> AidolRequestError:
    """Create a conversation as a task would; return the error the task would end with."""
    with pytest.raises(AidolRequestError) as info:
        hook.create_conversation("agent-1")
    return info.value


def next_step(text: str) -> str:
    """The next step a message ends with."""
    found = re.search(r"Next step: (.+)$", text)
    assert found is not None, text
    return found.group(1)


def test_a_wrong_secret_says_to_check_key_secret_and_clock_as_the_connection_test_does(
    monkeypatch, aidol_default_server
):
    point_connection(monkeypatch, aidol_default_server, password="wrong-secret-value")
    error = failure(AidolHook())
    ok, tested = AidolHook().test_connection()
    assert isinstance(error, AidolAuthError)
    assert not ok
    assert "Invalid signature" in str(error)
    assert next_step(str(error)) == next_step(tested)
    assert "API Key (login) and API Secret (password), and this machine's clock" in str(error)
    assert "wrong-secret-value" not in str(error) + tested


def test_a_closed_port_names_the_base_url_and_no_class_of_the_provider(monkeypatch, aidol_default_server):
    base_url = f"http://127.0.0.1:{free_port()}"
    point_connection(monkeypatch, aidol_default_server, host=base_url)
    error = failure(AidolHook())
    ok, tested = AidolHook().test_connection()
    assert isinstance(error, AidolConnectionError)
    assert not ok
    assert tested.startswith(f"Cannot reach the Base URL {base_url}")
    assert f"check that the Base URL {base_url} (the connection's host and port) is right" in str(error)
    assert next_step(str(error)) == next_step(tested)
    assert "Connection refused" in str(error)
    assert "_Watched" not in str(error) + tested
    assert re.search(r"\w+\(host=", str(error)) is None, "no connection object's repr"


def test_a_rate_limit_that_outlasts_the_retries_says_how_to_pace(monkeypatch, aidol_default_server):
    point_connection(monkeypatch, aidol_default_server, max_retries=2)
    aidol_default_server.inject(Fault.RATE_LIMITED, times=3)
    error = failure(AidolHook())
    assert isinstance(error, AidolRateLimitError)
    assert aidol_default_server.count(path="/v1/chat/conversation") == 3
    assert "outlasted the hook's retries" in next_step(str(error))
    assert "'requests_per_second'" in str(error)
    assert "Next step" not in error.summary, "an attempt that is retried logs the error alone"


def test_a_used_up_quota_says_waiting_does_not_help_and_whom_to_ask(aidol_default_server):
    aidol_default_server.inject(Fault.QUOTA)
    error = failure(AidolHook())
    assert isinstance(error, AidolQuotaExceededError)
    assert "API key usage limit reached" in str(error)
    assert "ask the AI-DOL vendor for more quota or a new key" in next_step(str(error))


def test_the_next_step_survives_the_trip_through_a_trigger_event(monkeypatch, aidol_default_server):
    base_url = f"http://127.0.0.1:{free_port()}"
    point_connection(monkeypatch, aidol_default_server, host=base_url, max_retries=0)
    error = failure(AidolHook())
    rebuilt = AidolRequestError.from_payload(error.to_payload())
    assert str(rebuilt) == str(error)
    assert base_url in next_step(str(rebuilt))
