"""DAGs the batch-operator tests run with ``dag.test()``; items and options come in as params."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_aidol.operators.aidol import CreateConversationOperator
from airflow_provider_aidol.operators.batch import CreateConversationsOperator


@task
def record(value: Any) -> Any:
    """Return the XCom the upstream operator handed over (the test reads it from the database)."""
    return value


def batch_dag(dag_id: str, **operator_kwargs: Any) -> DAG:
    """A DAG: CreateConversationsOperator on ``params.items``, then ``record`` returning its XCom."""
    with DAG(
        dag_id,
        schedule=None,
        params={"items": [], "output_path": None},
        render_template_as_native_obj=True,
    ) as dag:
        batch = CreateConversationsOperator(
            task_id="create_conversations",
            conversations="{{ params['items'] }}",
            output_path="{{ params['output_path'] }}",
            max_workers=2,
            retry_delay=timedelta(0),
            **operator_kwargs,
        )
        record(batch.output)
    return dag


failing = batch_dag("aidol_batch_fail", on_error="fail")
continuing = batch_dag("aidol_batch_continue", on_error="continue")
resuming = batch_dag("aidol_batch_resume", on_error="fail", retries=1)
reusing = batch_dag("aidol_batch_reuse", reuse_existing=True)
# Two retries, as a production task would have: a configuration error must not use them.
gated = batch_dag("aidol_batch_gate", on_error="fail", retries=2)

with DAG("aidol_single_reuse", schedule=None, params={"user": "nobody"}) as single_reuse:
    single = CreateConversationOperator(
        task_id="create", agent_id="agent-1", user_id="{{ params.user }}", reuse_existing=True
    )
    record(single.output)

# The SQL registry behind the connection id the tests' registry fixtures define.
registry_reusing = batch_dag("aidol_batch_registry", reuse_existing=True, registry_conn_id="aidol_registry")
bad_registry = batch_dag("aidol_batch_bad_registry", reuse_existing=True, registry_conn_id="no_such_registry")

with DAG("aidol_single_registry", schedule=None, params={"user": "nobody"}) as single_registry:
    single_in_sql = CreateConversationOperator(
        task_id="create",
        agent_id="agent-1",
        user_id="{{ params.user }}",
        reuse_existing=True,
        registry_conn_id="aidol_registry",
    )
    record(single_in_sql.output)
