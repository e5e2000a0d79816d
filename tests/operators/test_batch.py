"""CreateConversationsOperator (and reuse) inside real DAG runs on the embedded server.

The crash and race tests run the batch in processes of their own (``batch_runner.py``): one
killed with SIGKILL mid-batch, two started together on one ``output_path``.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_aidol.operators.batch import CreateConversationsOperator
from airflow_provider_aidol.testing import Fault
from tests.aidol_default import unique_items
from tests.airflow_db import returned
from tests.dags import batch_dags
from tests.forked import ForkedProcess
from tests.operators import batch_runner

if TYPE_CHECKING:
    from pathlib import Path

    from airflow.sdk import DAG


def run(dag: DAG, **params: Any) -> Any:
    """Run ``dag`` with ``dag.test()`` and ``params`` as the run's conf; return the finished run."""
    return dag.test(run_conf=params)


def read_lines(path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_without_output_path_the_xcom_is_the_result_list(airflow_with_aidol_server):
    batch = unique_items(5)
    dag_run = run(batch_dags.failing, items=batch)
    assert dag_run.state == "success"
    results = returned(dag_run)
    assert [r["user_id"] for r in results] == [i["user_id"] for i in batch]
    assert all(r["conversation_id"] and r["error"] is None and r["reused"] is False for r in results)
    assert len(airflow_with_aidol_server.conversations) == 5


def test_with_output_path_the_xcom_is_a_summary_and_lines_are_written(airflow_with_aidol_server, tmp_path):
    path = tmp_path / "out" / "results.jsonl"
    dag_run = run(batch_dags.failing, items=unique_items(6), output_path=f"file://{path}")
    assert dag_run.state == "success"
    summary = returned(dag_run)
    assert summary == {
        "output_path": f"file://{path}",
        "total": 6,
        "created": 6,
        "reused": 0,
        "already_recorded": 0,
        "failed": 0,
        "not_sent": 0,
        "orphaned": 0,
        "in_doubt": 0,
    }
    assert not path.with_name("results.jsonl.sending").exists(), "the journal goes when every item is done"
    lines = read_lines(path)
    assert sorted(line["index"] for line in lines) == list(range(6))
    assert {line["conversation_id"] for line in lines} == {
        c.conversation_id for c in airflow_with_aidol_server.conversations
    }


def test_on_error_fail_finishes_every_item_then_fails(airflow_with_aidol_server, tmp_path):
    batch = unique_items(6)
    batch[2]["agent_id"] = "missing-agent"
    path = tmp_path / "results.jsonl"
    assert run(batch_dags.failing, items=batch, output_path=f"file://{path}").state == "failed"
    lines = read_lines(path)
    assert len(lines) == 6
    assert [line["index"] for line in lines if line["error"]] == [2]
    assert len(airflow_with_aidol_server.conversations) == 5


def test_on_error_continue_succeeds_and_reports_the_failure(airflow_with_aidol_server):
    batch = unique_items(4)
    batch[1]["agent_id"] = "missing-agent"
    dag_run = run(batch_dags.continuing, items=batch)
    assert dag_run.state == "success"
    results = returned(dag_run)
    assert "Agent not found" in results[1]["error"]
    assert [r["conversation_id"] is not None for r in results] == [True, False, True, True]


def test_a_retried_task_resumes_without_creating_recorded_items_again(airflow_with_aidol_server, tmp_path):
    batch = unique_items(12)
    path = tmp_path / "results.jsonl"
    airflow_with_aidol_server.inject(Fault.STATUS, status=500, times=3)  # three items fail in the first try
    dag_run = run(batch_dags.resuming, items=batch, output_path=f"file://{path}")
    assert dag_run.state == "success"
    per_user = Counter(c.user_id for c in airflow_with_aidol_server.conversations)
    assert per_user == Counter({item["user_id"]: 1 for item in batch})
    summary = returned(dag_run)
    assert (summary["already_recorded"], summary["created"], summary["failed"]) == (9, 3, 0)


def start_batch(server: Any, label: str, output: Path, count: int, workers: int) -> ForkedProcess:
    """Run a batch task in a process of its own (``tests/operators/batch_runner.py``)."""
    env = {**os.environ, "AIRFLOW_CONN_AIDOL_DEFAULT": server.connection_json()}
    return ForkedProcess(batch_runner.main, count, label, f"file://{output}", "-", workers, env=env)


@pytest.mark.aidol_server(latency=0.02)
def test_resume_after_the_worker_is_killed_mid_batch(airflow_with_aidol_server, tmp_path):
    server, path, count, workers = airflow_with_aidol_server, tmp_path / "results.jsonl", 200, 4
    process = start_batch(server, "killed", path, count, workers)
    deadline = time.monotonic() + 120
    while server.count(path="/v1/chat/conversation") < 60:
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the batch did not send 60 requests in 120 s"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    time.sleep(0.5)  # the requests the server was still answering finish
    killed_at = len(server.conversations)
    assert 0 < killed_at < count, "killed mid-batch"

    dag_run = run(batch_dags.resuming, items=batch_runner.items(count), output_path=f"file://{path}")

    assert dag_run.state == "success"
    summary = returned(dag_run)
    assert summary["already_recorded"] + summary["created"] == count
    lines = {line["index"]: line for line in read_lines(path) if line["conversation_id"]}
    assert sorted(lines) == list(range(count)), "every item recorded with its conversation"
    per_user = Counter(c.user_id for c in server.conversations)
    twice = {index for index, line in lines.items() if per_user[line["user_id"]] > 1}
    assert sum(per_user.values()) - count <= 2 * workers, "created twice: only the requests in flight"
    assert all(per_user[line["user_id"]] <= 2 for line in lines.values())
    doubted = {
        index: line["in_doubt_request_ids"] for index, line in lines.items() if "in_doubt_request_ids" in line
    }
    assert twice <= set(doubted), "every item created twice is reported in doubt"
    sent = {record.request_id for record in server.requests}
    assert all(set(doubted[index]) <= sent for index in twice), "with the X-Request-IDs the server got"
    recorded = {line["conversation_id"] for line in lines.values()}
    orphans = {c.conversation_id for c in server.conversations} - recorded
    assert len(orphans) == sum(per_user.values()) - count, "every other conversation is in a result line"
    assert not path.with_name("results.jsonl.sending").exists()


@pytest.mark.aidol_server(latency=0.05)  # a batch takes seconds: the two overlap
def test_two_tasks_started_together_on_one_output_path_create_each_item_once(
    airflow_with_aidol_server, tmp_path
):
    server, path, count = airflow_with_aidol_server, tmp_path / "results.jsonl", 200
    first, second = (start_batch(server, label, path, count, workers=2) for label in ("A", "B"))
    (out_a, err_a), (out_b, err_b) = first.communicate(timeout=240), second.communicate(timeout=240)

    outcomes = sorted([(first.returncode, out_a, err_a), (second.returncode, out_b, err_b)])
    (code_won, out_won, err_won), (code_refused, _, err_refused) = outcomes
    assert code_won == 0, err_won[-3000:]
    assert code_refused != 0
    assert "AidolConfigurationError" in err_refused
    assert "another live task is writing it" in err_refused
    assert json.loads(out_won.splitlines()[-1])["created"] == count
    assert server.count(path="/v1/chat/conversation") == count, "the refused task sent nothing"
    assert len(server.conversations) == count
    assert sorted(line["index"] for line in read_lines(path)) == list(range(count))


@pytest.mark.parametrize(
    "foreign",
    [b"name,age\nann,31\n", b'[{"index": 0}]', b"one line without its line break", bytes(range(256))],
    ids=["csv", "json-array", "one-line", "binary"],
)
def test_a_file_the_provider_did_not_write_is_refused_unchanged_before_any_request(
    airflow_with_aidol_server, tmp_path, foreign, capfd
):
    path = tmp_path / "results.jsonl"
    path.write_bytes(foreign)
    assert run(batch_dags.resuming, items=unique_items(3), output_path=f"file://{path}").state == "failed"
    assert "AidolConfigurationError" in capfd.readouterr().out
    assert path.read_bytes() == foreign
    assert airflow_with_aidol_server.count() == 0


def test_reuse_across_two_dag_runs(airflow_with_aidol_server):
    batch = unique_items(3)
    first_run, second_run = run(batch_dags.reusing, items=batch), run(batch_dags.reusing, items=batch)
    assert (first_run.state, second_run.state) == ("success", "success")
    first, second = returned(first_run), returned(second_run)
    assert [r["reused"] for r in first] == [False] * 3
    assert [r["reused"] for r in second] == [True] * 3
    assert [r["conversation_id"] for r in second] == [r["conversation_id"] for r in first]
    assert len(airflow_with_aidol_server.conversations) == 3


def test_with_reuse_a_pair_listed_twice_gets_one_conversation(airflow_with_aidol_server):
    batch = unique_items(2)
    batch.append(batch[0])
    dag_run = run(batch_dags.reusing, items=batch)
    assert dag_run.state == "success"
    results = returned(dag_run)
    assert len(airflow_with_aidol_server.conversations) == 2
    assert results[2]["conversation_id"] == results[0]["conversation_id"]
    assert [r["reused"] for r in results] == [False, False, True]


def test_single_operator_reuses_its_conversation(airflow_with_aidol_server):
    user = f"reuse-{uuid.uuid4().hex[:8]}"
    first_run, second_run = run(batch_dags.single_reuse, user=user), run(batch_dags.single_reuse, user=user)
    assert (first_run.state, second_run.state) == ("success", "success")
    first, second = returned(first_run), returned(second_run)
    assert first == second
    assert len(airflow_with_aidol_server.conversations) == 1


def test_bad_items_fail_the_task_before_any_request(airflow_with_aidol_server):
    assert run(batch_dags.failing, items=[{"agent_id": ""}]).state == "failed"
    assert airflow_with_aidol_server.requests == []


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"on_error": "ignore"}, "on_error"), ({"max_workers": 0}, "max_workers")]
)
def test_bad_operator_arguments_fail_at_dag_definition(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CreateConversationsOperator(task_id="x", conversations=[], **kwargs)


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("results.jsonl", "output_path must be"),  # relative: depends on the worker's directory
        ("gs://google_cloud_default@bucket/results.jsonl", "cannot be written here"),  # no storage provider
    ],
)
def test_a_bad_output_path_fails_before_any_request(airflow_with_aidol_server, output, message, capfd):
    assert run(batch_dags.failing, items=unique_items(3), output_path=output).state == "failed"
    out = capfd.readouterr().out
    assert message in out
    assert "Install the Airflow provider of that storage" in out or "absolute local path" in out
    assert airflow_with_aidol_server.count() == 0


def test_each_result_line_has_one_status_and_an_older_results_file_still_resumes(
    airflow_with_aidol_server, tmp_path
):
    batch = unique_items(4)
    batch[3]["agent_id"] = "missing-agent"
    path = tmp_path / "results.jsonl"
    written_before_status = {  # as versions before `status` wrote it: `index` first, as always
        "index": 0,
        **batch[0],
        "conversation_id": "c-written-by-an-older-version",
        "trace_id": None,
        "error": None,
        "reused": False,
    }
    path.write_text(json.dumps(written_before_status) + "\n")

    assert run(batch_dags.failing, items=batch, output_path=f"file://{path}").state == "failed"

    assert len(airflow_with_aidol_server.conversations) == 2, "the recorded item was not sent again"
    lines = {line["index"]: line for line in read_lines(path)[1:]}
    assert {index: line["status"] for index, line in lines.items()} == {
        1: "created",
        2: "created",
        3: "failed",
    }
    assert lines[3]["error_class"] == "AidolNotFoundError"
    assert "error_class" not in lines[1]
