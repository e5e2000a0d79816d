"""DAGs the image operator tests run with ``dag.test()``: one image, deferred or not, and a mapped set."""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_aidol.operators.image import GenerateChatImageOperator

PARAMS: dict[str, Any] = {
    "agent": "agent-1",
    "user": "bob",
    "conversation": "",
    "text": "a red fox",
    "output": "",
    "scene": "forest",
}


@task(multiple_outputs=False)  # Airflow 3.0 cannot keep an XCom of None: keep the dict whole
def record(path: Any, **context: Any) -> dict[str, Any]:
    """Return what the image task handed over: its path(s), its traceId XCom and the trigger's marker."""
    ti = context["ti"]
    return {
        "path": path if isinstance(path, str) else list(path),
        "trace_id": ti.xcom_pull(task_ids="generate", key="trace_id"),
        "marker": ti.xcom_pull(task_ids="generate", key="aidol_image_request"),
        "image_data": ti.xcom_pull(task_ids="generate", key="aidol_image_data"),
    }


def single_image_dag(dag_id: str, **operator_kwargs: Any) -> DAG:
    """A DAG with one image task whose every argument comes from the run's params."""
    with DAG(dag_id, schedule=None, params=PARAMS) as dag:
        image = GenerateChatImageOperator(
            task_id="generate",
            agent_id="{{ params.agent }}",
            user_id="{{ params.user }}",
            conversation_id="{{ params.conversation }}",
            text="{{ params.text }}",
            metadata={"scene": "{{ params.scene }}"},
            output_path="{{ params.output }}",
            **operator_kwargs,
        )
        record(image.output)
    return dag


on_worker = single_image_dag("aidol_test_image", deferrable=False)
deferred = single_image_dag("aidol_test_image_deferred", deferrable=True)

with DAG("aidol_test_image_mapped", schedule=None, params={"conversations": [], "folder": ""}) as mapped:

    @task
    def requests(**context: Any) -> list[dict[str, str]]:
        """One image request per conversation handed in by the run's params."""
        return [
            {"conversation_id": conversation, "text": f"picture {number}"}
            for number, conversation in enumerate(context["params"]["conversations"])
        ]

    images = GenerateChatImageOperator.partial(
        task_id="generate",
        agent_id="agent-1",
        user_id="bob",
        output_path="file://{{ params.folder }}/{{ ds }}/{{ ti.map_index }}.png",
        deferrable=True,
    ).expand_kwargs(requests())
    record(images.output)
