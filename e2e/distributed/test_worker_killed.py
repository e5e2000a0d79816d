"""The nightly pipeline on the CeleryExecutor, with one Celery worker SIGKILLed mid-run.

``e2e_nightly_distributed`` shards ``PAIRS`` (user, agent) pairs into ``SHARDS`` mapped
``CreateConversationsOperator`` instances (``reuse_existing=True``, the SQL registry on the
deployment's PostgreSQL, a local ``output_path`` per shard, one retry), two on each worker,
against the rate-limited embedded server. Once the server has created ``KILL_AT`` of the pairs,
the test SIGKILLs ``worker-a`` and everything it forked. The scheduler fails its shards once
their heartbeats time out, and retries them on ``worker-b``, which resumes each from its
results file. Asserted from the server's and the registry's records.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg2  # type: ignore[import-untyped]

from e2e.distributed.conftest import BURST, RATE
from e2e.distributed.deployment import HEARTBEAT_TIMEOUT, kill_worker, running_tasks
from e2e.stack import wait_for
from e2e.timing import TIMINGS, Stopwatch

if TYPE_CHECKING:
    from airflow_provider_aidol.testing import AidolServer
    from e2e.stack import AirflowStack
    from tests.postgres_server import PostgresServer

DAG_FILE = "e2e_aidol_distributed.py"
DAG_ID = "e2e_nightly_distributed"
TASK_ID = "create_conversations"
PAIRS = 2000
SHARDS = 4
SHARD_WORKERS = 4  # max_workers of each shard, as in the DAG
#: Requests a killed shard may have had in flight, and so may create twice.
IN_FLIGHT = 2 * SHARD_WORKERS
KILL_AT = 0.4
RATE_LIMITED_CODE = 10429
CONVERSATION_PATH = "/v1/chat/conversation"
#: Where the measured numbers go (not in git; docs/e2e.md quotes them).
RESULTS = Path(__file__).resolve().parent.parent / ".out" / "distributed-worker-killed.json"


def test_a_worker_killed_mid_run_loses_nothing_and_creates_little_twice(
    celery_airflow: AirflowStack, aidol: AidolServer, postgres: PostgresServer, tmp_path: Path
) -> None:
    """Every pair gets one registry row; only a killed shard's in-flight requests are created twice."""
    airflow, victim = celery_airflow, celery_airflow.service("worker-a")
    with Stopwatch("worker killed: DAG parsed"):
        airflow.wait_dag_parsed(DAG_ID, dag_file=DAG_FILE)
    aidol.reset()
    run_id = airflow.trigger(DAG_ID, {"pairs": PAIRS, "shards": SHARDS, "output_dir": str(tmp_path)})

    def far_enough() -> bool:
        assert airflow.run_state(DAG_ID, run_id) not in {"success", "failed"}, "the run ended before the kill"
        return len(aidol.conversations) >= KILL_AT * PAIRS

    with Stopwatch("worker killed: trigger to the kill"):
        wait_for(f"{KILL_AT:.0%} of the pairs created", far_enough, timeout=300, interval=0.2)
    killed_tasks = running_tasks(victim)
    created_at_kill = len(aidol.conversations)
    killed_processes = kill_worker(victim)
    killed_at = datetime.now(UTC)
    with Stopwatch("worker killed: the kill to the end of the run"):
        state = airflow.wait_run_finished(DAG_ID, run_id, timeout=600)
    report = run_report(airflow, run_id)
    assert state == "success", report

    shards = [ti for ti in airflow.task_instances(DAG_ID, run_id) if ti["task_id"] == TASK_ID]
    assert len(shards) == SHARDS, report
    retried = [ti["map_index"] for ti in shards if ti["try_number"] > 1]
    assert retried, f"no shard was retried: the kill missed ({killed_tasks} task processes):\n{report}"
    assert len(retried) <= killed_tasks, report

    rows = registry_rows(postgres)
    per_pair = Counter((user, agent) for user, agent, _ in rows)
    assert len(per_pair) == PAIRS, f"{len(per_pair)} pairs in the registry"
    assert set(per_pair.values()) == {1}, "every pair has exactly one registry row"
    kept = {(user, agent): conversation for user, agent, conversation in rows}
    created = Counter((c.user_id, c.agent_id) for c in aidol.conversations)
    assert set(created) == set(kept), "the registry names exactly the pairs the server created"
    assert all(kept[pair] in {c.conversation_id for c in aidol.conversations} for pair in kept)
    twice = sum(count - 1 for count in created.values())
    assert twice <= IN_FLIGHT * len(retried), f"{twice} conversations created twice"
    doubted = in_doubt_pairs(tmp_path)
    assert {pair for pair, count in created.items() if count > 1} <= doubted, (
        "every pair created twice is named in doubt (with its X-Request-ID) by the retry's results"
    )

    seen = airflow.xcom(DAG_ID, run_id, "read_results")
    assert seen["pairs"] == PAIRS, seen
    assert sum(seen["per_shard"]) == PAIRS, seen

    requests = [r for r in aidol.requests if r.path == CONVERSATION_PATH]
    limited = sum(r.code == RATE_LIMITED_CODE for r in requests)
    assert limited <= 0.10 * len(requests), f"{limited} of {len(requests)} answers rate-limited"

    run = airflow.api("GET", airflow.run_path(DAG_ID, run_id))
    run_seconds = seconds(run["start_date"], run["end_date"])
    span = create_span(shards)
    ideal = PAIRS / RATE
    measured = {
        "pairs": PAIRS,
        "shards": SHARDS,
        "max_workers": SHARD_WORKERS,
        "rate_limit": RATE,
        "burst": BURST,
        "heartbeat_timeout_s": HEARTBEAT_TIMEOUT,
        "ideal_s": ideal,
        "run_s": round(run_seconds, 1),
        "run_vs_ideal": round(run_seconds / ideal, 2),
        "create_step_s": round(span, 1),
        "created_at_kill": created_at_kill,
        "task_processes_killed": killed_tasks,
        "processes_killed": killed_processes,
        "shards_retried": retried,
        "kill_to_first_retry_start_s": round(
            min(seconds(killed_at.isoformat(), ti["start_date"]) for ti in shards if ti["try_number"] > 1), 1
        ),
        "created_twice": twice,
        "created_twice_bound": IN_FLIGHT * len(retried),
        "named_in_doubt": len(doubted),
        "requests": len(requests),
        "rate_limited": limited,
        "rate_limited_share": round(limited / len(requests), 4),
        "conversations": len(aidol.conversations),
        "registry_rows": len(rows),
        "downstream_pairs": seen["pairs"],
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(measured, indent=2) + "\n")
    TIMINGS["worker killed: run duration (start to end of the DAG run)"] = run_seconds
    print(json.dumps(measured))


