"""AidolHook against the embedded AI-DOL server over real HTTP.

The server verifies every request with its own, separately written verifier, so an accepted
request is one that an independent implementation of the spec agrees with.
"""

from __future__ import annotations

import functools
import random
import threading
import time
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest

from airflow_provider_aidol.client.ratelimit import RateLimiter
from airflow_provider_aidol.client.signing import to_json
from airflow_provider_aidol.exceptions import (
    AidolAuthError,
    AidolConnectionError,
    AidolNotFoundError,
    AidolResponseError,
    AidolServerError,
    AidolValidationError,
)
from airflow_provider_aidol.hooks import base
from airflow_provider_aidol.hooks.aidol import AidolHook
from airflow_provider_aidol.testing import Fault
from tests.aidol_default import point_connection

CONVERSATION = "/v1/chat/conversation"


class RedirectServer:
    """A real loopback HTTP server that answers every request with a 308 to ``target``."""

    def __init__(self, target: str) -> None:
        class Redirect(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.send_response(308)
                self.send_header("Location", target + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> RedirectServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_create_conversation_returns_the_uuid_the_server_recorded(hook, aidol_default_server):
    conversation_id = hook.create_conversation("agent-1")
    assert str(uuid.UUID(conversation_id)) == conversation_id
    [created] = aidol_default_server.conversations
    assert (created.conversation_id, created.agent_id, created.user_id) == (
        conversation_id,
        "agent-1",
        "test-user",
    )


def test_per_call_user_id_overrides_the_connection(hook, aidol_default_server):
    hook.create_conversation("agent-2", user_id="alice")
    assert [c.user_id for c in aidol_default_server.conversations] == ["alice"]


def test_every_attempt_has_a_fresh_request_id_and_one_session_is_reused(hook, aidol_default_server):
    for _ in range(3):
        hook.create_conversation("agent-1")
    request_ids = [record.request_id for record in aidol_default_server.requests]
    assert len(set(request_ids)) == 3
    assert all(len(request_id) == 32 for request_id in request_ids)
    assert hook.get_conn() is hook.session


def test_query_parameters_are_signed_and_sent_as_signed(hook, aidol_default_server):
    params = {"size": 20, "flag": True, "keyword": "", "q": " 你好 ", "none": None}
    hook.request("POST", "/v1/config/options", json={"namespace": "custom_agent"}, params=params)
    [record] = aidol_default_server.requests
    assert record.http_status == 200, record.message
    assert parse_qs(record.query, keep_blank_values=True) == {
        "size": ["20"],
        "flag": ["true"],
        "keyword": [""],
        "q": [" 你好 "],
    }


def test_the_body_on_the_wire_is_exactly_the_signed_serialisation(hook, aidol_default_server):
    body = {"namespace": "custom_image", "language": "en", "extra": {"ratio": 1.0, "tags": ["é"]}}
    hook.request("POST", "/v1/config/options", json=body)
    [record] = aidol_default_server.requests
    assert record.body == to_json(body).encode()
    assert (
        record.body
        == '{"namespace":"custom_image","language":"en","extra":{"ratio":1,"tags":["é"]}}'.encode()
    )


def test_generic_request_returns_data(hook):
    options = hook.request("POST", "/v1/config/options", json={"namespace": "custom_image", "language": "en"})
    assert {"Pose", "Background", "Outfit"} <= set(options)


@pytest.mark.parametrize(
    ("agent_id", "user_id", "named"),
    [
        ("", None, "agent_id"),
        ("  ", None, "agent_id"),
        (None, None, "agent_id"),
        ("agent-1", "", "user_id"),
        ("agent-1", " bob ", "user_id must be sent as an HTTP header"),
        ("agent-1", "bob\nX-Evil: 1", "user_id must be sent as an HTTP header"),
        ("agent-1", "用户", "user_id must be sent as an HTTP header"),
    ],
)
def test_bad_input_is_refused_before_any_request(hook, aidol_default_server, agent_id, user_id, named):
    with pytest.raises(ValueError, match=named):
        hook.create_conversation(agent_id, user_id=user_id)
    assert aidol_default_server.requests == []


LOOP: dict[str, object] = {}
LOOP["self"] = LOOP  # a value that contains itself nests without end


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"method": "POST", "path": "v1/x"}, "path must start with '/'"),
        ({"method": "POST", "path": "/v1/x?a=1"}, "pass query parameters in params="),
        ({"method": "TRACE", "path": "/v1/x"}, "method must be one of"),
        ({"method": "POST", "path": "/v1/x", "json": ["a"]}, "json must be a dict"),
        ({"method": "POST", "path": "/v1/x", "json": {"at": {1, 2}}}, "json field 'at'"),
        ({"method": "POST", "path": "/v1/x", "json": {"n": float("nan")}}, "json field 'n'"),
        ({"method": "GET", "path": "/v1/x", "params": {"ids": [1, 2]}}, "params field 'ids'"),
        ({"method": "GET", "path": "/v1/../admin"}, "path must not hold '.' or '..' segments"),
        (
            {"method": "POST", "path": "/v1/x", "json": {"loop": LOOP}},
            "json field 'loop': arrays and objects nest",
        ),
    ],
)
def test_bad_generic_requests_are_refused_before_sending(hook, aidol_default_server, kwargs, named):
    with pytest.raises(ValueError, match=named):
        hook.request(**kwargs)
    assert aidol_default_server.requests == []


