"""Request bodies: read only after the credentials passed, and only up to ``max_body_bytes``.

Over real HTTP (raw sockets where the client must not send its body first).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest
import requests

from .signed_client import assert_error, signed_headers, wire_json

if TYPE_CHECKING:
    from airflow_provider_aidol.testing import AidolServer

    from .signed_client import SignedClient

CONVERSATION = "/v1/chat/conversation"
HUNDRED_MB = 100 * 1024 * 1024


def send_headers(server: AidolServer, headers: dict[str, str]) -> socket.socket:
    """Open a connection and send a POST's head only: its body is announced but not sent."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    head = [f"POST {CONVERSATION} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Read what the server sends until it closes the connection (or 10 s pass)."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


@pytest.mark.parametrize(
    ("authorization", "message"),
    [(None, "Missing required header: Authorization"), ("Bearer wrong-key", "Invalid API key")],
)
def test_an_unauthenticated_body_is_refused_before_it_is_sent(
    clean_shared_server: AidolServer, authorization: str | None, message: str
) -> None:
    server = clean_shared_server
    headers = signed_headers(server.api_key, server.api_secret, CONVERSATION, {}, user_id="u")
    del headers["Authorization"]
    if authorization is not None:
        headers["Authorization"] = authorization
    headers["Content-Length"] = str(HUNDRED_MB)
    with send_headers(server, headers) as sock:
        # Not one byte of the 100 MB was sent, and the answer is complete: the server closed.
        answer = read_until_closed(sock)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line == b"HTTP/1.1 401 Unauthorized"
    assert message.encode() in rest
    [record] = server.requests
    assert (record.http_status, record.code, record.message, record.body) == (401, 10401, message, b"")


def test_an_authenticated_body_over_the_limit_is_refused_unread_with_413(
    clean_shared_server: AidolServer,
) -> None:
    server = clean_shared_server
    headers = signed_headers(server.api_key, server.api_secret, CONVERSATION, {}, user_id="u")
    headers["Content-Length"] = str(server.max_body_bytes + 1)
    with send_headers(server, headers) as sock:
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 413 ")  # the reason phrase is Python's, renamed in 3.13
    assert f"Request body over {server.max_body_bytes} bytes".encode() in answer
    assert [(r.http_status, r.code, r.body) for r in server.requests] == [(413, 10413, b"")]
    assert server.conversations == []


@pytest.mark.aidol_server(max_body_bytes=64)
def test_a_body_sent_without_a_length_is_read_up_to_the_limit_only(fresh_client: SignedClient) -> None:
    server = fresh_client.server
    body = {"agentId": "agent-1", "padding": "x" * 100}
    headers = signed_headers(server.api_key, server.api_secret, CONVERSATION, body, user_id="u")
    data = wire_json(body)
    # A generator body goes out chunked: no Content-Length to refuse it by.
    chunks = (data[i : i + 16] for i in range(0, len(data), 16))
    response = requests.post(f"{server.url}{CONVERSATION}", data=chunks, headers=headers, timeout=10)
    assert_error(response, 413, 10413, "Request body over 64 bytes")
    assert server.conversations == []
    # A body within the limit is served as ever.
    assert fresh_client.post(CONVERSATION, {"agentId": "agent-1"}).json()["code"] == 10200
