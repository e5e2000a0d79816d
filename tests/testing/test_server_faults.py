"""Injected faults, each observed from a real requests client."""

from __future__ import annotations

import email.utils
import time
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_aidol.testing import Fault
from tests.polling import wait_until

from .signed_client import assert_error

if TYPE_CHECKING:
    from airflow_provider_aidol.testing import AidolServer

    from .signed_client import SignedClient

CONVERSATION = "/v1/chat/conversation"
BODY = {"agentId": "agent-1"}


@pytest.mark.parametrize(
    ("status", "code"), [(500, 10500), (502, 10500), (503, 10500), (504, 10500), (429, 10429)]
)
def test_status_fault_answers_an_error_envelope(client: SignedClient, status: int, code: int) -> None:
    client.server.inject(Fault.STATUS, status=status)
    response = client.post(CONVERSATION, BODY)
    assert response.status_code == status
    assert (response.json()["code"], response.json()["success"]) == (code, False)
    assert "Retry-After" not in response.headers
    assert client.server.conversations == []


def test_status_fault_defaults_to_503(client: SignedClient) -> None:
    client.server.inject(Fault.STATUS)
    assert_error(client.post(CONVERSATION, BODY), 503, 10500, "Service Unavailable")


@pytest.mark.parametrize(
    "retry_after", [7, email.utils.formatdate(time.time() + 60, usegmt=True)], ids=["seconds", "http-date"]
)
def test_status_fault_can_send_retry_after(client: SignedClient, retry_after: int | str) -> None:
    client.server.inject(Fault.STATUS, status=503, retry_after=retry_after)
    assert client.post(CONVERSATION, BODY).headers["Retry-After"] == str(retry_after)


@pytest.mark.parametrize(("status", "expected"), [(None, 502), (504, 504)])
def test_html_fault_is_a_proxy_error_page(client: SignedClient, status: int | None, expected: int) -> None:
    client.server.inject(Fault.HTML, status=status)
    response = client.post(CONVERSATION, BODY)
    assert response.status_code == expected
    assert response.headers["Content-Type"].startswith("text/html")
    assert f"<h1>{expected} " in response.text


def test_malformed_json_fault(client: SignedClient) -> None:
    client.server.inject(Fault.MALFORMED_JSON)
    response = client.post(CONVERSATION, BODY)
    assert (response.status_code, response.headers["Content-Type"]) == (200, "application/json")
    with pytest.raises(requests.JSONDecodeError):
        response.json()


def test_missing_fields_fault(client: SignedClient) -> None:
    client.server.inject(Fault.MISSING_FIELDS)
    response = client.post(CONVERSATION, BODY)
    assert response.status_code == 200
    assert "success" not in response.json()
    assert "code" not in response.json()


def test_no_conversation_id_fault_succeeds_without_creating(client: SignedClient) -> None:
    client.server.inject(Fault.NO_CONVERSATION_ID)
    envelope = client.post(CONVERSATION, BODY).json()
    assert (envelope["success"], envelope["code"], envelope["data"]) == (True, 10200, {})
    assert client.server.conversations == []


def test_drop_closes_the_connection_before_acting(
    client: SignedClient, clean_shared_server: AidolServer
) -> None:
    clean_shared_server.inject(Fault.DROP)
    with pytest.raises(requests.ConnectionError):
        client.post(CONVERSATION, BODY)
    assert clean_shared_server.conversations == []
    [record] = clean_shared_server.requests
    assert (record.fault, record.http_status, record.code) == (Fault.DROP, None, None)


def test_drop_after_create_leaves_an_orphan_conversation(
    client: SignedClient, clean_shared_server: AidolServer
) -> None:
    clean_shared_server.inject(Fault.DROP_AFTER_CREATE)
    with pytest.raises(requests.ConnectionError):
        client.post(CONVERSATION, BODY)
    [orphan] = clean_shared_server.conversations
    assert orphan.agent_id == "agent-1"
    [record] = clean_shared_server.requests
    assert (record.fault, record.http_status, record.code) == (Fault.DROP_AFTER_CREATE, None, 10200)


def test_delay_then_normal_answer(client: SignedClient) -> None:
    client.server.inject(Fault.DELAY, delay=0.2)
    started = time.monotonic()
    assert client.post(CONVERSATION, BODY).json()["success"] is True
    assert time.monotonic() - started >= 0.2


