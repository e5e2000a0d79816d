"""DAGs of the Airflow-integration tests: asset events, lineage, the request budget, the retry policy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Asset, task

from airflow_provider_aidol.operators.aidol import CreateConversationOperator
from airflow_provider_aidol.operators.batch import CreateConversationsOperator
from airflow_provider_aidol.operators.image import GenerateChatImageOperator
from airflow_provider_aidol.retry_policy import AidolRetryPolicy

NIGHTLY = Asset("aidol://conversations/nightly")
CONVERSATION = Asset("aidol://conversations/one")
IMAGE = Asset("aidol://images/one")


with DAG(
    "aidol_assets_batch",
    schedule=None,
    params={"items": [], "output_path": None},
    render_template_as_native_obj=True,
) as assets_batch:
    CreateConversationsOperator(
        task_id="create_conversations",
        conversations="{{ params['items'] }}",
        output_path="{{ params['output_path'] }}",
        on_error="continue",
        outlets=[NIGHTLY],
    )

with DAG("aidol_assets_consumer", schedule=[NIGHTLY]) as assets_consumer:

    @task(inlets=[NIGHTLY])
    def read_summary(triggering_asset_events: Any = None) -> dict[str, Any]:
        """Return the batch summary the triggering asset event carries."""
        [event] = triggering_asset_events[NIGHTLY]
        return dict(event.extra)

    read_summary()


def budget_dag(dag_id: str, on_error: str) -> DAG:
    """A batch of ``params.items`` with a request budget of 3 and one worker."""
    with DAG(
        dag_id, schedule=None, params={"items": [], "output_path": None}, render_template_as_native_obj=True
    ) as dag:
        CreateConversationsOperator(
            task_id="create_conversations",
            conversations="{{ params['items'] }}",
            output_path="{{ params['output_path'] }}",
            on_error=on_error,
            max_requests=3,
            max_workers=1,
            # On 3.3+ AidolRetryPolicy fails a batch stopped by its budget at once; 3.1/3.2 would retry.
            retries=2 if AidolRetryPolicy is not None else 0,
            retry_delay=timedelta(0),
        )
    return dag


budget_continue = budget_dag("aidol_budget_continue", "continue")
budget_fail = budget_dag("aidol_budget_fail", "fail")

with DAG("aidol_rate_limited_retry", schedule=None) as rate_limited_retry:
    # Without the retry policy the retry would wait retry_delay (an hour) and the run would hang.
    CreateConversationOperator(
        task_id="create", agent_id="agent-1", retries=1, retry_delay=timedelta(hours=1)
    )

with DAG(
    "aidol_assets_one",
    schedule=None,
    params={"user": "bob", "output_path": ""},
    render_template_as_native_obj=True,
) as assets_one:
    # The registry keeps conversations in Airflow Variables, so a second run reuses the first's.
    conversation = CreateConversationOperator(
        task_id="create",
        agent_id="agent-1",
        user_id="{{ params.user }}",
        reuse_existing=True,
        outlets=[CONVERSATION],
    )
    GenerateChatImageOperator(
        task_id="generate",
        agent_id="agent-1",
        user_id="{{ params.user }}",
        conversation_id=conversation.output,
        text="a red fox",
        output_path="{{ params.output_path }}",
        deferrable=False,
        outlets=[IMAGE],
    )

with DAG(
    "aidol_best_effort_reporting",
    schedule=None,
    params={"batch_output": "", "image_output": ""},
    render_template_as_native_obj=True,
) as best_effort_reporting:
    # Retries on: a try failing after its requests would be retried and create everything again.
    once_more: dict[str, Any] = {"retries": 2, "retry_delay": timedelta(0)}
    created = CreateConversationOperator(
        task_id="create", agent_id="agent-1", user_id="reporter", outlets=[CONVERSATION], **once_more
    )
    CreateConversationsOperator(
        task_id="create_conversations",
        conversations=[{"agent_id": agent, "user_id": "reporter"} for agent in ("agent-1", "agent-2")],
        output_path="{{ params.batch_output }}",
        outlets=[NIGHTLY],
        **once_more,
    )
    GenerateChatImageOperator(
        task_id="generate",
        agent_id="agent-1",
        user_id="reporter",
        conversation_id=created.output,
        text="a red fox",
        output_path="{{ params.image_output }}",
        deferrable=False,
        outlets=[IMAGE],
        **once_more,
    )

with DAG(
    "aidol_lineage",
    schedule=None,
    params={"user": "bob", "image_path": "", "items": [], "batch_path": None},
    render_template_as_native_obj=True,
) as lineage:
    # Every operator in one run: tests/integration/test_lineage.py reads all their events at once.
    # `airflow dags test` runs the tasks in one process, whose hook lineage collector keeps what
    # earlier tasks wrote; "create" reports no outputs of its own, so it runs first.
    created = CreateConversationOperator(task_id="create", agent_id="agent-1", user_id="{{ params.user }}")
    GenerateChatImageOperator(
        task_id="generate",
        agent_id="agent-1",
        user_id="{{ params.user }}",
        conversation_id=created.output,
        text="a red fox",
        output_path="{{ params.image_path }}",
        deferrable=False,
    )
    created >> CreateConversationsOperator(
        task_id="create_conversations",
        conversations="{{ params['items'] }}",
        output_path="{{ params['batch_path'] }}",
        on_error="continue",
    )
