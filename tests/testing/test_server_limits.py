"""Rate limit and total-call quota, per API key."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from .signed_client import assert_error

if TYPE_CHECKING:
    from .signed_client import SignedClient

CONVERSATION = "/v1/chat/conversation"
BODY = {"agentId": "agent-1"}
RATE_LIMITED = "Too many requests, please try again later"
QUOTA = "API key usage limit reached"


def test_no_rate_limit_or_quota_by_default(client: SignedClient) -> None:
    assert all(client.post(CONVERSATION, BODY).json()["success"] for _ in range(30))


@pytest.mark.aidol_server(rate_limit=1, burst=3)
def test_burst_then_rate_limited_with_http_200(fresh_client: SignedClient) -> None:
    answers = [fresh_client.post(CONVERSATION, BODY) for _ in range(4)]
    assert [answer.json()["success"] for answer in answers[:3]] == [True, True, True]
    assert_error(answers[3], 200, 10429, RATE_LIMITED)
    assert "Retry-After" not in answers[3].headers
    assert len(fresh_client.server.conversations) == 3


@pytest.mark.aidol_server(rate_limit=0.4, burst=1, rate_limit_status=429)
def test_rate_limited_as_429_says_when_to_retry(fresh_client: SignedClient) -> None:
    fresh_client.post(CONVERSATION, BODY)
    response = fresh_client.post(CONVERSATION, BODY)
    assert_error(response, 429, 10429, RATE_LIMITED)
    assert response.headers["Retry-After"] == "3"  # ceil(1 token / 0.4 per second)


@pytest.mark.aidol_server(rate_limit=2, burst=1)
def test_tokens_refill_at_the_rate(fresh_client: SignedClient) -> None:
    # One token per 0.5 s: wide margins either side, so a slow machine cannot flip the result.
    assert fresh_client.post(CONVERSATION, BODY).json()["success"] is True
    assert fresh_client.post(CONVERSATION, BODY).json()["code"] == 10429
    time.sleep(0.6)
    assert fresh_client.post(CONVERSATION, BODY).json()["success"] is True


def test_rate_limit_can_be_turned_on_and_off_while_running(fresh_client: SignedClient) -> None:
    server = fresh_client.server
    server.rate_limit, server.burst = 0.1, 1
    codes = [fresh_client.post(CONVERSATION, BODY).json()["code"] for _ in range(2)]
    server.rate_limit = None
    codes.append(fresh_client.post(CONVERSATION, BODY).json()["code"])
    assert codes == [10200, 10429, 10200]


@pytest.mark.aidol_server(rate_limit=0.1, burst=1)
def test_only_authenticated_requests_take_tokens(fresh_client: SignedClient) -> None:
    fresh_client.post(CONVERSATION, BODY, override={"X-Signature": "0" * 64})
    assert fresh_client.post(CONVERSATION, BODY).json()["success"] is True


@pytest.mark.aidol_server(quota=2)
def test_quota_allows_that_many_calls_then_refuses(fresh_client: SignedClient) -> None:
    assert fresh_client.create_conversation()
    assert fresh_client.post("/v1/config/options", {"namespace": "custom_image"}).json()["success"] is True
    assert_error(fresh_client.post(CONVERSATION, BODY), 200, 10403, QUOTA)
    assert len(fresh_client.server.conversations) == 1


@pytest.mark.aidol_server(quota=1, rate_limit=0.1, burst=1)
def test_quota_counts_neither_rejected_nor_rate_limited_calls(fresh_client: SignedClient) -> None:
    fresh_client.post(CONVERSATION, BODY, override={"Authorization": "Bearer wrong"})
    assert fresh_client.post(CONVERSATION, BODY).json()["success"] is True
    assert fresh_client.post(CONVERSATION, BODY).json()["code"] == 10429
    fresh_client.server.rate_limit = None
    assert fresh_client.post(CONVERSATION, BODY).json()["code"] == 10403


@pytest.mark.aidol_server(quota=1)
def test_reset_restores_the_quota(fresh_client: SignedClient) -> None:
    fresh_client.create_conversation()
    assert fresh_client.post(CONVERSATION, BODY).json()["code"] == 10403
    fresh_client.server.reset()
    assert fresh_client.post(CONVERSATION, BODY).json()["success"] is True


def test_quota_set_later_covers_earlier_calls(fresh_client: SignedClient) -> None:
    fresh_client.create_conversation()
    fresh_client.server.quota = 1
    assert fresh_client.post(CONVERSATION, BODY).json()["code"] == 10403