def test_delay_beyond_the_client_timeout_is_a_read_timeout(fresh_client: SignedClient) -> None:
    server = fresh_client.server
    server.inject(Fault.DELAY, delay=0.4)
    with pytest.raises(requests.ReadTimeout):
        fresh_client.post(CONVERSATION, BODY, timeout=0.1)
    [in_flight] = server.requests
    assert (in_flight.fault, in_flight.http_status, server.conversations) == (Fault.DELAY, None, [])
    # The server still acts once the delay is over: the client's timeout left an orphan.
    wait_until(lambda: len(server.conversations) == 1, timeout=2, what="the delayed conversation")
    assert server.requests[0].code == 10200


def test_reset_forgets_requests_still_in_flight(fresh_client: SignedClient) -> None:
    server = fresh_client.server
    server.inject(Fault.DELAY, delay=0.3)
    with pytest.raises(requests.ReadTimeout):
        fresh_client.post(CONVERSATION, BODY, timeout=0.1)
    server.reset()
    wait_until(lambda: len(server.conversations) == 1, timeout=2, what="the delayed conversation")
    assert server.requests == []


def test_stall_sends_headers_and_part_of_the_body_then_closes(fresh_client: SignedClient) -> None:
    fresh_client.server.inject(Fault.STALL, delay=0.2)
    started = time.monotonic()
    response = fresh_client.post(CONVERSATION, BODY, stream=True)
    assert response.status_code == 200
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        _ = response.content
    assert time.monotonic() - started >= 0.2


def test_stall_beyond_the_client_timeout_fails_while_reading(fresh_client: SignedClient) -> None:
    fresh_client.server.inject(Fault.STALL, delay=0.6)
    with pytest.raises(requests.ConnectionError, match="Read timed out"):
        fresh_client.post(CONVERSATION, BODY, timeout=0.2)


@pytest.mark.parametrize(("status", "retry_after"), [(None, None), (429, "1")])
def test_rate_limited_fault(client: SignedClient, status: int | None, retry_after: str | None) -> None:
    client.server.inject(Fault.RATE_LIMITED, status=status)
    response = client.post(CONVERSATION, BODY)
    assert_error(response, status or 200, 10429, "Too many requests, please try again later")
    assert response.headers.get("Retry-After") == retry_after


def test_quota_fault(client: SignedClient) -> None:
    client.server.inject(Fault.QUOTA)
    assert_error(client.post(CONVERSATION, BODY), 200, 10403, "API key usage limit reached")


def test_unauthorized_fault(client: SignedClient) -> None:
    client.server.inject(Fault.UNAUTHORIZED)
    assert_error(client.post(CONVERSATION, BODY), 401, 10401, "Invalid signature")


def test_faults_are_used_once_each_in_order(client: SignedClient, clean_shared_server: AidolServer) -> None:
    clean_shared_server.inject(Fault.STATUS, status=500, times=2)
    clean_shared_server.inject(Fault.QUOTA)
    codes = [client.post(CONVERSATION, BODY).json()["code"] for _ in range(4)]
    assert codes == [10500, 10500, 10403, 10200]
    assert [record.fault for record in clean_shared_server.requests] == [
        Fault.STATUS,
        Fault.STATUS,
        Fault.QUOTA,
        None,
    ]


def test_fault_with_a_path_waits_for_that_path(
    client: SignedClient, clean_shared_server: AidolServer
) -> None:
    clean_shared_server.inject(Fault.STATUS, path="/v1/config/options")
    assert client.post(CONVERSATION, BODY).json()["success"] is True
    assert client.post("/v1/config/options", {"namespace": "custom_image"}).status_code == 503
    assert (
        clean_shared_server.count(fault=Fault.STATUS)
        == clean_shared_server.count(path="/v1/config/options")
        == 1
    )


def test_reset_discards_queued_faults(client: SignedClient, clean_shared_server: AidolServer) -> None:
    clean_shared_server.inject(Fault.DROP, times=3)
    clean_shared_server.reset()
    assert client.post(CONVERSATION, BODY).json()["success"] is True


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        (Fault.DELAY, {}, "needs delay"),
        (Fault.STALL, {}, "needs delay"),
        (Fault.STATUS, {"status": 404}, "429 or 5xx"),
        (Fault.DROP, {"times": 0}, "at least 1"),
    ],
)
def test_inject_rejects_incomplete_faults(
    clean_shared_server: AidolServer, kind: Fault, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        clean_shared_server.inject(kind, **options)
