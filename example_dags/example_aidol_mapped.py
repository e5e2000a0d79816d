"""Create one AI-DOL conversation per agent with dynamic task mapping.

Good for a handful of agents: every mapped item is a task instance of its own, which is the
slow, heavy way to create hundreds of conversations.
"""

from __future__ import annotations

from airflow.sdk import DAG, task

from airflow_provider_aidol.operators.aidol import CreateConversationOperator

with DAG(
    dag_id="example_aidol_mapped",
    schedule=None,
    catchup=False,
    tags=["example", "aidol"],
) as dag:
    conversations = CreateConversationOperator.partial(task_id="create_conversation").expand(
        agent_id=["agent-1", "agent-2", "agent-3"]
    )

    @task
    def report(conversation_ids: list[str]) -> list[str]:
        """Collect the ids of every mapped task instance."""
        ids = list(conversation_ids)
        print(f"Created {len(ids)} conversations: {ids}")
        return ids

    report(conversations.output)  # type: ignore[arg-type]  # Airflow types a @task call by the values
