"""DAGs the operator tests run with ``dag.test()`` (which needs them in a DAG bundle).

A downstream task ``record`` returns what it received, so a test can check the hand-over in the
XCom the run stored (``tests.airflow_db.returned``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_aidol.operators.aidol import CreateConversationOperator


@task
def record(value: Any) -> Any:
    """Return what the upstream operator handed over (a mapped task's output is a lazy sequence)."""
    return value if isinstance(value, str) else list(value)


with DAG("aidol_test_single", schedule=None, params={"agent": "agent-2", "user": "bob"}) as single:
    created = CreateConversationOperator(
        task_id="create", agent_id="{{ params.agent }}", user_id="{{ params.user }}"
    )
    record(created.output)

with DAG("aidol_test_mapped", schedule=None) as mapped:
    conversations = CreateConversationOperator.partial(task_id="create").expand(
        agent_id=["agent-1", "agent-2", "agent-3"]
    )
    record(conversations.output)

with DAG("aidol_test_retries", schedule=None, params={"agent": "agent-1"}) as with_retries:
    CreateConversationOperator(
        task_id="create", agent_id="{{ params.agent }}", retries=2, retry_delay=timedelta(0)
    )
