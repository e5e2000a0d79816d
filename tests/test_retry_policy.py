"""AidolRetryPolicy: its decisions, and a real run retried after the server's Retry-After (Airflow 3.3+)."""

from __future__ import annotations

import time
from datetime import timedelta
from importlib.metadata import version

import pytest

from airflow_provider_aidol.exceptions import (
    AidolBatchError,
    AidolQuotaExceededError,
    AidolRateLimitError,
    AidolServerError,
)
from airflow_provider_aidol.integration.usage import USAGE_XCOM_KEY
from airflow_provider_aidol.outcomes import ItemOutcome, ItemStatus, NotSentReason
from airflow_provider_aidol.retry_policy import AidolRetryPolicy, rate_limit_delay
from airflow_provider_aidol.testing import Fault
from tests.aidol_default import point_connection
from tests.airflow_db import xcom
from tests.dags import integration_dags

AIRFLOW_VERSION = tuple(int(part) for part in version("apache-airflow").split(".")[:2])
needs_retry_policy = pytest.mark.skipif(AidolRetryPolicy is None, reason="retry_policy is new in Airflow 3.3")


def test_retry_policies_are_there_from_airflow_3_3_on():
    assert (AidolRetryPolicy is not None) == (AIRFLOW_VERSION >= (3, 3))


@pytest.mark.skipif(AIRFLOW_VERSION >= (3, 3), reason="Airflow 3.3+ has retry policies: the tests below")
def test_without_retry_policies_the_operators_keep_the_tasks_own_retries():
    task = integration_dags.rate_limited_retry.get_task("create")
    assert getattr(task, "retry_policy", None) is None
    assert (task.retries, task.retry_delay) == (1, timedelta(hours=1))


def test_a_rate_limit_waits_the_servers_retry_after_else_a_doubling_backoff():
    assert rate_limit_delay(7, try_number=1) == timedelta(seconds=7)
    assert [rate_limit_delay(None, n).total_seconds() for n in (1, 2, 3, 10)] == [60, 120, 240, 900]


@needs_retry_policy
def test_decisions():
    from airflow.sdk import RetryAction

    policy = AidolRetryPolicy()
    assert policy.evaluate(AidolQuotaExceededError("used up"), 1, 3).action is RetryAction.FAIL
    rate_limited = policy.evaluate(AidolRateLimitError("slow down", retry_after=4), 1, 3)
    assert (rate_limited.action, rate_limited.retry_delay) == (RetryAction.RETRY, timedelta(seconds=4))
    assert policy.evaluate(AidolServerError("boom", http_status=502), 1, 3).action is RetryAction.DEFAULT
    stopped = AidolBatchError(
        failures=[
            ItemOutcome(
                0,
                "a",
                "u",
                ItemStatus.NOT_SENT,
                error="not sent: request budget of 3 reached",
                not_sent_reason=NotSentReason.REQUEST_BUDGET,
            )
        ],
        total=1,
    )
    assert policy.evaluate(stopped, 1, 3).action is RetryAction.FAIL


@needs_retry_policy
def test_a_batch_stopped_by_its_budget_is_failed_by_the_reason_not_the_text():
    from airflow.sdk import RetryAction

    policy = AidolRetryPolicy()

    def batch_error(error: str, reason: NotSentReason | None) -> AidolBatchError:
        status = ItemStatus.FAILED if reason is None else ItemStatus.NOT_SENT
        failure = ItemOutcome(0, "a", "u", status, error=error, not_sent_reason=reason)
        return AidolBatchError(failures=[failure], total=2)

    budget_in_other_words = batch_error("skipped: the task may send no more", NotSentReason.REQUEST_BUDGET)
    assert policy.evaluate(budget_in_other_words, 1, 3).action is RetryAction.FAIL
    only_the_old_text = batch_error("not sent: request budget of 3 reached", None)
    assert policy.evaluate(only_the_old_text, 1, 3).action is RetryAction.DEFAULT
    refused_credentials = batch_error("not sent: Invalid API key", NotSentReason.CREDENTIALS_REFUSED)
    assert policy.evaluate(refused_credentials, 1, 3).action is RetryAction.DEFAULT


@needs_retry_policy
def test_a_user_error_deriving_from_airflow_fail_exception_is_not_retried():
    from airflow.sdk import RetryAction

    from airflow_provider_aidol._compat import AirflowFailException
    from airflow_provider_aidol.exceptions import AidolError

    class AidolMyFatalError(AidolError, AirflowFailException):
        pass

    class AidolMyPassingError(AidolError):
        pass

    policy = AidolRetryPolicy()
    assert policy.evaluate(AidolMyFatalError("mine"), 1, 3).action is RetryAction.FAIL
    assert policy.evaluate(AidolMyPassingError("mine"), 1, 3).action is RetryAction.DEFAULT


@needs_retry_policy
def test_a_configuration_error_is_not_retried():
    from airflow.sdk import RetryAction

    from airflow_provider_aidol.exceptions import AidolConfigurationError, AidolRegistryConfigError

    policy = AidolRetryPolicy()
    assert (
        policy.evaluate(AidolConfigurationError("items[0].agent_id holds"), 1, 3).action is RetryAction.FAIL
    )
    assert policy.evaluate(AidolRegistryConfigError("read-only"), 1, 3).action is RetryAction.FAIL


@needs_retry_policy
def test_a_user_given_retry_policy_wins():
    from airflow.sdk import ExceptionRetryPolicy

    from airflow_provider_aidol.operators.aidol import CreateConversationOperator

    mine = ExceptionRetryPolicy(rules=[])
    assert CreateConversationOperator(task_id="t", agent_id="a", retry_policy=mine).retry_policy is mine
    assert isinstance(CreateConversationOperator(task_id="u", agent_id="a").retry_policy, AidolRetryPolicy)


@needs_retry_policy
def test_a_rate_limited_task_is_retried_after_the_servers_delay_not_its_retry_delay(
    airflow_with_aidol_server, monkeypatch
):
    server = airflow_with_aidol_server
    point_connection(monkeypatch, server, max_retries=0)  # the hook gives up at once, so the task fails
    server.inject(Fault.RATE_LIMITED, status=429, retry_after=3)

    started = time.monotonic()
    run = integration_dags.rate_limited_retry.test()
    took = time.monotonic() - started

    assert str(run.state) == "success"
    assert 3 <= took < 1800  # the task's retry_delay is an hour; a loaded machine's run takes minutes
    assert len(server.conversations) == 1
    usage = xcom("aidol_rate_limited_retry", run.run_id, "create", USAGE_XCOM_KEY)
    assert (usage["try_number"], usage["requests"]) == (2, 1)
