"""CreateConversationsOperator writing to ``s3://`` on a real S3 API on loopback (moto's server).

With a SQL registry connection the crash journal lives in its database: a worker SIGKILLed in
the middle of 2,000 conversations, then retried, creates at most ``2 * max_workers`` of them
twice and names each one in doubt with the X-Request-ID it sent. Without one the operator warns
at the start what a crash may cost.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_aidol.batch.lease import FILE_LEASE_SUFFIX, OutputLease
from airflow_provider_aidol.batch.output_file import OutputFile
from airflow_provider_aidol.exceptions import AidolConfigurationError
from airflow_provider_aidol.operators.batch import CreateConversationsOperator
from airflow_provider_aidol.registry.journal import JOURNAL_TABLE, output_key
from tests.aidol_default import items, point_connection, task_instance
from tests.conftest import REPO
from tests.operators.test_batch_crash_and_race import finish, kill_at_half
from tests.registry.conftest import records

COUNT = 2000
WORKERS = 8
IN_FLIGHT = 2 * WORKERS


def run(operator: CreateConversationsOperator) -> Any:
    """Run ``operator`` as a task would; return its XCom."""
    ti = task_instance("s3_batch", operator.task_id)
    return operator.execute({"ti": ti})  # type: ignore[typeddict-item]


def results(s3_server, uri: str) -> list[dict[str, Any]]:
    bucket, _, key = uri.removeprefix("s3://").partition("@")[2].partition("/")
    return [json.loads(line) for line in s3_server.read(bucket, key).decode().splitlines()]


def journal_rows(conn_id: str, uri: str) -> int:
    """How many journal rows ``uri`` has in ``conn_id``'s database."""
    sql = f"SELECT COUNT(*) FROM {JOURNAL_TABLE} WHERE output_key = '{output_key(uri)}'"
    return int(records(conn_id, sql)[0][0])


def test_a_batch_writes_its_results_to_s3_and_drops_its_journal(
    aidol_server, s3_server, s3_bucket, sqlite_registry, monkeypatch
):
    point_connection(monkeypatch, aidol_server, registry_conn_id=sqlite_registry)
    uri = f"{s3_bucket}/nightly/results.jsonl"
    operator = CreateConversationsOperator(
        task_id="batch", conversations=items(30), output_path=uri, max_workers=4
    )

    summary = run(operator)

    assert summary["created"] == 30
    lines = results(s3_server, uri)
    assert sorted(line["index"] for line in lines) == list(range(30))
    assert {line["conversation_id"] for line in lines} == {
        c.conversation_id for c in aidol_server.conversations
    }
    assert journal_rows(sqlite_registry, uri) == 0


def test_without_a_sql_registry_a_remote_output_warns_what_a_crash_costs(
    aidol_server, s3_server, s3_bucket, monkeypatch, capfd
):
    point_connection(monkeypatch, aidol_server)
    uri = f"{s3_bucket}/results.jsonl"
    operator = CreateConversationsOperator(task_id="batch", conversations=items(3), output_path=uri)

    assert run(operator)["created"] == 3

    [warning] = [line for line in capfd.readouterr().out.splitlines() if "no request is journalled" in line]
    assert "warning" in warning
    assert f"output_path {uri} is on object storage and no SQL registry connection is configured" in warning
    assert len(results(s3_server, uri)) == 3


def test_a_remote_output_another_live_task_holds_is_refused_before_any_request(
    aidol_server, s3_server, s3_bucket, monkeypatch
):
    point_connection(monkeypatch, aidol_server)
    uri = f"{s3_bucket}/shared/results.jsonl"
    first = OutputFile(ObjectStoragePath(uri), holder="task s3_batch/other-run/batch[-1]")
    first.claim()  # a live task writing the same results file
    try:
        operator = CreateConversationsOperator(task_id="batch", conversations=items(3), output_path=uri)
        with pytest.raises(AidolConfigurationError) as refused:
            run(operator)
    finally:
        first.release()

    assert "task s3_batch/other-run/batch[-1] is writing results there" in str(refused.value)
    assert f"results.jsonl{FILE_LEASE_SUFFIX}" in str(refused.value)
    assert aidol_server.count() == 0
    bucket = s3_bucket.partition("@")[2]
    assert s3_server.keys(bucket) == ["shared/results.jsonl"], "the first task's lease given up at its end"


