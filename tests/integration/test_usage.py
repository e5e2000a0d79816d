"""Usage per try (XCom ``aidol_usage``) and the request budget, with the hook and in real DAG runs."""

from __future__ import annotations

import json

import pytest

from airflow_provider_aidol.exceptions import AidolRequestBudgetError
from airflow_provider_aidol.hooks.aidol import AidolHook
from airflow_provider_aidol.integration.usage import USAGE_XCOM_KEY
from airflow_provider_aidol.testing import Fault
from tests.aidol_default import point_connection, unique_items
from tests.airflow_db import xcom
from tests.dags import integration_dags


def test_the_hook_counts_requests_retries_and_failures(airflow_with_aidol_server, monkeypatch):
    point_connection(monkeypatch, airflow_with_aidol_server, retry_wait_initial=0, retry_wait_max=0)
    airflow_with_aidol_server.inject(Fault.STATUS, status=503)
    airflow_with_aidol_server.inject(Fault.RATE_LIMITED, retry_after=0)
    hook = AidolHook()
    hook.create_conversation("agent-1")
    assert hook.usage.counts() == {"requests": 3, "retries": 2, "rate_limited": 1, "failed": 2}
    assert len(airflow_with_aidol_server.requests) == 3


def test_the_connection_extra_is_the_default_budget_and_nothing_is_sent_past_it(
    airflow_with_aidol_server, monkeypatch
):
    point_connection(monkeypatch, airflow_with_aidol_server, max_requests=2)
    hook = AidolHook()
    hook.create_conversation("agent-1")
    hook.create_conversation("agent-1")
    with pytest.raises(AidolRequestBudgetError, match=r"^request budget of 2 reached$"):
        hook.create_conversation("agent-1")
    assert len(airflow_with_aidol_server.requests) == 2
    assert hook.usage.as_xcom(1) == {
        "try_number": 1,
        "requests": 2,
        "retries": 0,
        "rate_limited": 0,
        "failed": 0,
        "max_requests": 2,
        "budget_reached": True,
    }


def test_retries_count_against_the_budget(airflow_with_aidol_server, monkeypatch):
    point_connection(
        monkeypatch, airflow_with_aidol_server, max_requests=2, retry_wait_initial=0, retry_wait_max=0
    )
    airflow_with_aidol_server.inject(Fault.STATUS, status=503, times=5)
    with pytest.raises(AidolRequestBudgetError):
        AidolHook().create_conversation("agent-1")
    assert len(airflow_with_aidol_server.requests) == 2


def test_a_batch_stops_at_its_budget_and_reports_the_rest_not_sent(airflow_with_aidol_server, tmp_path):
    path = tmp_path / "results.jsonl"
    run = integration_dags.budget_continue.test(
        run_conf={"items": unique_items(5), "output_path": f"file://{path}"}
    )
    assert str(run.state) == "success"
    lines = sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda r: r["index"])
    assert [line["error"] for line in lines] == [None] * 3 + ["not sent: request budget of 3 reached"] * 2
    assert len(airflow_with_aidol_server.conversations) == 3
    usage = xcom("aidol_budget_continue", run.run_id, "create_conversations", USAGE_XCOM_KEY)
    assert usage == {
        "try_number": 1,
        "requests": 3,
        "retries": 0,
        "rate_limited": 0,
        "failed": 0,
        "max_requests": 3,
        "budget_reached": True,
    }


def test_with_on_error_fail_the_task_fails_after_recording_every_outcome(airflow_with_aidol_server, tmp_path):
    path = tmp_path / "results.jsonl"
    run = integration_dags.budget_fail.test(
        run_conf={"items": unique_items(5), "output_path": f"file://{path}"}
    )
    assert str(run.state) == "failed"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 5
    assert (
        sum(line["conversation_id"] is not None for line in lines)
        == 3
        == len(airflow_with_aidol_server.conversations)
    )
    usage = xcom("aidol_budget_fail", run.run_id, "create_conversations", USAGE_XCOM_KEY)
    assert (usage["try_number"], usage["requests"], usage["budget_reached"]) == (1, 3, True)
