"""The fault matrix: every fault the embedded server can inject, for one request and for a batch.

Each row says what the hook raises (or that it succeeds), how many requests reached the server
(retries counted server-side), how many conversations exist afterwards, and what the error text
must show. No error text or repr may hold the API key or secret.
"""

from __future__ import annotations

import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_aidol.exceptions import (
    AidolAuthError,
    AidolConnectionError,
    AidolQuotaExceededError,
    AidolRateLimitError,
    AidolRequestError,
    AidolResponseError,
    AidolServerError,
    AidolTimeoutError,
)
from airflow_provider_aidol.hooks.aidol import AidolHook
from airflow_provider_aidol.testing import AidolServer, Fault
from tests.aidol_default import items, point_connection
from tests.polling import wait_until

Arrange = Callable[[AidolServer, pytest.MonkeyPatch], None]


def inject(kind: Fault, times: int = 1, **options: Any) -> Arrange:
    return lambda server, monkeypatch: server.inject(kind, times=times, **options)


def connection(**changes: Any) -> Arrange:
    return lambda server, monkeypatch: point_connection(monkeypatch, server, max_retries=2, **changes)


def both(*steps: Arrange) -> Arrange:
    def arrange(server: AidolServer, monkeypatch: pytest.MonkeyPatch) -> None:
        for step in steps:
            step(server, monkeypatch)

    return arrange


def skew(seconds: float) -> Arrange:
    return lambda server, monkeypatch: setattr(server, "clock_offset", seconds)


@dataclass(frozen=True)
class Row:
    """One fault and what must come of it."""

    arrange: Arrange
    error: type[AidolRequestError] | None  # None: the request succeeds
    requests: int  # requests the server saw, retries included
    created: int  # conversations on the server afterwards
    text: tuple[str, ...] = field(default=())
    settles: bool = False  # the server still works on a request the client gave up on


PERSISTENT = 10  # more faults than the 3 attempts max_retries=2 allows
MATRIX = {
    "http-500": Row(inject(Fault.STATUS, status=500), AidolServerError, 1, 0, ("HTTP 500", "code 10500")),
    "http-502-once": Row(inject(Fault.STATUS, status=502), None, 2, 1),
    "http-503-once": Row(inject(Fault.STATUS, status=503), None, 2, 1),
    "http-504-once": Row(inject(Fault.STATUS, status=504), None, 2, 1),
    "http-503-persistent": Row(
        both(connection(), inject(Fault.STATUS, PERSISTENT, status=503)),
        AidolServerError,
        3,
        0,
        ("HTTP 503",),
    ),
    "reset-before-response-once": Row(inject(Fault.DROP), None, 2, 1),
    "reset-before-response-persistent": Row(
        both(connection(), inject(Fault.DROP, PERSISTENT)), AidolConnectionError, 3, 0, ("no HTTP answer",)
    ),
    "read-timeout": Row(
        both(connection(timeout=0.2), inject(Fault.DELAY, delay=1.0)),
        AidolTimeoutError,
        1,
        1,  # the server acted: an orphan, never a second conversation
        ("no answer within 0.2 s",),
        settles=True,
    ),
    "stall-mid-body": Row(
        both(connection(timeout=0.3), inject(Fault.STALL, delay=1.0)), AidolTimeoutError, 1, 1, ("stalled",)
    ),
    "malformed-json": Row(inject(Fault.MALFORMED_JSON), AidolResponseError, 1, 0, ("unreadable answer",)),
    "html-proxy-page-once": Row(inject(Fault.HTML, status=502), None, 2, 1),
    "html-proxy-page-persistent": Row(
        both(connection(), inject(Fault.HTML, PERSISTENT, status=502)), AidolServerError, 3, 0, ("text/html",)
    ),
    "envelope-missing-fields": Row(inject(Fault.MISSING_FIELDS), AidolResponseError, 1, 0, ("unreadable",)),
    "success-without-conversation-id": Row(
        inject(Fault.NO_CONVERSATION_ID), AidolResponseError, 1, 0, ("without data.conversationId",)
    ),
    "rate-limit-storm": Row(inject(Fault.RATE_LIMITED, 3), None, 4, 1),
    "rate-limit-persistent": Row(
        both(connection(), inject(Fault.RATE_LIMITED, PERSISTENT)),
        AidolRateLimitError,
        3,
        0,
        ("Too many requests, please try again later",),
    ),
    "quota-exhausted": Row(
        inject(Fault.QUOTA), AidolQuotaExceededError, 1, 0, ("API key usage limit reached",)
    ),
    "401-bad-signature": Row(
        connection(password="not-the-secret"), AidolAuthError, 1, 0, ("HTTP 401", "Invalid signature")
    ),
    "401-clock-skew-corrected": Row(skew(600), None, 2, 1),
    "401-clock-skew-persistent": Row(
        both(skew(-900), inject(Fault.UNAUTHORIZED, 2)), AidolAuthError, 2, 0, ("clock skew -900 s",)
    ),
}


@pytest.mark.parametrize("row", MATRIX.values(), ids=MATRIX.keys())
def test_one_request(aidol_default_server, monkeypatch, row: Row):
    row.arrange(aidol_default_server, monkeypatch)
    hook = AidolHook()
    if row.error is None:
        conversation_id = hook.create_conversation("agent-1")
        assert conversation_id == aidol_default_server.conversations[-1].conversation_id
    else:
        with pytest.raises(row.error) as caught:
            hook.create_conversation("agent-1")
        assert type(caught.value) is row.error
        assert_reported(caught.value, row, aidol_default_server)
    if row.settles:
        settled(aidol_default_server, row.created)
    assert aidol_default_server.count() == row.requests
    assert len(aidol_default_server.conversations) == row.created