@pytest.mark.parametrize(
    ("holder", "seconds"),
    [("task s3_batch/dead-run/batch[-1]", 0.0), ("task s3_batch/r/batch[-1]", 300.0)],
    ids=["a dead holder's lease expired", "the same task instance's retry"],
)
def test_a_remote_output_is_taken_past_an_expired_lease_or_by_its_own_retry(
    aidol_server, s3_server, s3_bucket, monkeypatch, holder, seconds
):
    point_connection(monkeypatch, aidol_server)
    uri = f"{s3_bucket}/results.jsonl"
    # A holder that took the lease, then died: it lapses ``seconds`` later (here at once).
    OutputLease.beside(ObjectStoragePath(uri), seconds).take(holder, "dead-attempt")
    operator = CreateConversationsOperator(task_id="batch", conversations=items(3), output_path=uri)

    assert run(operator)["created"] == 3

    assert aidol_server.count() == 3
    bucket = s3_bucket.partition("@")[2]
    assert s3_server.keys(bucket) == ["results.jsonl"], "the lease given up when the batch ended"


def start(server, run_id: str, output: str, registry_conn_id: str) -> subprocess.Popen[str]:
    """The batch of COUNT items in a process of its own (a try of run ``run_id``'s task), the registry
    named in the connection's extra.

    A new interpreter, not a fork (tests/forked.py): Airflow keeps the object store's s3fs
    instance per process, and s3fs refuses to be used in a forked child.
    """
    connection = json.loads(server.connection_json())
    connection["extra"]["registry_conn_id"] = registry_conn_id
    env = {**os.environ, "AIRFLOW_CONN_AIDOL_DEFAULT": json.dumps(connection)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.operators.batch_runner", str(COUNT), run_id, output, "-", str(WORKERS)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow  # two processes, 2,000 conversations
@pytest.mark.aidol_server(latency=0.02)
def test_a_worker_killed_mid_batch_on_s3_creates_at_most_the_requests_in_flight_twice(
    aidol_server, airflow_db, s3_server, s3_bucket, postgres_registry
):
    uri = f"{s3_bucket}/results.jsonl"
    # Both tries are one task instance's (run id "run-1"): the retry takes over the killed try's lease.
    killed_at = kill_at_half(aidol_server, start(aidol_server, "run-1", uri, postgres_registry))
    summary = finish(start(aidol_server, "run-1", uri, postgres_registry))

    per_user = Counter(conversation.user_id for conversation in aidol_server.conversations)
    assert set(per_user) == {f"user-{n:05d}" for n in range(COUNT)}, "every item created"
    twice = {int(user.removeprefix("user-")) for user, count in per_user.items() if count > 1}
    assert len(twice) <= IN_FLIGHT, f"{len(twice)} created twice after a kill at {killed_at}"
    assert isinstance(summary, dict)
    assert summary["created"] + summary["already_recorded"] == COUNT
    assert summary["already_recorded"] >= killed_at - IN_FLIGHT
    lines = results(s3_server, uri)
    assert sorted(line["index"] for line in lines if line["conversation_id"]) == list(range(COUNT))
    doubted = {
        line["index"]: line["in_doubt_request_ids"] for line in lines if "in_doubt_request_ids" in line
    }
    assert len(doubted) == summary["in_doubt"]
    assert twice <= set(doubted), "every item created twice was named in doubt"
    received = {record.request_id for record in aidol_server.requests}
    assert all(set(doubted[index]) <= received for index in twice), "with the X-Request-IDs the server got"
    assert journal_rows(postgres_registry, uri) == 0
