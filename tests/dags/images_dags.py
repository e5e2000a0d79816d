"""DAGs the batch image operator tests run with ``dag.test()``: one task, its options fixed per DAG."""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_aidol.operators.image import GenerateChatImagesOperator

PARAMS: dict[str, Any] = {"images": [], "output": ""}


@task
def record(summary: Any, **context: Any) -> dict[str, Any]:
    """Return what the batch image task handed over: its summary and its usage XCom."""
    ti = context["ti"]
    return {"summary": summary, "usage": ti.xcom_pull(task_ids="generate", key="aidol_usage")}


def images_dag(dag_id: str, **operator_kwargs: Any) -> DAG:
    """A DAG with one batch image task, given the run's ``images`` and ``output`` params."""
    with DAG(dag_id, schedule=None, params=PARAMS, render_template_as_native_obj=True) as dag:
        images = GenerateChatImagesOperator(
            task_id="generate",
            images="{{ params.images }}",
            output_path="{{ params.output }}",
            agent_id="agent-1",
            user_id="bob",
            **operator_kwargs,
        )
        record(images.output)
    return dag


deferred = images_dag("aidol_test_images", on_error="continue")
on_worker = images_dag("aidol_test_images_on_worker", on_error="continue", deferrable=False)
failing = images_dag("aidol_test_images_fail", on_error="fail")
retry_failed = images_dag("aidol_test_images_retry_failed", on_error="continue", retry_failed=True)
resend_in_doubt = images_dag("aidol_test_images_resend_in_doubt", on_error="continue", resend_in_doubt=True)
budget = images_dag("aidol_test_images_budget", on_error="continue", max_requests=2, max_concurrency=1)