def registry_rows(postgres: PostgresServer) -> list[tuple[str, str, str]]:
    """Return the registry table's (user_id, agent_id, conversation_id) rows, read with psycopg2."""
    with psycopg2.connect(postgres.uri) as db, db.cursor() as cursor:
        cursor.execute("SELECT user_id, agent_id, conversation_id FROM aidol_conversations")
        return [(str(user), str(agent), str(conversation)) for user, agent, conversation in cursor.fetchall()]


def in_doubt_pairs(output_dir: Path) -> set[tuple[str, str]]:
    """Return the pairs the shards' results files name as sent by a killed try without an outcome."""
    files = sorted(output_dir.glob("shard-*.jsonl"))
    lines = [json.loads(line) for path in files for line in path.read_text().splitlines()]
    return {(line["user_id"], line["agent_id"]) for line in lines if line.get("in_doubt_request_ids")}


def seconds(start: str, end: str) -> float:
    """Seconds between two REST API timestamps."""
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def create_span(instances: list[dict[str, Any]]) -> float:
    """First start to last end of the task instances."""
    start = min(ti["start_date"] for ti in instances)
    end = max(ti["end_date"] for ti in instances)
    return seconds(start, end)


def run_report(airflow: AirflowStack, run_id: str) -> str:
    """Describe the run's task states and tries, for a failure message."""
    try:
        tis = airflow.task_instances(DAG_ID, run_id)
    except Exception as error:  # a report must never hide the failure it describes
        return f"(no report: {error!r})"
    return "\n".join(f"{t['task_id']}[{t['map_index']}]: {t['state']} try {t['try_number']}" for t in tis)