def test_missing_user_id_names_the_extra_field_and_connection(monkeypatch, aidol_default_server):
    point_connection(monkeypatch, aidol_default_server, without=("user_id",))
    with pytest.raises(ValueError, match="extra field 'user_id' on connection 'aidol_default'"):
        AidolHook().create_conversation("agent-1")
    assert aidol_default_server.requests == []


# --- typed errors ---------------------------------------------------------------------------


def test_unknown_agent_is_not_found_and_not_retried(hook, aidol_default_server):
    with pytest.raises(AidolNotFoundError) as caught:
        hook.create_conversation("no-such-agent")
    assert (caught.value.http_status, caught.value.code, caught.value.message) == (
        200,
        10404,
        "Agent not found (agent_id 'no-such-agent', user_id 'test-user')",
    )
    assert caught.value.trace_id is not None
    assert len(caught.value.trace_id) == 32
    assert aidol_default_server.count(path=CONVERSATION) == 1


def test_missing_agent_id_from_the_server_is_a_validation_error(hook, aidol_default_server):
    with pytest.raises(AidolValidationError, match="agentId is required"):
        hook.request("POST", CONVERSATION, json={"agentId": "   "})
    assert aidol_default_server.count() == 1


def test_wrong_secret_is_an_auth_error_that_names_no_secret(monkeypatch, aidol_default_server):
    point_connection(monkeypatch, aidol_default_server, password="wrong-secret-value")
    hook = AidolHook()
    with pytest.raises(AidolAuthError) as caught:
        hook.create_conversation("agent-1")
    error = caught.value
    assert (error.http_status, error.message) == (401, "Invalid signature")
    assert aidol_default_server.count() == 1
    for text in (str(error), repr(error), repr(hook), repr(hook.settings)):
        assert "wrong-secret-value" not in text
        assert aidol_default_server.api_key not in text


def test_key_and_secret_are_registered_with_the_secret_masker(hook, aidol_default_server):
    try:  # what Airflow applies to task logs: 3.1+
        from airflow.sdk._shared.secrets_masker import redact
    except ImportError:  # Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import redact  # type: ignore[no-redef]

    hook.settings  # noqa: B018 - reading the connection registers the masks
    assert (
        redact(f"key {aidol_default_server.api_key} secret {aidol_default_server.api_secret}")
        == "key *** secret ***"
    )


