"""Authentication and request-shape rules, observed over real HTTP."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from .signed_client import assert_error, wire_json

if TYPE_CHECKING:
    from airflow_provider_aidol.testing import AidolServer

    from .signed_client import SignedClient

CONVERSATION = "/v1/chat/conversation"
BODY = {"agentId": "agent-1"}


def test_signed_request_gets_a_success_envelope(client: SignedClient) -> None:
    response = client.post(CONVERSATION, BODY)
    assert response.status_code == 200
    envelope = response.json()
    assert (envelope["code"], envelope["success"], envelope["message"]) == (10200, True, "OK")
    assert set(envelope) == {"code", "success", "message", "data", "traceId", "timestamp"}


@pytest.mark.parametrize("name", ["Authorization", "X-Timestamp", "X-Signature", "X-Request-ID", "X-User-ID"])
def test_missing_header_is_a_401_naming_it(
    client: SignedClient, clean_shared_server: AidolServer, name: str
) -> None:
    response = client.post(CONVERSATION, BODY, override={name: None})
    assert_error(response, 401, 10401, f"Missing required header: {name}")
    assert clean_shared_server.conversations == []


def test_empty_header_counts_as_missing(client: SignedClient) -> None:
    response = client.post(CONVERSATION, BODY, override={"X-User-ID": ""})
    assert_error(response, 401, 10401, "Missing required header: X-User-ID")


def test_unknown_api_key_is_rejected(client: SignedClient) -> None:
    response = client.post(CONVERSATION, BODY, override={"Authorization": "Bearer not-the-key"})
    assert_error(response, 401, 10401, "Invalid API key")


def test_timestamp_must_be_integer_seconds(client: SignedClient) -> None:
    milliseconds = str(int(time.time() * 1000))
    response = client.post(CONVERSATION, BODY, override={"X-Timestamp": milliseconds})
    assert_error(response, 401, 10401, "Request timestamp expired")


@pytest.mark.aidol_server(clock_offset=-301)
def test_client_clock_ahead_of_the_server_by_over_five_minutes_is_expired(fresh_client: SignedClient) -> None:
    assert_error(fresh_client.post(CONVERSATION, BODY), 401, 10401, "Request timestamp expired")


@pytest.mark.aidol_server(clock_offset=250)
def test_clock_skew_within_five_minutes_is_accepted(fresh_client: SignedClient) -> None:
    assert fresh_client.post(CONVERSATION, BODY).json()["success"] is True


def test_clock_offset_can_change_while_running(fresh_client: SignedClient) -> None:
    fresh_client.server.clock_offset = 3600
    assert_error(fresh_client.post(CONVERSATION, BODY), 401, 10401, "Request timestamp expired")
    fresh_client.server.clock_offset = 0
    assert fresh_client.post(CONVERSATION, BODY).json()["success"] is True


def test_signature_by_another_secret_is_rejected(client: SignedClient) -> None:
    response = client.post(CONVERSATION, BODY, override={"X-Signature": "0" * 64})
    assert_error(response, 401, 10401, "Invalid signature")


def test_uppercase_signature_is_rejected(client: SignedClient) -> None:
    headers = client.signed_headers(CONVERSATION, BODY)
    headers["X-Signature"] = headers["X-Signature"].upper()
    assert_error(client.post(CONVERSATION, BODY, override=headers), 401, 10401, "Invalid signature")


def test_body_changed_after_signing_is_rejected(
    client: SignedClient, clean_shared_server: AidolServer
) -> None:
    response = client.post(CONVERSATION, BODY, data=wire_json({"agentId": "agent-2"}))
    assert_error(response, 401, 10401, "Invalid signature")
    assert clean_shared_server.conversations == []


def test_query_string_is_signed(client: SignedClient) -> None:
    assert client.post(CONVERSATION, BODY, query="trace=%E4%BD%A0").json()["success"] is True
    headers = client.signed_headers(CONVERSATION, BODY)
    response = client.session.post(
        f"{client.server.url}{CONVERSATION}?trace=x", data=wire_json(BODY), headers=headers
    )
    assert_error(response, 401, 10401, "Invalid signature")


def test_strings_are_signed_trimmed_but_sent_as_given(
    client: SignedClient, clean_shared_server: AidolServer
) -> None:
    assert client.post(CONVERSATION, {"agentId": "  agent-2  ", "note": " "}).json()["success"] is True
    assert [conversation.agent_id for conversation in clean_shared_server.conversations] == ["agent-2"]


def test_non_ascii_values_are_signed_as_utf8_text(client: SignedClient) -> None:
    conversation_id = client.create_conversation()
    body = {"agentId": "agent-1", "conversationId": conversation_id, "text": "你好 世界", "language": "zh"}
    assert client.post("/v1/chat/image", body).json()["success"] is True


def test_request_id_cannot_be_reused(client: SignedClient, clean_shared_server: AidolServer) -> None:
    headers = client.signed_headers(CONVERSATION, BODY)
    assert client.post(CONVERSATION, BODY, override=headers).json()["success"] is True
    assert_error(client.post(CONVERSATION, BODY, override=headers), 401, 10401, "Duplicate request id")
    assert len(clean_shared_server.conversations) == 1


def test_header_checks_come_before_the_body_checks(client: SignedClient) -> None:
    response = client.post(CONVERSATION, BODY, data=b"not json", override={"X-User-ID": None})
    assert_error(response, 401, 10401, "Missing required header: X-User-ID")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_content_type_must_be_json(client: SignedClient, content_type: str | None) -> None:
    response = client.post(CONVERSATION, BODY, override={"Content-Type": content_type})
    assert_error(response, 200, 10400, "Content-Type must be application/json")


def test_content_type_parameters_are_allowed(client: SignedClient) -> None:
    response = client.post(CONVERSATION, BODY, override={"Content-Type": "application/json; charset=utf-8"})
    assert response.json()["success"] is True


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[1, 2]", "Request body must be a JSON object"),
        (b'"agent-1"', "Request body must be a JSON object"),
        (b'{"agentId": ', "Request body is not valid JSON"),
        (b'{"agentId": "agent-1", "n": NaN}', "Request body is not valid JSON"),
        (b'{"agentId": "agent-1", "n": 1e999}', "Request body is not valid JSON"),
        (b'{"agentId": "\xff"}', "Request body is not valid JSON"),
    ],
)
def test_body_must_be_a_json_object(client: SignedClient, data: bytes, message: str) -> None:
    assert_error(client.post(CONVERSATION, BODY, data=data), 200, 10400, message)


def test_empty_body_is_an_empty_object(client: SignedClient) -> None:
    assert_error(client.post(CONVERSATION, None), 200, 10400, "agentId is required")


def test_rejections_are_recorded(client: SignedClient, clean_shared_server: AidolServer) -> None:
    client.post(CONVERSATION, BODY, override={"Authorization": "Bearer nope"})
    [record] = clean_shared_server.requests
    assert (record.method, record.path, record.http_status) == ("POST", CONVERSATION, 401)
    assert (record.code, record.message, record.user_id) == (10401, "Invalid API key", "test-user")
