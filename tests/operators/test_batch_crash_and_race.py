"""Crash-tight and race-safe batches, with real processes: SIGKILL mid-run, and two tasks racing.

A killed batch, retried, creates again at most the items that were in flight
(``2 * max_workers``), and names them (in doubt, with the X-Request-ID that was sent). Two
batches reaching the same pairs at once end with one registry row per pair, both report that
row's conversation, and the loser reports the one it created as orphaned.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from tests.forked import ForkedProcess
from tests.operators import batch_runner
from tests.registry.conftest import records

if TYPE_CHECKING:
    import subprocess

COUNT = 2000
WORKERS = 8
IN_FLIGHT = 2 * WORKERS

pytestmark = pytest.mark.slow  # batches of 2000 items in child processes, twice per test


def start(server, label: str, output: str = "-", registry: str = "-") -> ForkedProcess:
    env = {**os.environ, "AIRFLOW_CONN_AIDOL_DEFAULT": server.connection_json()}
    return ForkedProcess(batch_runner.main, COUNT, label, output, registry, WORKERS, env=env)


def finish(process: ForkedProcess | subprocess.Popen[str]) -> object:
    out, err = process.communicate(timeout=240)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def kill_at_half(server, process: ForkedProcess | subprocess.Popen[str]) -> int:
    """SIGKILL the batch once the server has created about half of the items; return how many."""
    deadline = time.monotonic() + 120
    while len(server.conversations) < COUNT // 2:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "the batch did not get halfway in 120 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    time.sleep(0.5)  # requests the server was still working on finish
    return len(server.conversations)


def created_twice(server) -> int:
    per_user = Counter(conversation.user_id for conversation in server.conversations)
    assert set(per_user) == {f"user-{n:05d}" for n in range(COUNT)}, "every item created"
    return sum(count - 1 for count in per_user.values())


@pytest.mark.aidol_server(latency=0.02)
def test_a_killed_batch_with_a_local_output_path_resends_only_what_was_in_flight(
    aidol_server, airflow_db, tmp_path
):
    output = f"file://{tmp_path}/results.jsonl"
    killed_at = kill_at_half(aidol_server, start(aidol_server, "first", output))
    summary = finish(start(aidol_server, "retry", output))

    duplicates = created_twice(aidol_server)
    assert duplicates <= IN_FLIGHT, f"{duplicates} created twice after a kill at {killed_at}"
    assert isinstance(summary, dict)
    assert summary["already_recorded"] >= killed_at - IN_FLIGHT
    assert summary["created"] + summary["already_recorded"] == COUNT
    assert summary["in_doubt"] >= duplicates, "every item created twice was reported in doubt"
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    doubted = {r["index"]: r["in_doubt_request_ids"] for r in lines if "in_doubt_request_ids" in r}
    assert len(doubted) == summary["in_doubt"]
    per_user = Counter(conversation.user_id for conversation in aidol_server.conversations)
    twice = {int(user.removeprefix("user-")) for user, count in per_user.items() if count > 1}
    assert twice <= set(doubted), "every item created twice was named in doubt"
    received = {record.request_id for record in aidol_server.requests}
    assert all(set(doubted[index]) <= received for index in twice), "with the X-Request-IDs the server got"
    assert not (tmp_path / "results.jsonl.sending").exists()


@pytest.fixture
def registry(postgres_registry):
    """The session's PostgreSQL with a table no other test uses, as ``<conn id>:<table>``."""
    return f"{postgres_registry}:crash_{uuid.uuid4().hex[:12]}"


@pytest.mark.aidol_server(latency=0.02)
def test_a_killed_batch_with_a_sql_registry_resends_only_what_was_in_flight(
    aidol_server, airflow_db, registry
):
    killed_at = kill_at_half(aidol_server, start(aidol_server, "first", registry=registry))
    results = finish(start(aidol_server, "retry", registry=registry))

    duplicates = created_twice(aidol_server)
    assert duplicates <= IN_FLIGHT, f"{duplicates} created twice after a kill at {killed_at}"
    assert isinstance(results, list)
    assert all(result["conversation_id"] for result in results)
    assert sum(result["reused"] for result in results) >= killed_at - IN_FLIGHT


@pytest.mark.aidol_server(latency=0.03)  # each batch takes several seconds: they overlap
def test_two_batches_racing_on_the_same_pairs_keep_one_conversation_each(aidol_server, airflow_db, registry):
    first, second = start(aidol_server, "A", registry=registry), start(aidol_server, "B", registry=registry)
    results_a, results_b = finish(first), finish(second)
    assert isinstance(results_a, list)
    assert isinstance(results_b, list)

    conn_id, _, table = registry.partition(":")
    rows = records(conn_id, f"SELECT user_id, agent_id, conversation_id FROM {table}")
    kept = {(user, agent): conversation for user, agent, conversation in rows}
    assert len(kept) == COUNT, "one row per pair"
    for results in (results_a, results_b):
        assert [kept[r["user_id"], r["agent_id"]] for r in results] == [r["conversation_id"] for r in results]
    orphans = [r for r in results_a + results_b if "orphaned_conversation_id" in r]
    assert orphans, "the batches overlapped, so some pairs were created by both"
    assert len(aidol_server.conversations) == COUNT + len(orphans), "every extra conversation is reported"
    assert all(r["orphaned_conversation_id"] != r["conversation_id"] for r in orphans)
