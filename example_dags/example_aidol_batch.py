"""Nightly batch: conversations for many (user, agent) pairs in one task, within the rate limit.

An upstream task lists the pairs (here a fixed list; in practice a query or a file), the batch
operator creates them concurrently (or reuses each pair's conversation from earlier runs), writes
every outcome as JSON lines, and hands a summary downstream.
"""

from __future__ import annotations

import os
import tempfile

from airflow.sdk import DAG, task

from airflow_provider_aidol.operators.batch import CreateConversationsOperator

OUTPUT_DIR = os.environ.get("AIDOL_EXAMPLE_OUTPUT_DIR", tempfile.gettempdir())

with DAG(
    dag_id="example_aidol_batch",
    schedule="@daily",
    catchup=False,
    tags=["example", "aidol"],
) as dag:

    @task
    def pairs_to_serve() -> list[dict[str, str]]:
        """The (user, agent) pairs that need a conversation today."""
        return [{"user_id": f"user-{n:03d}", "agent_id": f"agent-{n % 3 + 1}"} for n in range(30)]

    batch = CreateConversationsOperator(
        task_id="create_conversations",
        conversations=pairs_to_serve(),
        max_workers=8,
        reuse_existing=True,
        output_path=f"file://{OUTPUT_DIR}/aidol/{{{{ ds }}}}/{{{{ run_id | replace(':', '_') }}}}.jsonl",
        retries=2,
    )

    @task
    def report(summary: dict[str, object]) -> None:
        """Downstream tasks read the JSON lines at summary['output_path']."""
        print(f"Batch summary: {summary}")

    report(batch.output)  # type: ignore[arg-type]  # Airflow types a @task call by the values