def test_wrong_key_is_an_auth_error(monkeypatch, aidol_default_server):
    point_connection(monkeypatch, aidol_default_server, login="not-a-key")
    with pytest.raises(AidolAuthError, match="Invalid API key"):
        AidolHook().create_conversation("agent-1")


# --- retries ----------------------------------------------------------------------------------


def recording_hook(monkeypatch, server, **extra) -> tuple[AidolHook, list[float]]:
    """A hook on a connection with ``extra`` tuning whose retry waits are recorded, not slept."""
    point_connection(monkeypatch, server, **extra)
    hook, waits = AidolHook(), list[float]()
    hook.sleep = waits.append
    return hook, waits


@pytest.mark.parametrize(
    ("status", "retry_after", "longest_wait", "waited"),
    [(429, 2, 30, 2.0), (503, 2, 30, 2.0), (429, 3600, 5, 5.0)],
    ids=["rate-limit", "gateway-error", "capped-by-longest-retry-wait"],
)
def test_retry_after_is_honoured(
    monkeypatch, aidol_default_server, status, retry_after, longest_wait, waited
):
    hook, waits = recording_hook(monkeypatch, aidol_default_server, retry_wait_max=longest_wait)
    aidol_default_server.inject(Fault.STATUS, status=status, retry_after=retry_after)
    hook.create_conversation("agent-1")
    assert waits == [waited]


def test_backoff_grows_exponentially_with_full_jitter(monkeypatch, aidol_default_server):
    hook, waits = recording_hook(
        monkeypatch, aidol_default_server, retry_wait_initial=1, retry_wait_max=100, max_retries=8
    )
    aidol_default_server.inject(Fault.STATUS, status=503, times=8)
    random.seed(2026)  # the jitter is random.uniform(0, cap); seeded so the test is exact
    hook.create_conversation("agent-1")
    caps = [min(2**attempt, 100) for attempt in range(8)]  # 1, 2, 4, ... seconds
    assert len(waits) == 8
    assert all(0 <= wait <= cap for wait, cap in zip(waits, caps, strict=True))
    assert max(waits[4:]) > caps[3], "later waits must be able to exceed earlier caps"


def test_retry_after_as_an_http_date(monkeypatch, aidol_default_server):
    hook, waits = recording_hook(monkeypatch, aidol_default_server, retry_wait_max=30)
    aidol_default_server.inject(
        Fault.STATUS, status=429, retry_after=formatdate(time.time() + 3, usegmt=True)
    )
    hook.create_conversation("agent-1")
    [wait] = waits
    assert 1 < wait <= 3


def test_no_retry_starts_beyond_the_time_budget(monkeypatch, aidol_default_server):
    hook, waits = recording_hook(monkeypatch, aidol_default_server, retry_wait_max=30, retry_max_seconds=3)
    aidol_default_server.inject(Fault.STATUS, status=503, retry_after=5, times=3)
    with pytest.raises(AidolServerError):
        hook.create_conversation("agent-1")
    assert waits == []
    assert aidol_default_server.count() == 1


def test_retried_warning_names_attempt_reason_and_trace_id(hook, aidol_default_server, capsys):
    aidol_default_server.inject(Fault.RATE_LIMITED)
    hook.create_conversation("agent-1")
    # Airflow 3.1+ logs through structlog to the console ("[warning ]"), 3.0 through logging ("WARNING").
    [warning] = [line for line in capsys.readouterr().out.splitlines() if "attempt" in line]
    assert "warning" in warning.lower()
    assert "attempt 1 failed" in warning
    assert "Too many requests" in warning
    assert aidol_default_server.requests[0].trace_id in warning


def test_connection_refused_is_a_connection_error(monkeypatch, aidol_default_server):
    point_connection(
        monkeypatch, aidol_default_server, host="http://127.0.0.1:9", max_retries=1, retry_wait_initial=0.01
    )
    with pytest.raises(AidolConnectionError) as caught:
        AidolHook().create_conversation("agent-1")
    assert caught.value.http_status is None
    assert "Max retries exceeded" not in str(caught.value)


