"""A minimal signed AI-DOL client for the server tests, built on the server's own verifier.

Good for testing everything except the signature rules themselves, which test_verifier.py
pins to the spec's worked vectors.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.testing.verifier import (
    canonical_body,
    canonical_query,
    expected_signature,
    signature_base,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    import requests

    from airflow_provider_aidol.testing import AidolServer


def wire_json(body: Mapping[str, object]) -> bytes:
    """Serialise a body the way the spec says a client sends it (compact, UTF-8)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def signed_headers(
    api_key: str,
    api_secret: str,
    path: str,
    body: Mapping[str, object] | None,
    *,
    user_id: str,
    method: str = "POST",
    query: str = "",
) -> dict[str, str]:
    """Return fresh authentication headers (new timestamp and request id) for one request."""
    timestamp = str(int(time.time()))
    base = signature_base(method, path, timestamp, user_id, canonical_query(query), canonical_body(body))
    return {
        "Authorization": f"Bearer {api_key}",
        "X-Timestamp": timestamp,
        "X-Signature": expected_signature(api_secret, base),
        "X-Request-ID": uuid.uuid4().hex,
        "X-User-ID": user_id,
        "Content-Type": "application/json",
    }


@dataclass
class SignedClient:
    """Signs and sends requests to an AidolServer with its own credentials."""

    server: AidolServer
    session: requests.Session
    user_id: str = "test-user"

    def signed_headers(
        self, path: str, body: Mapping[str, object] | None, *, query: str = ""
    ) -> dict[str, str]:
        server = self.server
        return signed_headers(
            server.api_key, server.api_secret, path, body, user_id=self.user_id, query=query
        )

    def post(
        self,
        path: str,
        body: Mapping[str, object] | None = None,
        *,
        query: str = "",
        override: Mapping[str, str | None] | None = None,
        data: bytes | None = None,
        timeout: float = 10.0,
        stream: bool = False,
    ) -> requests.Response:
        """Sign and POST ``body``; ``override`` replaces headers after signing (None removes one)."""
        headers: dict[str, str] = self.signed_headers(path, body, query=query)
        for name, value in (override or {}).items():
            headers.pop(name, None)
            if value is not None:
                headers[name] = value
        url = f"{self.server.url}{path}" + (f"?{query}" if query else "")
        payload = data if data is not None else wire_json(body) if body is not None else b""
        return self.session.post(url, data=payload, headers=headers, timeout=timeout, stream=stream)

    def call(self, path: str, body: Mapping[str, object]) -> Any:
        """POST and return the envelope's data, asserting success."""
        response = self.post(path, body)
        envelope = response.json()
        assert response.status_code == 200, response.text
        assert envelope["success"] is True, envelope
        return envelope["data"]

    def create_conversation(self, agent_id: str = "agent-1") -> str:
        conversation_id: str = self.call("/v1/chat/conversation", {"agentId": agent_id})["conversationId"]
        return conversation_id


def assert_error(response: requests.Response, http_status: int, code: int, message: str) -> None:
    """Assert the response is an error envelope with these values."""
    assert response.status_code == http_status, response.text
    envelope = response.json()
    assert (envelope["code"], envelope["success"], envelope["message"]) == (code, False, message)
    assert envelope["data"] is None
