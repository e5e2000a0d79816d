"""A DAG for the secret-hygiene test: both operators, templated fields, task retries."""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG

from airflow_provider_aidol.operators.aidol import CreateConversationOperator
from airflow_provider_aidol.operators.batch import CreateConversationsOperator

with DAG(
    "aidol_secret_hygiene",
    schedule=None,
    params={"agent": "agent-1", "user": "hygiene-user"},
    default_args={"retries": 1, "retry_delay": timedelta(0)},
) as hygiene:
    CreateConversationOperator(task_id="create", agent_id="{{ params.agent }}", user_id="{{ params.user }}")
    CreateConversationsOperator(
        task_id="create_batch",
        conversations=[{"agent_id": "agent-2", "user_id": "hygiene-batch-user"}, "agent-3"],
        on_error="fail",
    )
