"""Create one AI-DOL conversation and hand its id to the next task.

Connection ``aidol_default`` must exist (see the README); ``make demo`` runs this DAG against the
embedded AI-DOL server.
"""

from __future__ import annotations

from airflow.sdk import DAG, Param, task

from airflow_provider_aidol.operators.aidol import CreateConversationOperator

with DAG(
    dag_id="example_aidol_conversation",
    schedule=None,
    catchup=False,
    params={"agent_id": Param("agent-1", type="string", minLength=1, description="Agent to talk to")},
    tags=["example", "aidol"],
) as dag:
    create = CreateConversationOperator(task_id="create_conversation", agent_id="{{ params.agent_id }}")

    @task
    def start_chat(conversation_id: str) -> str:
        """Stand-in for a chat or image task: everything downstream needs the conversation id."""
        print(f"Ready to chat in conversation {conversation_id}")
        return conversation_id

    start_chat(create.output)  # type: ignore[arg-type]  # Airflow types a @task call by the values
