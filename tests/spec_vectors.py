"""The protocol reference's four worked vectors (API secret ``demo-secret``), copied for the tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

SECRET = "demo-secret"
USER_ID = "user-123"


@dataclass(frozen=True)
class SpecVector:
    """One request of the protocol reference with its signature base and signature."""

    method: str
    path: str
    timestamp: str
    params: dict[str, Any] | None
    raw_query: str
    body: dict[str, Any] | None
    base: str
    signature: str


SPEC_VECTORS = [
    pytest.param(
        SpecVector(
            "POST",
            "/v1/chat/stream",
            "1742000000",
            None,
            "",
            {"agentId": "agent-uuid", "conversationId": "conv-uuid", "text": "你好"},
            "POST\n/v1/chat/stream\n1742000000\nuser-123\n\nagentId=agent-uuid&conversationId=conv-uuid&text=你好",
            "b812125081b5a8c633906bcf87a99af4580a98073d0f19bd66cc2a95b51c7ff6",
        ),
        id="1-stream-unicode",
    ),
    pytest.param(
        SpecVector(
            "POST",
            "/v1/chat/conversation",
            "1773298769",
            None,
            "",
            {"agentId": "agent-uuid"},
            "POST\n/v1/chat/conversation\n1773298769\nuser-123\n\nagentId=agent-uuid",
            "063e0cf383ed8475be7508212980a1578dfcc113b8c6b32513b1a1fcd318261f",
        ),
        id="2-create-conversation",
    ),
    pytest.param(
        SpecVector(
            "POST",
            "/v1/chat/image",
            "1773298769",
            None,
            "",
            {
                "agentId": " agent-uuid ",
                "conversationId": "conv-uuid",
                "text": "a girl",
                "language": "",
                "note": "   ",
                "extra": None,
                "metadata": {},
            },
            "POST\n/v1/chat/image\n1773298769\nuser-123\n\n"
            "agentId=agent-uuid&conversationId=conv-uuid&metadata={}&text=a girl",
            "d346fe43a7f339248779b3101dbef20f8211a6321620be74a3af4ec1d5f0d68d",
        ),
        id="3-chat-image-trim-and-drop",
    ),
    pytest.param(
        SpecVector(
            "GET",
            "/v1/agent/list",
            "1773298769",
            {"size": 20, "page": 1, "keyword": ""},
            "size=20&page=1&keyword=",
            None,
            "GET\n/v1/agent/list\n1773298769\nuser-123\npage=1&size=20\n",
            "a686872d26d64eacff72fa250caf0d320554cadceebb2450cbdcba83d157f79b",
        ),
        id="4-get-with-query",
    ),
]
