"""CreateConversationOperator inside real DAG runs (``dag.test()`` on a migrated SQLite database)."""

from __future__ import annotations

import json

from tests.airflow_db import returned
from tests.dags import operator_dags


def test_downstream_task_receives_the_conversation_id(airflow_with_aidol_server, capfd):
    dag_run = operator_dags.single.test()
    assert dag_run.state == "success"
    [created] = airflow_with_aidol_server.conversations
    assert (created.agent_id, created.user_id) == ("agent-2", "bob")
    assert returned(dag_run) == created.conversation_id
    [request] = airflow_with_aidol_server.requests
    logged = (
        f"Created AI-DOL conversation {created.conversation_id} with agent agent-2 "
        f"(traceId {request.trace_id})"
    )
    assert logged in capfd.readouterr().out


def test_mapped_over_agents_creates_one_conversation_each(airflow_with_aidol_server):
    dag_run = operator_dags.mapped.test()
    assert dag_run.state == "success"
    by_agent = {c.agent_id: c.conversation_id for c in airflow_with_aidol_server.conversations}
    assert sorted(by_agent) == ["agent-1", "agent-2", "agent-3"]
    assert returned(dag_run) == [by_agent["agent-1"], by_agent["agent-2"], by_agent["agent-3"]]


def test_auth_errors_fail_the_task_without_airflow_retries(airflow_with_aidol_server, monkeypatch):
    conn = json.loads(airflow_with_aidol_server.connection_json())
    conn["password"] = "not-the-secret"
    monkeypatch.setenv("AIRFLOW_CONN_AIDOL_DEFAULT", json.dumps(conn))
    assert operator_dags.with_retries.test().state == "failed"
    assert airflow_with_aidol_server.count() == 1


def test_other_errors_use_airflow_task_retries(airflow_with_aidol_server):
    assert operator_dags.with_retries.test(run_conf={"agent": "missing-agent"}).state == "failed"
    assert airflow_with_aidol_server.count() == 3
