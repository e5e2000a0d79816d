"""A daily cap in one task: refused setups before sending, retries counted, on_error, the usage XCom."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from airflow_provider_aidol.client.endpoints import CONVERSATION_PATH
from airflow_provider_aidol.exceptions import (
    AidolBatchError,
    AidolConfigurationError,
    AidolRegistryConfigError,
)
from airflow_provider_aidol.operators.aidol import CreateConversationOperator
from airflow_provider_aidol.operators.batch import CreateConversationsOperator
from airflow_provider_aidol.outcomes import NotSentReason
from airflow_provider_aidol.registry.ledger import SqlLedger
from airflow_provider_aidol.retry_policy import AidolRetryPolicy
from airflow_provider_aidol.testing import Fault
from tests.aidol_default import items, point_connection, task_instance
from tests.conftest import REGISTRY_CONN_ID
from tests.registry.conftest import execute


def run(operator) -> tuple[Any, dict[str, Any]]:
    """Run ``operator`` as a task would; return its result and the XComs it pushed."""
    pushed: dict[str, Any] = {}
    ti = task_instance("daily_cap", operator.task_id, pushed=pushed)
    try:
        result = operator.execute({"ti": ti})
    except Exception as error:
        result = error
    return result, pushed


def batch(count: int, **kwargs) -> CreateConversationsOperator:
    return CreateConversationsOperator(task_id="batch", conversations=items(count), **kwargs)


def test_a_cap_without_a_sql_connection_is_refused_before_anything_is_sent(aidol_server, monkeypatch):
    point_connection(monkeypatch, aidol_server, max_requests_per_day=10)
    error, _ = run(batch(3))
    assert isinstance(error, AidolConfigurationError)
    assert isinstance(error, ValueError)
    assert "registry_conn_id" in str(error)
    assert aidol_server.requests == []


def test_a_ledger_table_of_another_shape_is_refused_before_anything_is_sent(
    aidol_server, sqlite_registry, monkeypatch
):
    execute(sqlite_registry, "CREATE TABLE aidol_usage_ledger (key_id VARCHAR(64))")
    point_connection(monkeypatch, aidol_server, max_requests_per_day=10, registry_conn_id=REGISTRY_CONN_ID)
    error, _ = run(batch(3))
    assert isinstance(error, AidolRegistryConfigError)
    assert "Usage ledger" in str(error)
    assert aidol_server.requests == []


def test_retries_count_against_the_cap(aidol_server, sqlite_registry, monkeypatch):
    point_connection(monkeypatch, aidol_server, max_requests_per_day=3, registry_conn_id=REGISTRY_CONN_ID)
    aidol_server.inject(Fault.STATUS, status=503, times=2, path=CONVERSATION_PATH)
    result, pushed = run(batch(2, max_workers=1, on_error="continue"))
    assert aidol_server.count(path=CONVERSATION_PATH) == 3  # two 503s and one created
    assert [r["status"] for r in result] == ["created", "not_sent"]
    assert result[1]["not_sent_reason"] == "daily_cap"
    assert pushed["aidol_usage"]["daily_cap_reached"] is True
    assert pushed["aidol_usage"]["requests"] == 3


def test_with_on_error_fail_a_capped_batch_fails_and_is_not_retried(
    aidol_server, sqlite_registry, monkeypatch
):
    point_connection(monkeypatch, aidol_server, max_requests_per_day=2, registry_conn_id=REGISTRY_CONN_ID)
    error, pushed = run(batch(5, max_workers=1, on_error="fail"))
    assert isinstance(error, AidolBatchError)
    assert error.stopped_for(NotSentReason.DAILY_CAP)
    assert aidol_server.count(path=CONVERSATION_PATH) == 2
    assert pushed["aidol_usage"]["not_sent_daily_cap"] >= 1
    if AidolRetryPolicy is not None:
        decision = AidolRetryPolicy().evaluate(error, try_number=1, max_tries=3)
        assert "daily cap" in str(decision.reason)


def test_a_single_conversation_past_the_cap_is_not_sent_and_fails_without_retries(
    aidol_server, sqlite_registry, monkeypatch
):
    point_connection(monkeypatch, aidol_server, max_requests_per_day=1, registry_conn_id=REGISTRY_CONN_ID)
    first, _ = run(CreateConversationOperator(task_id="one", agent_id="agent-1"))
    second, pushed = run(CreateConversationOperator(task_id="two", agent_id="agent-1"))
    assert isinstance(first, str)
    assert type(second).__name__ == "AidolDailyCapError"
    assert second.fatal
    assert aidol_server.count(path=CONVERSATION_PATH) == 1
    assert pushed["aidol_usage"]["daily_cap_reached"] is True


@pytest.mark.parametrize("on_error", ["continue"])
def test_the_cost_of_the_try_is_in_the_usage_xcom(aidol_server, monkeypatch, on_error):
    point_connection(monkeypatch, aidol_server, price_per_request=0.25, currency="EUR")
    _, pushed = run(batch(4, on_error=on_error))
    assert pushed["aidol_usage"]["cost"] == 1.0
    assert pushed["aidol_usage"]["currency"] == "EUR"


def test_the_ledger_going_away_mid_batch_leaves_the_rest_not_sent_never_failed(
    aidol_server, vanishing_database, monkeypatch, must_call
):
    point_connection(monkeypatch, aidol_server, max_requests_per_day=1000, registry_conn_id=REGISTRY_CONN_ID)
    # The batch takes its first block of 10, sends it, and needs the ledger again for the 11th
    # item: the database stops just then (the real server, stopped for good).
    reserve = SqlLedger.reserve
    reservations: list[int] = []

    def stop_the_database_before_the_second_block(ledger: SqlLedger, *args: Any) -> int:
        if len(reservations) == 1:
            assert aidol_server.count(path=CONVERSATION_PATH) == 10, "the first block was sent"
            vanishing_database.stop()
        reservations.append(reserve(ledger, *args))
        return reservations[-1]

    must_call.setattr(SqlLedger, "reserve", stop_the_database_before_the_second_block)
    error, pushed = run(batch(25, max_workers=1, on_error="fail"))

    assert reservations == [10], "the second reservation found the database gone"
    assert aidol_server.count(path=CONVERSATION_PATH) == 10, "nothing sent without a reservation"
    assert isinstance(error, AidolBatchError)
    assert Counter(failure.status for failure in error.failures) == {"not_sent": 15}
    assert {failure.not_sent_reason for failure in error.failures} == {NotSentReason.LEDGER_UNAVAILABLE}
    assert "usage ledger could not reserve requests" in str(error.failures[0].error)
    usage = pushed["aidol_usage"]
    assert usage["requests"] == 10
    assert usage["ledger_unavailable"] is True
    assert usage["reserved_not_returned"] == {}, "the block was spent: nothing stranded"
    if AidolRetryPolicy is not None:  # the database may be back: the task is retried as usual
        decision = AidolRetryPolicy().evaluate(error, try_number=1, max_tries=3)
        assert decision == type(decision).default()