def settled(server: AidolServer, conversations: int, users: set[str] | None = None) -> None:
    """Wait until the server has finished the requests the client gave up on: it holds
    ``conversations`` of ``users`` (of anyone if ``None``). The assertions after it still catch a
    second conversation or request."""
    wait_until(
        lambda: sum(users is None or c.user_id in users for c in server.conversations) >= conversations,
        timeout=10,
        what="the server's delayed answers",
    )


def assert_reported(error: AidolRequestError, row: Row, server: AidolServer) -> None:
    """The text names the request, status, code and traceId as far as they exist, and no secret."""
    text = str(error)
    assert text.startswith("POST /v1/chat/conversation: ")
    assert f"traceId {error.trace_id or '-'}" in text
    for fragment in row.text:
        assert fragment in text
    for secret in (server.api_key, server.api_secret):
        assert secret not in text
        assert secret not in repr(error)


def test_connect_timeout_is_retried_then_reported(monkeypatch, aidol_default_server):
    with UnansweredPort() as port:
        point_connection(
            monkeypatch,
            aidol_default_server,
            host=f"http://127.0.0.1:{port}",
            connect_timeout=0.1,
            max_retries=2,
        )
        hook, waits = AidolHook(), list[float]()
        hook.sleep = waits.append
        with pytest.raises(AidolConnectionError, match="connection failed") as caught:
            hook.create_conversation("agent-1")
    assert caught.value.http_status is None
    assert len(waits) == 2, "two retries after the first attempt"


class UnansweredPort:
    """A loopback port whose accept queue is full, so a new connection attempt hangs (connect timeout)."""

    def __enter__(self) -> int:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.fillers = []
        for _ in range(3):  # never accepted: they fill the queue
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(self.listener.getsockname())
            self.fillers.append(filler)
        return int(self.listener.getsockname()[1])

    def __exit__(self, *exc_info: object) -> None:
        for sock in [*self.fillers, self.listener]:
            sock.close()


# --- batches ----------------------------------------------------------------------------------

ITEMS = 12


@dataclass(frozen=True)
class BatchRow:
    """A fault hitting a batch: how many items may fail, at most."""

    arrange: Arrange
    failed: int
    orphans: int = 0  # items reported failed although the server created them (timeouts)
    settles: bool = False


BATCH_MATRIX = {
    "http-500": BatchRow(inject(Fault.STATUS, status=500), failed=1),
    "http-502-503-504": BatchRow(
        both(
            inject(Fault.STATUS, status=502),
            inject(Fault.STATUS, status=503),
            inject(Fault.STATUS, status=504),
        ),
        failed=0,
    ),
    "reset-before-response": BatchRow(inject(Fault.DROP, 3), failed=0),
    "read-timeout": BatchRow(
        both(connection(timeout=0.2), inject(Fault.DELAY, delay=1.0)), failed=1, orphans=1, settles=True
    ),
    "stall-mid-body": BatchRow(
        both(connection(timeout=0.3), inject(Fault.STALL, delay=1.0)), failed=1, orphans=1
    ),
    "malformed-json": BatchRow(inject(Fault.MALFORMED_JSON), failed=1),
    "html-proxy-page": BatchRow(inject(Fault.HTML, 2, status=502), failed=0),
    "envelope-missing-fields": BatchRow(inject(Fault.MISSING_FIELDS), failed=1),
    "success-without-conversation-id": BatchRow(inject(Fault.NO_CONVERSATION_ID), failed=1),
    # As many rate-limit answers as items (some worker meets at least 4). Each one answering the
    # current pace slows the adaptive limiter by x0.8, so a longer storm adds seconds of pacing
    # (20 answers: 6.9 s), no new path.
    "rate-limit-storm": BatchRow(inject(Fault.RATE_LIMITED, ITEMS), failed=0),
    "quota-exhausted-mid-batch": BatchRow(
        lambda server, monkeypatch: setattr(server, "quota", 5), failed=ITEMS - 5
    ),
    "401-bad-signature": BatchRow(connection(password="not-the-secret"), failed=ITEMS),
    "401-clock-skew": BatchRow(skew(600), failed=0),
}


@pytest.mark.parametrize("row", BATCH_MATRIX.values(), ids=BATCH_MATRIX.keys())
def test_batch(aidol_default_server, monkeypatch, row: BatchRow):
    batch_items = items(ITEMS)
    row.arrange(aidol_default_server, monkeypatch)
    results = AidolHook().create_conversations(batch_items, max_workers=3)
    if row.settles:
        settled(aidol_default_server, row.orphans, {r["user_id"] for r in results if r["error"]})
    created = {c.user_id: c.conversation_id for c in aidol_default_server.conversations}
    per_user = Counter(c.user_id for c in aidol_default_server.conversations)

    assert [r["user_id"] for r in results] == [i["user_id"] for i in batch_items], "every item, in order"
    assert all((r["conversation_id"] is None) != (r["error"] is None) for r in results), "one outcome each"
    assert max(per_user.values(), default=0) <= 1, "no item created twice by the provider's retries"
    succeeded = [r for r in results if r["conversation_id"]]
    assert all(created[r["user_id"]] == r["conversation_id"] for r in succeeded)
    assert len(results) - len(succeeded) == row.failed
    assert len(created) == len(succeeded) + row.orphans
    for result in results:
        for secret in (aidol_default_server.api_key, aidol_default_server.api_secret):
            assert secret not in (result["error"] or "")
