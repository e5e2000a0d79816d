"""require_approval=True: the plan goes to Airflow's human-in-the-loop UI; nothing is sent unless approved."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from airflow import exceptions as airflow_exceptions
from airflow.sdk import exceptions as sdk_exceptions

from airflow_provider_aidol.client.endpoints import CONVERSATION_PATH
from airflow_provider_aidol.exceptions import AidolApprovalError, AidolConfigurationError
from airflow_provider_aidol.operators.batch import CreateConversationsOperator
from tests.aidol_default import items, point_connection, task_instance

# How a task waits for a person: awaiting_input on Airflow 3.3+, deferred before that (Airflow 3.1
# keeps TaskDeferred in airflow.exceptions; newer releases warn when it is read from there).
PARKED = tuple(
    getattr(module, name)
    for module, name in (
        (sdk_exceptions, "TaskAwaitingInput"),
        (sdk_exceptions if hasattr(sdk_exceptions, "TaskDeferred") else airflow_exceptions, "TaskDeferred"),
    )
    if hasattr(module, name)
)
hitl = pytest.importorskip("airflow.sdk.execution_time.hitl", reason="no human-in-the-loop support here")


@pytest.fixture
def approval_requests(must_call) -> list[dict[str, Any]]:
    """What the task asks Airflow's UI (the API server is not running in these tests)."""
    asked: list[dict[str, Any]] = []
    must_call.setattr(hitl, "upsert_hitl_detail", lambda **request: asked.append(request))
    return asked


def context() -> Any:
    ti = task_instance("approval", "batch")
    return {"ti": ti, "task_instance": ti}


def batch(count: int) -> CreateConversationsOperator:
    return CreateConversationsOperator(task_id="batch", conversations=items(count), require_approval=True)


def ask(operator: CreateConversationsOperator) -> Any:
    with pytest.raises(PARKED) as parked:
        operator.execute(context())
    return parked.value


def test_the_plan_is_shown_and_nothing_is_sent_while_waiting(aidol_server, monkeypatch, approval_requests):
    point_connection(monkeypatch, aidol_server, price_per_request=0.5, currency="USD")
    parked = ask(batch(6))
    assert getattr(parked, "method_name", None) == "execute_approved"
    [request] = approval_requests
    assert request["options"] == ["Approve", "Reject"]
    assert "| requests_needed | 6 |" in request["body"]
    assert '| estimated_cost | {"cost": 3.0, "currency": "USD"} |' in request["body"]
    assert aidol_server.requests == []


@pytest.mark.parametrize(
    "event",
    [
        {"chosen_options": ["Reject"], "params_input": {}, "responded_by_user": {"id": "1", "name": "ann"}},
        {"error": "no response", "error_type": "timeout"},
    ],
    ids=["rejected", "timed_out"],
)
def test_a_rejection_or_a_timeout_sends_nothing(aidol_server, monkeypatch, approval_requests, event):
    point_connection(monkeypatch, aidol_server)
    operator = batch(6)
    ask(operator)
    with pytest.raises(AidolApprovalError, match="nothing was sent") as refused:
        batch(6).execute_approved(context(), event)
    assert refused.value.fatal
    assert aidol_server.requests == []


def test_an_approved_batch_runs(aidol_server, monkeypatch, approval_requests):
    point_connection(monkeypatch, aidol_server)
    ask(batch(6))
    event = {
        "chosen_options": ["Approve"],
        "params_input": {},
        "responded_by_user": {"id": "1", "name": "ann"},
    }
    results = batch(6).execute_approved(context(), event)
    assert [r["status"] for r in results] == ["created"] * 6
    assert aidol_server.count(path=CONVERSATION_PATH) == 6


def test_without_human_in_the_loop_support_the_option_is_refused(aidol_server, monkeypatch):
    point_connection(monkeypatch, aidol_server)
    monkeypatch.setitem(sys.modules, "airflow.sdk.execution_time.hitl", None)  # as on Airflow 3.0
    with pytest.raises(
        AidolConfigurationError, match="require_approval=True needs Airflow's human-in-the-loop"
    ):
        batch(2).execute(context())
    assert aidol_server.requests == []
