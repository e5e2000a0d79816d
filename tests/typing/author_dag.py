"""A DAG file as a DAG author writes it: ``mypy --strict`` passes on it without an ignore.

``make lint`` type-checks it with the project's strict settings, and no override relaxes an
error code for it (tests/test_packaging.py): every operator, with the values Airflow hands
templated parameters (template strings, ``create.output``, mapped arguments).
"""

from __future__ import annotations

from airflow.sdk import DAG, Param, task

from airflow_provider_aidol.operators.aidol import CreateConversationOperator
from airflow_provider_aidol.operators.batch import CreateConversationsOperator
from airflow_provider_aidol.operators.image import GenerateChatImageOperator, GenerateChatImagesOperator

with DAG(
    dag_id="typed_author_dag",
    schedule=None,
    params={"agent_id": Param("agent-1", type="string"), "user_id": Param("user-1", type="string")},
):
    create = CreateConversationOperator(
        task_id="create", agent_id="{{ params.agent_id }}", user_id="{{ params.user_id }}"
    )
    GenerateChatImageOperator(
        task_id="generate",
        agent_id="{{ params.agent_id }}",
        user_id="{{ params.user_id }}",
        conversation_id=create.output,
        text="a red fox",
        language="en",
        metadata={"source": "typed_author_dag"},
        output_path="file:///tmp/typed/{{ run_id }}.png",
    )
    mapped = CreateConversationOperator.partial(task_id="per_agent").expand(agent_id=["agent-1", "agent-2"])
    GenerateChatImageOperator.partial(
        task_id="per_conversation",
        agent_id="agent-1",
        text="a red fox",
        output_path="file:///tmp/typed/{{ ti.map_index }}.png",
    ).expand(conversation_id=mapped.output)
    CreateConversationsOperator(
        task_id="batch",
        conversations=[{"agent_id": "agent-1", "user_id": "user-2"}],
        output_path="file:///tmp/typed/{{ ds }}.jsonl",
        on_error="continue",
    )
    conversations = CreateConversationsOperator(
        task_id="conversations_for_images",
        conversations=[{"agent_id": "agent-1", "user_id": "user-3"}],
    )

    @task
    def caption() -> str:
        return "a red fox"

    GenerateChatImagesOperator(
        task_id="images",
        images=conversations.output,
        text=caption(),
        agent_id="{{ params.agent_id }}",
        language="en",
        metadata={"source": "typed_author_dag"},
        output_path="file:///tmp/typed/images/{{ run_id }}",
        max_concurrency=8,
        on_error="continue",
    )
    GenerateChatImagesOperator(
        task_id="images_from_params",
        images="{{ params.images }}",
        output_path="file:///tmp/typed/images/{{ run_id }}/params",
    )
