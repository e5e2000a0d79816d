"""Repeated SIGKILLs of a real batch process: nothing the server created goes unreported.

A batch with a SQL registry and a local ``output_path`` is killed (``kill -9``) again and again
at random points, each time started again (a retried task), then run to the end. Every
conversation the server created must then be reported somewhere a user can find it: a registry
row, a results line (``conversation_id`` or ``orphaned_conversation_id``), or a results line
naming the ``X-Request-ID`` that created it as in doubt (``in_doubt_request_ids``).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tests.forked import ForkedProcess
from tests.operators import batch_runner
from tests.operators.test_batch_crash_and_race import finish
from tests.registry.conftest import records

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_aidol.testing import AidolServer

PAIRS = 160
KILLS = 5
WORKERS = 8
IN_FLIGHT = 2 * WORKERS

pytestmark = pytest.mark.slow  # about ten batch processes per test


def start(server: AidolServer, label: str, output: str, registry: str) -> ForkedProcess:
    """Start the batch of PAIRS items (the same for every label) in a process of its own."""
    env = {**os.environ, "AIRFLOW_CONN_AIDOL_DEFAULT": server.connection_json()}
    return ForkedProcess(batch_runner.main, PAIRS, label, output, registry, WORKERS, env=env)


def kill_at_random(server: AidolServer, process: ForkedProcess, rng: random.Random) -> None:
    """SIGKILL the batch at a random point after it has sent something, before it is done."""
    # Soon after the last kill's requests in flight were sent again: the window where an item
    # already in doubt is in doubt a second time.
    target = min(len(server.conversations) + rng.randint(1, IN_FLIGHT), PAIRS - 1)
    deadline = time.monotonic() + 120
    while len(server.conversations) < target and process.poll() is None:
        assert time.monotonic() < deadline, "the batch made no progress in 120 s"
        time.sleep(0.002)
    time.sleep(rng.uniform(0, 0.05))  # anywhere: waiting, recording, journalling, sending
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def reported(output: Path, conn_id: str, table: str) -> tuple[set[str], set[str]]:
    """The conversation ids and the in-doubt X-Request-IDs the registry and the results name."""
    conversations = {row[0] for row in records(conn_id, f"SELECT conversation_id FROM {table}")}
    request_ids: set[str] = set()
    for line in output.read_text().splitlines():
        result: dict[str, Any] = json.loads(line)
        conversations |= {result.get("conversation_id"), result.get("orphaned_conversation_id")} - {None}
        request_ids.update(result.get("in_doubt_request_ids", []))
    return conversations, request_ids


def kill_again_and_again(
    server: AidolServer, conn_id: str, tmp_path: Path, seed: int
) -> tuple[list[str], int]:
    """Run the batch, killed KILLS times, then to the end; return the ids never reported, and
    how many conversations were created twice."""
    rng = random.Random(seed)
    table = f"kills_{uuid.uuid4().hex[:10]}"
    output = tmp_path / "results.jsonl"
    arguments = (f"file://{output}", f"{conn_id}:{table}")
    for kill in range(KILLS):
        kill_at_random(server, start(server, f"kill-{kill}", *arguments), rng)
    summary = finish(start(server, "last", *arguments))
    assert isinstance(summary, dict)
    assert summary["failed"] == 0, summary
    conversations, request_ids = reported(output, conn_id, table)
    created = server.conversations
    never = [
        c.conversation_id
        for c in created
        if c.conversation_id not in conversations and c.request_id not in request_ids
    ]
    assert {c.user_id for c in created} == {f"user-{n:05d}" for n in range(PAIRS)}
    return never, len(created) - PAIRS


@pytest.mark.aidol_server(latency=0.05)
def test_kill_9_again_and_again_leaves_no_conversation_unreported(
    aidol_server: AidolServer, airflow_db: Path, registry_conn_id: str, tmp_path: Path
) -> None:
    never, twice = kill_again_and_again(aidol_server, registry_conn_id, tmp_path, seed=1)

    assert never == [], f"{len(never)} conversation(s) created and never reported"
    assert twice <= KILLS * IN_FLIGHT
    assert not (tmp_path / "results.jsonl.sending").exists(), "the journal goes once all is recorded"
