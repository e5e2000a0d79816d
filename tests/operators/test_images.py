"""GenerateChatImagesOperator in real DAG runs (``dag.test()``) against the embedded server.

``dag.test()`` runs the deferred batch's trigger in-process through Airflow's own trigger
machinery, then resumes the task, as a triggerer and a worker would.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_aidol.client.endpoints import CHAT_IMAGE_PATH, PNG_SIGNATURE
from airflow_provider_aidol.testing import Fault
from tests.aidol_default import conversations, plain
from tests.airflow_db import returned
from tests.dags import images_dags

if TYPE_CHECKING:
    from pathlib import Path

    from airflow.sdk import DAG


def run(dag: DAG, images: list[Any], folder: Path) -> tuple[str, Any]:
    """Run ``dag`` over ``images`` into ``folder``; return the run's state and what the task handed over."""
    dag_run = dag.test(run_conf={"images": images, "output": f"file://{folder}"})
    return dag_run.state, returned(dag_run)


def manifest(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def billed(server: Any) -> int:
    return len(server.images)


@pytest.mark.parametrize("dag", [images_dags.deferred, images_dags.on_worker], ids=["deferred", "on-worker"])
def test_every_image_is_written_beside_a_manifest_and_summarised(airflow_with_aidol_server, tmp_path, dag):
    ids = conversations(3)
    images = [
        {"conversation_id": cid, "text": f"picture {n}", "metadata": {"n": n}} for n, cid in enumerate(ids)
    ]
    state, handed = run(dag, images, tmp_path)
    assert state == "success"
    summary = handed["summary"]
    assert summary == {
        "total": 3,
        "generated": 3,
        "failed": 0,
        "in_doubt": 0,
        "not_sent": 0,
        "already_done": 0,
        "manifest": f"file://{tmp_path}/manifest.jsonl",
    }
    assert all((tmp_path / f"{n}.png").read_bytes().startswith(PNG_SIGNATURE) for n in range(3))
    lines = sorted(manifest(tmp_path), key=lambda line: line["index"])
    by_request = {image.request_id: image for image in airflow_with_aidol_server.images}
    for n, line in enumerate(lines):
        assert (line["index"], line["status"], line["conversation_id"]) == (n, "created", ids[n])
        assert line["path"] == f"file://{tmp_path}/{n}.png"
        assert by_request[line["request_id"]].text == f"picture {n}"
        assert line["trace_id"]
        assert line["error"] is None
    assert billed(airflow_with_aidol_server) == 3
    assert handed["usage"]["requests"] == 3


def test_a_rerun_into_the_same_folder_pays_for_nothing_already_there(airflow_with_aidol_server, tmp_path):
    images = [{"conversation_id": cid, "text": "a fox"} for cid in conversations(2)]
    assert run(images_dags.deferred, images, tmp_path)[0] == "success"
    (tmp_path / "1.png").unlink()  # say a person deleted one image
    state, handed = run(images_dags.deferred, images, tmp_path)
    assert state == "success"
    assert (handed["summary"]["generated"], handed["summary"]["already_done"]) == (1, 1)
    assert billed(airflow_with_aidol_server) == 3
    state, handed = run(images_dags.deferred, images, tmp_path)
    assert (handed["summary"]["already_done"], handed["usage"]["requests"]) == (2, 0)
    assert billed(airflow_with_aidol_server) == 3


def test_bad_items_fail_one_by_one_with_a_clear_message_and_the_others_go_on(
    airflow_with_aidol_server, tmp_path
):
    [good, other] = conversations(2)
    images = [
        {"conversation_id": good, "text": "a fox"},
        "not a dict",
        {"conversation_id": other, "text": "  "},
        {"conversation_id": good, "text": "a fox"},
        {"conversation_id": "no-such-conversation", "text": "an owl"},
    ]
    state, handed = run(images_dags.deferred, images, tmp_path)
    assert state == "success"
    assert (handed["summary"]["generated"], handed["summary"]["failed"]) == (1, 4)
    lines = {line["index"]: line for line in manifest(tmp_path)}
    assert lines[1]["error"].startswith("images[1]: is not a dict but str")
    assert "text" in lines[2]["error"]
    assert lines[3]["error"].startswith("images[3] is a duplicate of images[0]")
    assert (lines[4]["error_class"], lines[4]["status"]) == ("AidolNotFoundError", "failed")
    assert "Conversation not found" in lines[4]["error"]
    assert airflow_with_aidol_server.count(path=CHAT_IMAGE_PATH) == 2  # the good one and the unknown id
    assert billed(airflow_with_aidol_server) == 1


@pytest.mark.parametrize(
    "images",
    [
        "not a list",
        {"conversation_id": "c", "text": "t"},
        [{"text": "no conversation"}, 3],
    ],
    ids=["a string", "a dict", "no valid item"],
)
def test_malformed_input_is_refused_before_anything_is_sent(
    airflow_with_aidol_server, tmp_path, images, capfd
):
    state, _ = run(images_dags.deferred, images, tmp_path)
    assert state == "failed"
    assert "ValueError" in capfd.readouterr().out
    assert airflow_with_aidol_server.count(path=CHAT_IMAGE_PATH) == 0


def test_with_on_error_fail_one_bad_item_refuses_the_batch_before_anything_is_sent(
    airflow_with_aidol_server, tmp_path, capfd
):
    [good] = conversations(1)
    state, _ = run(images_dags.failing, [{"conversation_id": good, "text": "a fox"}, {"text": "x"}], tmp_path)
    assert state == "failed"
    assert "images[1]: conversation_id is missing" in plain(capfd.readouterr().out)
    assert airflow_with_aidol_server.count(path=CHAT_IMAGE_PATH) == 0


def test_with_on_error_fail_a_failed_image_fails_the_task_after_every_item(
    airflow_with_aidol_server, tmp_path
):
    airflow_with_aidol_server.add_agent("chat-only", image_config=False)
    [good] = conversations(1)
    [chat_only] = conversations(1, agent="chat-only")
    images = [
        {"conversation_id": good, "text": "a"},
        {"conversation_id": chat_only, "text": "b", "agent_id": "chat-only"},
    ]
    state, _ = run(images_dags.failing, images, tmp_path)
    assert state == "failed"
    assert (tmp_path / "0.png").exists()
    assert {line["index"]: line.get("error_class") for line in manifest(tmp_path)} == {
        0: None,
        1: "AidolImageConfigError",
    }


@pytest.mark.parametrize("fault", [Fault.NO_CONVERSATION_ID, Fault.BROKEN_IMAGE, Fault.HUGE_IMAGE])
def test_an_answer_without_a_usable_image_fails_that_item_only(airflow_with_aidol_server, tmp_path, fault):
    images = [{"conversation_id": cid, "text": f"p{n}"} for n, cid in enumerate(conversations(3))]
    airflow_with_aidol_server.inject(fault, path=CHAT_IMAGE_PATH)
    state, handed = run(images_dags.deferred, images, tmp_path)
    assert state == "success"
    assert (handed["summary"]["generated"], handed["summary"]["failed"]) == (2, 1)
    [failed] = [line for line in manifest(tmp_path) if line["status"] == "failed"]
    assert failed["error_class"] == "AidolResponseError"
    assert not (tmp_path / f"{failed['index']}.png").exists()


def test_an_image_in_doubt_is_reported_and_never_resent_unless_asked(airflow_with_aidol_server, tmp_path):
    images = [{"conversation_id": cid, "text": f"p{n}"} for n, cid in enumerate(conversations(2))]
    airflow_with_aidol_server.inject(Fault.DROP_AFTER_CREATE, path=CHAT_IMAGE_PATH)
    state, handed = run(images_dags.deferred, images, tmp_path)
    assert state == "success"
    assert (handed["summary"]["generated"], handed["summary"]["in_doubt"]) == (1, 1)
    [doubt] = [line for line in manifest(tmp_path) if line["status"] == "in_doubt"]
    dropped = [r for r in airflow_with_aidol_server.requests if r.fault == Fault.DROP_AFTER_CREATE]
    assert doubt["request_id"] == dropped[0].request_id
    assert billed(airflow_with_aidol_server) == 2
    # Run again: nothing is sent; the item stays in doubt.
    state, handed = run(images_dags.deferred, images, tmp_path)
    assert (handed["summary"]["in_doubt"], handed["usage"]["requests"]) == (1, 0)
    # resend_in_doubt=True pays for it again, knowingly.
    state, handed = run(images_dags.resend_in_doubt, images, tmp_path)
    assert (handed["summary"]["generated"], handed["summary"]["already_done"]) == (1, 1)
    assert billed(airflow_with_aidol_server) == 3


def test_failed_items_are_sent_again_only_with_retry_failed(airflow_with_aidol_server, tmp_path):
    images = [{"conversation_id": "no-such-conversation", "text": "a fox"}]
    images.append({"conversation_id": conversations(1)[0], "text": "an owl"})
    assert run(images_dags.deferred, images, tmp_path)[1]["summary"]["failed"] == 1
    _, handed = run(images_dags.deferred, images, tmp_path)
    assert handed["usage"]["requests"] == 0
    _, handed = run(images_dags.retry_failed, images, tmp_path)
    assert handed["usage"]["requests"] == 1
    assert airflow_with_aidol_server.count(path=CHAT_IMAGE_PATH) == 3


def test_the_request_budget_holds_and_the_rest_is_not_sent(airflow_with_aidol_server, tmp_path):
    images = [{"conversation_id": cid, "text": f"p{n}"} for n, cid in enumerate(conversations(4))]
    state, handed = run(images_dags.budget, images, tmp_path)
    assert state == "success"
    assert (handed["summary"]["generated"], handed["summary"]["not_sent"]) == (2, 2)
    assert billed(airflow_with_aidol_server) == 2
    not_sent = [line for line in manifest(tmp_path) if line["status"] == "not_sent"]
    assert {line["not_sent_reason"] for line in not_sent} == {"request_budget"}
    # A new run has a new budget and sends what was not sent.
    state, handed = run(images_dags.budget, images, tmp_path)
    assert (handed["summary"]["generated"], handed["summary"]["already_done"]) == (2, 2)
    assert billed(airflow_with_aidol_server) == 4


def test_a_folder_holding_another_batch_is_refused_before_anything_is_sent(
    airflow_with_aidol_server, tmp_path, capfd
):
    [one, two] = conversations(2)
    assert run(images_dags.deferred, [{"conversation_id": one, "text": "a"}], tmp_path)[0] == "success"
    state, _ = run(images_dags.deferred, [{"conversation_id": two, "text": "b"}], tmp_path)
    assert state == "failed"
    assert "holds another batch's images" in capfd.readouterr().out
    assert airflow_with_aidol_server.count(path=CHAT_IMAGE_PATH) == 1
