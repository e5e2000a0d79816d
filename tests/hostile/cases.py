"""The hostile cases: which client meets which hostile behaviour, and the bounds it must keep.

Each case names a client (the hook, a batch, the image trigger, the connection test), a
behaviour of the hostile server, the connection's extra fields, what the outcome must say, and
the most seconds and megabytes (peak resident memory above the start of the case) it may take.
The connection's deadline is 2 s (read timeout 1 s plus a margin of 1 s) unless a case says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.hostile import server as hostile

if TYPE_CHECKING:
    from collections.abc import Callable

#: Extra fields of every case's connection: short timeouts, few and quick retries.
BASE_EXTRA: dict[str, Any] = {
    "user_id": "hostile-user",
    "timeout": 1,
    "image_timeout": 1,
    "connect_timeout": 1,
    "deadline_margin": 1,
    "max_retries": 1,
    "retry_wait_initial": 0.01,
    "retry_wait_max": 0.2,
    "retry_max_seconds": 2,
}


@dataclass(frozen=True)
class Case:
    """One client against one hostile behaviour, with the outcome and the bounds it must keep."""

    name: str
    kind: str
    client: str
    behaviour: Callable[[], hostile.Behaviour]
    #: What the outcome must contain (every one, when several).
    expect: str | tuple[str, ...]
    max_seconds: float = 4.0
    max_mb: float = 40.0
    extra: dict[str, Any] = field(default_factory=dict)
    https: bool = False


def _conversation(conversation_id: str) -> Callable[[], hostile.Behaviour]:
    return lambda: hostile.answer(200, hostile.conversation(conversation_id))


#: The dripped answers: each byte comes well inside the 1 s read timeout, so only the deadline can
#: end them, and a 0.2 s margin makes it 1.2 s; a 1 s margin proved the same bound 0.8 s later.
_DRIP = {"deadline_margin": 0.2}
_HUGE_JSON = 100 * 2**20
_IMAGE_MB = 64 * 1.1 * 3 + 40  # the image cap is 64 MiB: the body, its text, the decoded data

CASES = [
    # 1. An answer without bounds: dripped, endless, compressed, huge.
    Case("hook-drip-body", "answer bounds", "hook", hostile.drip_body, "AidolTimeoutError", extra=_DRIP),
    Case(
        "hook-drip-headers", "answer bounds", "hook", hostile.drip_headers, "AidolTimeoutError", extra=_DRIP
    ),
    Case("hook-endless-body", "answer bounds", "hook", hostile.endless_body, "larger than 1,048,576 bytes"),
    Case(
        "hook-gzip-bomb", "answer bounds", "hook", hostile.gzip_bomb, "AidolResponseError: POST /v1/chat/con"
    ),
    Case(
        "hook-huge-json",
        "answer bounds",
        "hook",
        lambda: hostile.answer(
            200, hostile.envelope(data={"conversationId": "c-1", "pad": " " * _HUGE_JSON})
        ),
        "larger than 1,048,576 bytes",
    ),
    Case(
        "batch-drip-body",
        "answer bounds",
        "batch",
        hostile.drip_body,
        "no complete answer within 1.2 s",
        extra=_DRIP,
    ),
    Case("batch-endless-body", "answer bounds", "batch", hostile.endless_body, "larger than 1,048,576 bytes"),
    Case(
        "trigger-drip-body", "answer bounds", "trigger", hostile.drip_body, "AidolTimeoutError", extra=_DRIP
    ),
    Case(
        "trigger-drip-headers",
        "answer bounds",
        "trigger",
        hostile.drip_headers,
        "AidolTimeoutError",
        extra=_DRIP,
    ),
    Case(
        "trigger-endless-body",
        "answer bounds",
        "trigger",
        hostile.endless_body,
        "larger than 67,108,864 bytes",
        max_mb=_IMAGE_MB,
        # 64 MiB must arrive before the deadline, so that the size cap is what ends it: at 2 s it
        # did not on a busy 2-CPU machine (the time bound has cases of its own, the drips).
        max_seconds=12,
        extra={"image_timeout": 5, "deadline_margin": 5},
    ),
    Case("trigger-gzip-bomb", "answer bounds", "trigger", hostile.gzip_bomb, "unreadable answer"),
    # 2. Waits the server sets: Retry-After.
    Case(
        "hook-retry-after-huge",
        "Retry-After",
        "hook",
        lambda: hostile.rate_limited("1000000000"),
        "AidolRateLimitError",
        max_seconds=2,
    ),
    Case(
        "batch-retry-after-huge",
        "Retry-After",
        "batch",
        lambda: hostile.rate_limited("1000000000"),
        "Too many requests",
        max_seconds=4,
        # The batch's rate-limit budget (retry_max_seconds) ends it: 1.5 s, like 2 s, leaves room
        # for retries after the limiter's first 1 s pause (a 1 s budget would end at the first 429).
        extra={"retry_max_seconds": 1.5},
    ),
    Case(
        "batch-retry-after-inf",
        "Retry-After",
        "batch",
        lambda: hostile.rate_limited("inf", then_succeed_after=2),
        "ok",
        max_seconds=4,
    ),
    Case(
        "batch-retry-after-far-date",
        "Retry-After",
        "batch",
        lambda: hostile.rate_limited("Fri, 31 Dec 9999 23:59:59 GMT", then_succeed_after=2),
        "ok",
        max_seconds=4,
    ),
    Case(
        "trigger-retry-after-huge",
        "Retry-After",
        "trigger",
        lambda: hostile.rate_limited("1000000000", then_succeed_after=1, image=True),
        "success",
        max_seconds=2,
    ),
    # 4. Raw exceptions instead of typed errors.
    Case(
        "hook-deep-json",
        "typed errors",
        "hook",
        lambda: hostile.answer(200, hostile.nested_json(100_000)),
        "AidolResponseError",
    ),
    Case(
        "batch-deep-json",
        "typed errors",
        "batch",
        lambda: hostile.answer(200, hostile.nested_json(100_000)),
        "POST /v1/chat/conversation: unreadable answer",
    ),
    Case(
        "trigger-deep-json",
        "typed errors",
        "trigger",
        lambda: hostile.answer(200, hostile.nested_json(100_000)),
        "error AidolResponseError",
    ),
    Case(
        "hook-huge-timestamp",
        "typed errors",
        "hook",
        lambda: hostile.clock_401("9" * 400),
        "AidolAuthError",
    ),
    Case(
        "test-connection-huge-timestamp",
        "typed errors",
        "test_connection",
        lambda: hostile.clock_401("9" * 400),
        "False: Authentication failed",
    ),
    Case(
        "trigger-huge-timestamp",
        "typed errors",
        "trigger",
        lambda: hostile.clock_401("9" * 400),
        "error AidolAuthError",
    ),
    # 5. The clock correction.
    Case(
        "hook-clock-ten-years-ahead",
        "clock",
        "hook",
        lambda: hostile.clock_401(hostile.in_years(10), times=1, then=_conversation("c-1")()),
        "offset +0; requests 1; AidolAuthError",
    ),
    Case(
        "batch-clock-ten-years-ahead",
        "clock",
        "batch",
        lambda: hostile.clock_401(hostile.in_years(10)),
        ("offset +0; ", "POST /v1/chat/conversation: Request timestamp expired"),
    ),
    Case(
        "trigger-clock-ten-years-ahead",
        "clock",
        "trigger",
        lambda: hostile.clock_401(
            hostile.in_years(10), times=1, then=hostile.answer(200, hostile.image_answer())
        ),
        "offset +0; requests 1; error AidolAuthError",
    ),
    Case(
        "hook-corrected-resend-refused",
        "clock",
        "hook",
        lambda: hostile.clock_401(hostile.in_years(600 / (365.25 * 86400))),
        "offset +0; requests 2; AidolAuthError",
    ),
    # 7. The smaller ones.
    Case(
        "hook-conversation-id-crlf",
        "smaller",
        "hook",
        _conversation("c-1\r\n2026-01-01 [error] forged line"),
        "data.conversationId is not an id",
    ),
    Case(
        "hook-conversation-id-huge",
        "smaller",
        "hook",
        _conversation("c" * 500_000),
        "data.conversationId is not an id",
    ),
    Case(
        "batch-conversation-id-crlf",
        "smaller",
        "batch",
        _conversation("c-1\r\nforged"),
        "data.conversationId is not an id",
    ),
    Case(
        "hook-redirect-endless-body",
        "answer bounds",
        "hook",
        lambda: hostile.endless_body(status=302, Location="https://elsewhere.example/"),
        "redirected to 'https://elsewhere.example/'",
    ),
    Case(
        "hook-redirect-without-location",
        "smaller",
        "hook",
        lambda: hostile.answer(302, hostile.envelope(), reason="Found"),
        "AidolResponseError: POST /v1/chat/conversation: answered HTTP 302",
    ),
    Case(
        "trigger-redirect-without-location",
        "smaller",
        "trigger",
        lambda: hostile.answer(302, hostile.envelope(), reason="Found"),
        "error AidolResponseError",
    ),
    Case(
        "hook-tls-handshake-timeout",
        "smaller",
        "hook",
        lambda: hostile.silent,
        "AidolConnectionError",
        extra={"connect_timeout": 0.25, "max_retries": 0},
        https=True,
    ),
    Case(
        "trigger-tls-handshake-timeout",
        "smaller",
        "trigger",
        lambda: hostile.silent,
        "error AidolConnectionError",
        extra={"connect_timeout": 0.25, "max_retries": 0},
        https=True,
    ),
]

BY_NAME = {case.name: case for case in CASES}
