"""Running AidolServer: lifecycle, connection descriptions, inspection and concurrency."""

from __future__ import annotations

import json
import re
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest
import requests

from airflow_provider_aidol.testing import AidolServer, Fault
from tests.aidol_default import from_json, from_uri

from .signed_client import SignedClient

if TYPE_CHECKING:
    from collections.abc import Callable

CONVERSATION = "/v1/chat/conversation"


def is_serving(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
    except requests.ConnectionError:
        return False
    return True


def in_threads(count: int, work: Callable[[requests.Session], list[str]]) -> list[str]:
    """Run ``work`` in ``count`` threads, each with its own session; return all results."""

    def run(_: int) -> list[str]:
        with requests.Session() as session:
            return work(session)

    with ThreadPoolExecutor(count) as pool:
        return [item for items in pool.map(run, range(count)) for item in items]


def test_context_manager_serves_on_a_free_loopback_port_then_stops() -> None:
    with AidolServer() as server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
        assert server.port > 0
        assert is_serving(server.url)
    assert not is_serving(server.url)


def test_explicit_port_is_used() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with AidolServer(port=port) as server:
        assert server.url == f"http://127.0.0.1:{port}"
        assert is_serving(server.url)


def test_start_and_stop_are_idempotent() -> None:
    server = AidolServer()
    assert server.start() is server.start()
    url = server.url
    server.stop()
    server.stop()
    assert not server.running
    assert not is_serving(url)


def test_url_needs_a_started_server() -> None:
    with pytest.raises(RuntimeError, match="no port yet"):
        _ = AidolServer().url


def test_server_restarts_on_the_same_port() -> None:
    server = AidolServer()
    with server:
        url = server.url
    with server:
        assert server.url == url
        assert is_serving(url)


def test_repr_does_not_show_the_secret() -> None:
    server = AidolServer(api_secret="very-secret-value")
    assert "very-secret-value" not in repr(server)
    with server:
        assert server.url in repr(server)
        assert "very-secret-value" not in repr(server)


def test_settings_are_readable_and_writable() -> None:
    server = AidolServer(latency=0.5, rate_limit=2.0, burst=4, quota=9, clock_offset=-3.0)
    assert (server.latency, server.rate_limit, server.burst, server.quota) == (0.5, 2.0, 4, 9)
    assert (server.clock_offset, server.image_latency, server.rate_limit_status) == (-3.0, 0.0, 200)
    server.latency = 0.0
    assert server.latency == 0.0


def test_connection_json_describes_the_server(clean_shared_server: AidolServer) -> None:
    described = json.loads(clean_shared_server.connection_json())
    assert described == {
        "conn_type": "aidol",
        "host": clean_shared_server.url,
        "login": "test-api-key",
        "password": "test-api-secret",
        "extra": {"user_id": "test-user"},
    }
    connection = from_json(clean_shared_server.connection_json(), conn_id="aidol_default")
    assert (connection.host, connection.login, connection.password) == (
        clean_shared_server.url,
        "test-api-key",
        "test-api-secret",
    )
    assert connection.extra_dejson == {"user_id": "test-user"}


def test_connection_uri_round_trips_through_airflow() -> None:
    key, secret, user = "key/with:odd@chars", "s3cret+/=?&%", "user id&x=1"
    with AidolServer(api_key=key, api_secret=secret, user_id=user) as server:
        uri = server.connection_uri()
        assert uri.startswith("aidol://http://")
        connection = from_uri(uri, conn_id="x")
    assert (connection.conn_type, connection.host, connection.port) == (
        "aidol",
        "http://127.0.0.1",
        server.port,
    )
    assert (connection.login, connection.password) == (key, secret)
    assert connection.extra_dejson == {"user_id": user}


def test_request_records_describe_each_request(
    client: SignedClient, clean_shared_server: AidolServer
) -> None:
    headers = client.signed_headers(CONVERSATION, {"agentId": "agent-1"})
    envelope = client.post(CONVERSATION, {"agentId": "agent-1"}, override=headers).json()
    [record] = clean_shared_server.requests
    assert (record.method, record.path, record.http_status, record.code) == ("POST", CONVERSATION, 200, 10200)
    assert (record.message, record.request_id, record.user_id) == ("OK", headers["X-Request-ID"], "test-user")
    assert (record.trace_id, record.fault) == (envelope["traceId"], None)


def test_count_filters_records(client: SignedClient, clean_shared_server: AidolServer) -> None:
    client.create_conversation()
    client.post(CONVERSATION, {"agentId": "nobody"})
    clean_shared_server.inject(Fault.STATUS, status=502)
    client.post("/v1/config/options", {"namespace": "custom_image"})
    assert clean_shared_server.count() == 3
    assert clean_shared_server.count(path=CONVERSATION) == 2
    assert clean_shared_server.count(path=CONVERSATION, code=10404) == 1
    assert clean_shared_server.count(http_status=200) == 2
    assert (
        clean_shared_server.count(http_status=502, fault=Fault.STATUS)
        == clean_shared_server.count(fault="status")
        == 1
    )


def test_reset_forgets_records_conversations_and_request_ids(
    client: SignedClient, clean_shared_server: AidolServer
) -> None:
    headers = client.signed_headers(CONVERSATION, {"agentId": "agent-1"})
    client.post(CONVERSATION, {"agentId": "agent-1"}, override=headers)
    clean_shared_server.reset()
    assert (clean_shared_server.requests, clean_shared_server.conversations) == ([], [])
    assert client.post(CONVERSATION, {"agentId": "agent-1"}, override=headers).json()["success"] is True


def test_concurrent_creates_are_all_recorded(clean_shared_server: AidolServer) -> None:
    def create_25(session: requests.Session) -> list[str]:
        client = SignedClient(clean_shared_server, session)
        return [client.create_conversation() for _ in range(25)]

    ids = in_threads(8, create_25)
    assert len(set(ids)) == 200
    assert {conversation.conversation_id for conversation in clean_shared_server.conversations} == set(ids)
    assert clean_shared_server.count(path=CONVERSATION, code=10200) == 200


@pytest.mark.aidol_server(latency=0.3)
def test_latency_delays_requests_without_serialising_them(aidol_server: AidolServer) -> None:
    def one_request(session: requests.Session) -> list[str]:
        return [SignedClient(aidol_server, session).create_conversation()]

    started = time.monotonic()
    in_threads(8, one_request)
    assert 0.3 <= time.monotonic() - started < 1.2
