"""Both HTTP clients (the hook's requests session, the trigger's httpx client) are built alike.

They take proxies, the CA bundle and the Authorization header from the same helpers, so a
request leaves the same way whichever client sends it. Checked with a real HTTP proxy stand-in
on loopback that records what reaches it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest
from airflow.sdk import Connection

from airflow_provider_aidol.client.answer import check_head
from airflow_provider_aidol.client.async_transport import new_async_client, send_once_async
from airflow_provider_aidol.client.connection import ConnectionSettings
from airflow_provider_aidol.client.network import ca_bundle
from airflow_provider_aidol.client.prepared import prepare_request, signed_headers
from airflow_provider_aidol.client.transport import new_session, send_once
from airflow_provider_aidol.exceptions import AidolResponseError

ANSWER = json.dumps({"success": True, "code": 0, "data": {"ok": 1}, "traceId": "t-1"}).encode()


class RecordingProxy:
    """Accepts connections on loopback, records each request head, answers a success envelope."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(5)
        self.heads: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        for _ in range(4):  # bounded: each test sends at most a few requests
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.heads.append(data.split(b"\r\n\r\n")[0].decode("latin-1"))
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(ANSWER)}\r\n\r\n".encode()
                    + ANSWER
                )

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def proxy():
    recording = RecordingProxy()
    yield recording
    recording.close()


def settings(host: str) -> ConnectionSettings:
    conn = Connection(conn_id="c", conn_type="aidol", host=host, login="the-key", password="the-secret")
    return ConnectionSettings.from_connection(conn)


def send_with_both_clients(target: ConnectionSettings) -> None:
    prepared = prepare_request("POST", "/v1/x", json={"a": 1}, params=None, user_id="u-1")
    headers = signed_headers(prepared, target.api_secret, 1_700_000_000)
    session = new_session(target, pool_size=1)
    try:
        assert send_once(session, target, prepared, headers).data == {"ok": 1}
    finally:
        session.close()

    async def send_async() -> None:
        async with new_async_client(target) as client:
            answer = await send_once_async(client, target, prepared, headers, timeout=5)
        assert answer.data == {"ok": 1}

    asyncio.run(send_async())


def test_both_clients_send_through_the_proxy_the_environment_names(monkeypatch, proxy):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    send_with_both_clients(settings("http://api.aidol.invalid:8080"))

    assert len(proxy.heads) == 2
    for head in proxy.heads:
        assert head.startswith("POST http://api.aidol.invalid:8080/v1/x HTTP/1.1")
        assert "Authorization: Bearer the-key" in head or "authorization: Bearer the-key" in head


def test_both_clients_go_direct_for_a_host_in_no_proxy(monkeypatch, proxy):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    send_with_both_clients(settings(proxy.url))  # the recorder plays the API itself

    assert [head.split("\r\n")[0] for head in proxy.heads] == ["POST /v1/x HTTP/1.1"] * 2


def test_the_ca_bundle_comes_from_requests_variables(monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    assert ca_bundle() is None
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/curl.pem")
    assert ca_bundle() == "/etc/curl.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/requests.pem")
    assert ca_bundle() == "/etc/requests.pem"


def test_both_clients_ask_for_answers_uncompressed(monkeypatch, proxy):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    send_with_both_clients(settings(proxy.url))
    assert len(proxy.heads) == 2
    for head in proxy.heads:
        assert "accept-encoding: identity" in head.lower()


@pytest.mark.parametrize("path", ["/v1/../admin", "/v1/./chat", "/..", "/v1/chat/."])
def test_dot_segments_are_refused_before_sending(path):
    with pytest.raises(ValueError, match=r"path must not hold '\.' or '\.\.' segments"):
        prepare_request("POST", path, json=None, params=None, user_id="u-1")


def test_dots_inside_a_segment_are_kept():
    assert (
        prepare_request("GET", "/v1/a..b/.well", json=None, params=None, user_id="u").path == "/v1/a..b/.well"
    )


class Head:
    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status_code = status
        self.headers = headers


def test_a_redirect_without_location_names_the_status():
    with pytest.raises(
        AidolResponseError, match="answered HTTP 302, a redirect without a Location"
    ) as caught:
        check_head(Head(302, {}), 100, secrets=("k", "s"), method="POST", path="/v1/x")
    assert caught.value.http_status == 302


def test_a_redirect_target_is_redacted_and_quoted():
    location = "https://evil.example/?k=the-key-123&s=the%2Dsecret%2D456\r\nX-Forged: 1"
    with pytest.raises(AidolResponseError) as caught:
        check_head(
            Head(301, {"Location": location}),
            100,
            secrets=("the-key-123", "the-secret-456"),
            method="GET",
            path="/x",
        )
    text = str(caught.value)
    assert text.startswith("GET /x: redirected to 'https://evil.example/?k=***&s=***\\r\\nX-Forged: 1'")
    assert "key-12" not in text
    assert "secret" not in text
