"""A DAG for the secret-hygiene test: every operator (a deferred image too), templates, task retries."""

from __future__ import annotations

import tempfile
from datetime import timedelta

from airflow.sdk import DAG

from airflow_provider_aidol.operators.aidol import CreateConversationOperator
from airflow_provider_aidol.operators.batch import CreateConversationsOperator
from airflow_provider_aidol.operators.image import GenerateChatImageOperator

IMAGE_FOLDER = f"{tempfile.gettempdir()}/aidol-secret-hygiene"

with DAG(
    "aidol_secret_hygiene",
    schedule=None,
    params={"agent": "agent-1", "user": "hygiene-user"},
    default_args={"retries": 1, "retry_delay": timedelta(0)},
) as hygiene:
    created = CreateConversationOperator(
        task_id="create", agent_id="{{ params.agent }}", user_id="{{ params.user }}"
    )
    GenerateChatImageOperator(
        task_id="draw",
        agent_id="{{ params.agent }}",
        user_id="{{ params.user }}",
        conversation_id=created.output,
        text="a lighthouse",
        output_path=f"file://{IMAGE_FOLDER}/{{{{ run_id | replace(':', '_') }}}}.png",
        deferrable=True,
    )
    CreateConversationsOperator(
        task_id="create_batch",
        conversations=[{"agent_id": "agent-2", "user_id": "hygiene-batch-user"}, "agent-3"],
        on_error="fail",
    )