def test_a_connection_dropped_after_the_server_acted_leaves_an_orphan(hook, aidol_default_server):
    aidol_default_server.inject(Fault.DROP_AFTER_CREATE)
    conversation_id = hook.create_conversation("agent-1")
    assert len(aidol_default_server.conversations) == 2, "documented: the retry creates a second conversation"
    assert conversation_id == aidol_default_server.conversations[1].conversation_id


def test_redirects_are_refused_not_followed(monkeypatch, aidol_default_server):
    redirect = RedirectServer(aidol_default_server.url)
    point_connection(monkeypatch, aidol_default_server, host=redirect.url)
    with redirect, pytest.raises(AidolResponseError, match="redirected to") as caught:
        AidolHook().create_conversation("agent-1")
    assert caught.value.http_status == 308
    assert aidol_default_server.requests == []


def test_a_netrc_entry_does_not_replace_the_bearer_key(monkeypatch, aidol_default_server, tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-password\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    AidolHook().create_conversation("agent-1")
    assert len(aidol_default_server.conversations) == 1


# --- clock skew -----------------------------------------------------------------------------


def test_clock_skew_is_corrected_once_and_remembered(hook, aidol_default_server):
    aidol_default_server.clock_offset = 600
    hook.create_conversation("agent-1")
    assert [r.http_status for r in aidol_default_server.requests] == [401, 200]
    hook.create_conversation("agent-2")
    assert [r.http_status for r in aidol_default_server.requests] == [401, 200, 200]


def test_small_skew_is_not_taken_for_clock_trouble(hook, aidol_default_server):
    aidol_default_server.clock_offset = 30
    aidol_default_server.inject(Fault.UNAUTHORIZED)
    with pytest.raises(AidolAuthError):
        hook.create_conversation("agent-1")
    assert aidol_default_server.count() == 1


# --- pacing -----------------------------------------------------------------------------------


def test_requests_per_second_paces_calls(monkeypatch, must_call, aidol_default_server):
    # The limiter reads a stopped clock, so a slow machine cannot make a slot come by itself.
    must_call.setattr(base, "RateLimiter", functools.partial(RateLimiter, clock=lambda: 1000.0))
    hook, waits = recording_hook(monkeypatch, aidol_default_server, requests_per_second=5)
    for _ in range(3):
        hook.create_conversation("agent-1")
    # Slots are 0.2 s apart; the recorded waits are not slept, so the third waits for its slot 0.4 s on.
    assert waits == pytest.approx([0.2, 0.4])


def test_retries_and_failures_never_log_the_credentials(monkeypatch, aidol_default_server, capsys):
    hook, _ = recording_hook(monkeypatch, aidol_default_server)
    aidol_default_server.inject(Fault.STATUS, status=503, times=2)
    aidol_default_server.inject(Fault.RATE_LIMITED)
    hook.create_conversation("agent-1")
    aidol_default_server.inject(Fault.HTML, status=500)
    with pytest.raises(AidolServerError):
        hook.create_conversation("agent-1")
    output = capsys.readouterr()
    assert "attempt 3 failed" in output.out
    for secret in (aidol_default_server.api_key, aidol_default_server.api_secret):
        assert secret not in output.out + output.err


def test_a_base_url_without_scheme_means_https_and_a_tls_failure_says_so(monkeypatch, aidol_default_server):
    point_connection(
        monkeypatch,
        aidol_default_server,
        host=aidol_default_server.url.removeprefix("http://"),
        max_retries=2,
    )
    with pytest.raises(AidolConnectionError) as caught:
        AidolHook().create_conversation("agent-1")
    https_url = aidol_default_server.url.replace("http://", "https://")
    assert str(caught.value).startswith(
        f"POST /v1/chat/conversation: TLS failed talking to {https_url} (a Base URL without http:// or "
        "https:// means https; a server that speaks plain HTTP needs http:// in the Base URL)"
    )
    assert caught.value.retryable is False
    assert aidol_default_server.count() == 0
