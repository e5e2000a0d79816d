"""Batch items are checked up front, and failures are reported by index."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_provider_aidol.batch.engine import BatchItem, parse_items
from airflow_provider_aidol.exceptions import AidolBatchError, AidolConfigurationError
from airflow_provider_aidol.outcomes import ItemOutcome, ItemStatus, NotSentReason


def parse(items: Any, default_user_id: str | None = "default-user") -> list[BatchItem]:
    return parse_items(items, default_user_id=default_user_id, conn_id="aidol_default")


def test_strings_and_dicts_with_the_connection_user_as_default():
    assert parse(["agent-1", {"agent_id": "agent-2", "user_id": "u-2"}, {"agent_id": "agent-3"}]) == [
        BatchItem(0, "agent-1", "default-user"),
        BatchItem(1, "agent-2", "u-2"),
        BatchItem(2, "agent-3", "default-user"),
    ]


def test_a_generator_of_items_is_accepted():
    assert [item.agent_id for item in parse(f"agent-{n}" for n in range(3))] == [
        "agent-0",
        "agent-1",
        "agent-2",
    ]


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["agent-1", ""], "items[1].agent_id must be a non-empty string"),
        ([{"agent_id": None}], "items[0].agent_id must be a non-empty string"),
        ([{"agent_id": "a", "user_id": "  "}], "items[0].user_id must be a non-empty string"),
        ([{"agent_id": "a", "userid": "u"}], "items[0] has unknown keys ['userid']"),
        (["a", 42], "items[1] must be an agent id or a dict, got int"),
    ],
)
def test_bad_items_are_named_by_index(items, message):
    with pytest.raises(ValueError, match="nothing was sent") as caught:
        parse(items)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["agent-\ud800"], "items[0].agent_id holds a lone surrogate"),
        ([{"agent_id": "a", "user_id": "u\x00"}], "items[0].user_id holds a control character"),
        (["ok", "a" * 256], "items[1].agent_id is 256 characters long"),
        ([BatchItem(5, "agent\x00", "u")], "items[0].agent_id holds a control character"),
    ],
)
def test_ids_no_store_can_keep_are_a_configuration_error_before_anything_is_sent(items, message):
    with pytest.raises(AidolConfigurationError, match="nothing was sent") as caught:
        parse(items)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)
    assert caught.value.fatal, "Airflow does not retry it: a retry would be refused the same way"


def test_missing_user_without_a_connection_default_names_the_connection():
    with pytest.raises(ValueError, match="connection 'aidol_default' has no 'user_id' extra"):
        parse(["agent-1"], default_user_id=None)


def test_every_bad_item_is_counted_and_the_first_ten_listed():
    with pytest.raises(ValueError, match="25 bad item") as caught:
        parse([""] * 25)
    assert "items[9]" in str(caught.value)
    assert "items[10]" not in str(caught.value)
    assert "and 15 more" in str(caught.value)


@pytest.mark.parametrize("items", ["agent-1", {"agent_id": "a"}, 7, None])
def test_items_must_be_a_list(items):
    with pytest.raises(ValueError, match="items must be a list"):
        parse(items)


def test_batch_error_lists_failures_by_index():
    failures = [ItemOutcome(n, "a", f"u{n}", ItemStatus.FAILED, error="Agent not found") for n in range(12)]
    error = AidolBatchError(failures=failures, total=40)
    assert str(error).startswith("12 of 40 conversations failed: items[0] agent a user u0: Agent not found")
    assert "and 2 more" in str(error)
    assert error.failures is failures


def test_parsed_items_are_handed_on_as_they_are():
    parsed = [BatchItem(7, "agent-1", "u-7"), BatchItem(3, "agent-2", "u-3")]
    assert parse(parsed) == parsed


# --- waits the server sets ------------------------------------------------------------------


def rate_limited_batch(retry_after: float | None, *, succeed_after: int, seconds: float = 1.0):
    """A batch whose create is refused with ``retry_after`` until ``succeed_after`` calls were made."""
    from airflow_provider_aidol.batch.engine import ConversationBatch
    from airflow_provider_aidol.batch.options import BatchOptions
    from airflow_provider_aidol.batch.sender import SenderPacing
    from airflow_provider_aidol.client.envelope import AidolResponse
    from airflow_provider_aidol.exceptions import AidolRateLimitError

    calls: list[float] = []

    class Sender:
        batch_pacing = SenderPacing(
            requests_per_second=None, rate_limit_seconds=seconds, rate_limit_wait_max=0.2
        )

        def create_batch_item(self, item, limiter, retry_if):
            limiter.acquire()
            calls.append(retry_after or 0)
            if len(calls) <= succeed_after:
                raise AidolRateLimitError("Too many requests", http_status=429, retry_after=retry_after)
            return AidolResponse({"conversationId": f"c-{item.index}"}, "t", 200)

    batch = ConversationBatch(Sender(), BatchOptions(max_workers=2, requests_per_second=None))
    return batch, calls


@pytest.mark.parametrize("retry_after", [1e9, float("inf"), float("nan"), -5.0])
def test_a_batch_never_waits_longer_than_its_caps_whatever_retry_after_says(retry_after):
    batch, calls = rate_limited_batch(retry_after, succeed_after=10**6)
    started = time.monotonic()
    results = dict(batch.run(parse(["agent-1", "agent-2"])))
    assert time.monotonic() - started < 3
    assert 2 <= len(calls) < 50  # each item retried while its second of rate limits lasted
    assert [result.error.split(". Next step:")[0] for result in results.values()] == [
        "Too many requests (HTTP 429, no business code, traceId -)"
    ] * 2
    assert all("Next step: the API key's rate limit outlasted" in result.error for result in results.values())


def test_a_batch_resumes_once_the_rate_limit_lifts_after_an_absurd_retry_after():
    batch, _ = rate_limited_batch(float("inf"), succeed_after=2, seconds=5)
    results = dict(batch.run(parse(["agent-1", "agent-2"])))
    assert {result.conversation_id for result in results.values()} == {"c-0", "c-1"}


# --- one typed outcome per item -------------------------------------------------------------


def scripted_batch(script: dict[str, Exception | None]):
    """A one-worker batch whose create raises ``script[agent_id]``, or succeeds when it is ``None``."""
    from airflow_provider_aidol.batch.engine import ConversationBatch
    from airflow_provider_aidol.batch.options import BatchOptions
    from airflow_provider_aidol.batch.sender import SenderPacing
    from airflow_provider_aidol.client.envelope import AidolResponse

    class Sender:
        batch_pacing = SenderPacing(requests_per_second=None, rate_limit_seconds=1.0)

        def create_batch_item(self, item, limiter, retry_if):
            failure = script[item.agent_id]
            if failure is not None:
                raise failure
            return AidolResponse({"conversationId": f"c-{item.index}"}, "t", 200)

    return ConversationBatch(Sender(), BatchOptions(max_workers=1, requests_per_second=1000))


def test_every_item_ends_with_exactly_one_typed_status():
    from airflow_provider_aidol.exceptions import (
        AidolConnectionError,
        AidolNotFoundError,
        AidolQuotaExceededError,
        AidolTimeoutError,
    )

    batch = scripted_batch(
        {
            "ok": None,
            "missing": AidolNotFoundError("Agent not found", http_status=200, code=10404, trace_id="t-1"),
            "slow": AidolTimeoutError("no answer within 5 s"),
            "dropped": AidolConnectionError("reset", request_sent=True),
            "quota": AidolQuotaExceededError("API key usage limit reached", http_status=200),
            "later": None,
        }
    )
    names = ["ok", "missing", "slow", "dropped", "quota", "later", "later"]
    outcomes = dict(batch.run(parse(names)))

    assert sorted(outcomes) == list(range(len(names)))
    assert all(isinstance(outcome.status, ItemStatus) for outcome in outcomes.values())
    assert [outcomes[index].status for index in range(len(names))] == [
        ItemStatus.CREATED,
        ItemStatus.FAILED,
        ItemStatus.IN_DOUBT,
        ItemStatus.IN_DOUBT,
        ItemStatus.FAILED,
        ItemStatus.NOT_SENT,
        ItemStatus.NOT_SENT,
    ]
    assert outcomes[1].error_class == "AidolNotFoundError"
    assert outcomes[1].trace_id == "t-1"
    assert outcomes[4].error_class == "AidolQuotaExceededError"
    assert {outcomes[5].not_sent_reason, outcomes[6].not_sent_reason} == {NotSentReason.QUOTA_USED_UP}
    assert outcomes[0].not_sent_reason is None
    assert outcomes[0].error is None


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("AidolRequestBudgetError", NotSentReason.REQUEST_BUDGET),
        ("AidolAuthError", NotSentReason.CREDENTIALS_REFUSED),
    ],
)
def test_the_items_left_unsent_say_why_the_batch_stopped(error, reason):
    from airflow_provider_aidol import exceptions

    stop = (
        exceptions.AidolRequestBudgetError(max_requests=1)
        if error == "AidolRequestBudgetError"
        else exceptions.AidolAuthError("Invalid API key", http_status=401)
    )
    outcomes = dict(scripted_batch({"stop": stop, "later": None}).run(parse(["stop", "later", "later"])))

    assert [outcomes[index].not_sent_reason for index in (1, 2)] == [reason, reason]
    assert outcomes[1].as_record()["not_sent_reason"] == reason.value
    assert outcomes[1].as_record()["status"] == "not_sent"


def test_a_record_reads_back_as_the_same_outcome_and_an_older_record_gets_its_status():
    outcome = ItemOutcome(
        3,
        "a",
        "u",
        ItemStatus.NOT_SENT,
        error="not sent: request budget of 1 reached",
        error_class="AidolRequestBudgetError",
        not_sent_reason=NotSentReason.REQUEST_BUDGET,
    )
    record = outcome.as_record()
    assert record["status"] == "not_sent"
    assert record["reused"] is False
    assert "unregistered" not in record
    assert ItemOutcome.from_record(record) == outcome
    unregistered = ItemOutcome(4, "a", "u", ItemStatus.CREATED, "c", unregistered=True)
    assert unregistered.as_record()["unregistered"] is True
    assert ItemOutcome.from_record(unregistered.as_record()) == unregistered

    older = {"index": 0, "agent_id": "a", "user_id": "u", "trace_id": None, "error": None}
    assert ItemOutcome.from_record({**older, "conversation_id": "c", "reused": False}).status == "created"
    assert ItemOutcome.from_record({**older, "conversation_id": "c", "reused": True}).status == "reused"
    orphaned = {**older, "conversation_id": "c", "reused": True, "orphaned_conversation_id": "o"}
    assert ItemOutcome.from_record(orphaned).status == "orphaned"
    assert ItemOutcome.from_record({**older, "conversation_id": None, "error": "boom"}).status == "failed"
