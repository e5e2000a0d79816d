"""GenerateChatImageOperator inside real DAG runs (``dag.test()``), on a worker and deferred.

``dag.test()`` runs a deferred task's trigger in-process through Airflow's own trigger
machinery, then resumes the task, as a triggerer and a worker would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_aidol.client.endpoints import CHAT_IMAGE_PATH, PNG_SIGNATURE
from airflow_provider_aidol.hooks.aidol import AidolHook
from airflow_provider_aidol.operators.image import GenerateChatImageOperator
from airflow_provider_aidol.testing import Fault
from tests.aidol_default import USER
from tests.airflow_db import returned
from tests.dags import image_dags

if TYPE_CHECKING:
    from airflow.sdk import DAG


def run(dag: DAG, **params: Any) -> Any:
    """Run ``dag`` with ``dag.test()``; return the finished run.

    Every param is passed: a param left out of run_conf can keep the value an earlier dag.test() gave it.
    """
    defaults = image_dags.PARAMS if dag is not image_dags.mapped else {}
    return dag.test(run_conf={**defaults, **params})


def local_file(uri: str):
    from pathlib import Path

    assert uri.startswith("file://")
    return Path(uri.removeprefix("file://"))


@pytest.mark.parametrize("dag", [image_dags.on_worker, image_dags.deferred], ids=["on-worker", "deferred"])
def test_the_png_is_written_and_its_path_and_trace_id_are_handed_over(
    airflow_with_aidol_server, conversation, tmp_path, dag
):
    output = f"file://{tmp_path}/images/fox.png"
    dag_run = run(dag, conversation=conversation, output=output)
    assert dag_run.state == "success"
    received = returned(dag_run)
    assert received["path"] == output
    assert local_file(output).read_bytes().startswith(PNG_SIGNATURE)
    [request] = [r for r in airflow_with_aidol_server.requests if r.path == CHAT_IMAGE_PATH]
    assert received["trace_id"] == request.trace_id
    assert b'"metadata":{"scene":"forest"}' in request.body
    assert len(airflow_with_aidol_server.images) == 1


def test_the_image_xcom_the_trigger_leaves_is_deleted_once_the_file_is_written(
    airflow_with_aidol_server, conversation, tmp_path
):
    dag_run = run(image_dags.deferred, conversation=conversation, output=f"file://{tmp_path}/x.png")
    assert dag_run.state == "success"
    assert returned(dag_run)["image_data"] is None


def test_a_deferred_task_leaves_the_sent_marker_naming_its_request(
    airflow_with_aidol_server, conversation, tmp_path
):
    dag_run = run(image_dags.deferred, conversation=conversation, output=f"file://{tmp_path}/x.png")
    assert dag_run.state == "success"
    marker = returned(dag_run)["marker"]
    [image] = airflow_with_aidol_server.images
    assert marker["request_id"] == image.request_id
    assert set(marker) == {"attempt_id", "request_id", "sent_at", "requests"}
    assert marker["requests"] == 1


def test_the_worker_mode_leaves_no_marker(airflow_with_aidol_server, conversation, tmp_path):
    output = f"file://{tmp_path}/x.png"
    dag_run = run(image_dags.on_worker, conversation=conversation, output=output)
    assert dag_run.state == "success"
    assert returned(dag_run)["marker"] is None


def test_mapped_deferred_images_one_file_per_conversation(airflow_with_aidol_server, tmp_path):
    hook = AidolHook()
    conversations = [hook.create_conversation("agent-1", user_id=USER) for _ in range(3)]
    dag_run = run(image_dags.mapped, conversations=conversations, folder=str(tmp_path))
    assert dag_run.state == "success"
    paths = returned(dag_run)["path"]
    assert [local_file(path).name for path in paths] == ["0.png", "1.png", "2.png"]
    assert all(local_file(path).read_bytes().startswith(PNG_SIGNATURE) for path in paths)
    assert sorted(image.conversation_id for image in airflow_with_aidol_server.images) == sorted(
        conversations
    )
    assert sorted(image.text for image in airflow_with_aidol_server.images) == [
        "picture 0",
        "picture 1",
        "picture 2",
    ]


@pytest.mark.parametrize("dag", [image_dags.on_worker, image_dags.deferred], ids=["on-worker", "deferred"])
def test_server_errors_fail_the_task_with_the_typed_error(
    airflow_with_aidol_server, conversation, tmp_path, dag, capfd
):
    airflow_with_aidol_server.add_agent("chat-only", image_config=False)
    chat_only = AidolHook().create_conversation("chat-only", user_id=USER)
    assert (
        run(dag, agent="chat-only", conversation=chat_only, output=f"file://{tmp_path}/x.png").state
        == "failed"
    )
    output = capfd.readouterr()
    assert "AidolImageConfigError" in output.out + output.err
    assert "Agent missing image generation config" in output.out + output.err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("dag", [image_dags.on_worker, image_dags.deferred], ids=["on-worker", "deferred"])
def test_a_dropped_answer_is_not_resent(airflow_with_aidol_server, conversation, tmp_path, dag):
    airflow_with_aidol_server.inject(Fault.DROP_AFTER_CREATE, path=CHAT_IMAGE_PATH)
    assert run(dag, conversation=conversation, output=f"file://{tmp_path}/x.png").state == "failed"
    assert airflow_with_aidol_server.count(path=CHAT_IMAGE_PATH) == 1


def test_a_rate_limited_deferred_request_is_resent_by_the_trigger(
    airflow_with_aidol_server, conversation, tmp_path
):
    airflow_with_aidol_server.inject(Fault.RATE_LIMITED, path=CHAT_IMAGE_PATH, retry_after=0)
    assert (
        run(image_dags.deferred, conversation=conversation, output=f"file://{tmp_path}/x.png").state
        == "success"
    )
    assert airflow_with_aidol_server.count(path=CHAT_IMAGE_PATH) == 2
    assert len(airflow_with_aidol_server.images) == 1


@pytest.mark.parametrize("dag", [image_dags.on_worker, image_dags.deferred], ids=["on-worker", "deferred"])
@pytest.mark.parametrize(
    ("output", "message"),
    [
        (" ", "output_path must be"),
        ("images/x.png", "output_path must be"),  # relative: depends on the worker's directory
        ("file://images/x.png", "output_path must be"),  # a host, not an absolute path
        ("gs://google_cloud_default@bucket/x.png", "cannot be written here"),  # no storage provider installed
    ],
)
def test_a_bad_output_path_fails_before_any_request(
    airflow_with_aidol_server, conversation, dag, output, message, capfd
):
    assert run(dag, conversation=conversation, output=output).state == "failed"
    assert message in capfd.readouterr().out
    assert airflow_with_aidol_server.count(path=CHAT_IMAGE_PATH) == 0


def test_an_absolute_local_path_is_returned_as_given(airflow_with_aidol_server, conversation, tmp_path):
    output = str(tmp_path / "plain.png")
    dag_run = run(image_dags.on_worker, conversation=conversation, output=output)
    assert dag_run.state == "success"
    assert returned(dag_run)["path"] == output
    assert (tmp_path / "plain.png").read_bytes().startswith(PNG_SIGNATURE)


def test_an_interrupted_event_fails_the_task_naming_the_request_and_the_way_out():
    from airflow_provider_aidol.exceptions import AidolInterruptedError

    operator = GenerateChatImageOperator(
        task_id="generate", agent_id="a", conversation_id="c", text="t", output_path="file:///tmp/x.png"
    )
    event = {"status": "interrupted", "request_id": "req-1", "sent_at": "2026-11-24T01:02:03+00:00"}
    with pytest.raises(AidolInterruptedError) as caught:
        operator.execute_complete({}, event)
    message = str(caught.value)
    assert "X-Request-ID req-1, sent 2026-11-24T01:02:03+00:00" in message
    assert "may already have generated and billed the image" in message
    assert "resend_after_triggerer_restart=True" in message


def test_deferrable_checks_every_input_before_deferring(airflow_with_aidol_server, conversation, tmp_path):
    operator = GenerateChatImageOperator(
        task_id="generate",
        agent_id="agent-1",
        user_id=USER,
        conversation_id=conversation,
        text="t",
        metadata={"when": {1, 2}},
        output_path=f"file://{tmp_path}/x.png",
        deferrable=True,
    )
    with pytest.raises(ValueError, match="metadata"):
        operator.execute({})
    assert airflow_with_aidol_server.count(path=CHAT_IMAGE_PATH) == 0
