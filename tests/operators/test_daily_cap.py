"""The API key's daily cap, shared by tasks in separate processes through the usage ledger.

Four batch tasks start at the same moment on 300 items each under ``max_requests_per_day=500``:
the server receives exactly 500 requests, every item is created or reported not sent (reason
``daily_cap``), and no task fails. A second night the same day sends nothing; the next day sends
again. For SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from airflow_provider_aidol.client.endpoints import CONVERSATION_PATH
from tests.aidol_default import FAST_RETRIES
from tests.conftest import REGISTRY_CONN_ID
from tests.forked import ForkedProcess
from tests.operators import quota_runner

TASKS = 4
ITEMS = 300
CAP = 500

pytestmark = pytest.mark.slow  # four batch processes per night, three nights


def connection(server, **extra) -> str:
    conn = json.loads(server.connection_json())
    conn["extra"].update(FAST_RETRIES, registry_conn_id=REGISTRY_CONN_ID, **extra)
    return json.dumps(conn)


def night(server, tmp_path, label: str, *, days_ahead: int = 0) -> list[dict[str, Any]]:
    """Start TASKS racing batches, let them go at once, and return their summaries and usage."""
    sync = tmp_path / label
    sync.mkdir()
    env = {**os.environ, "AIRFLOW_CONN_AIDOL_DEFAULT": connection(server, max_requests_per_day=CAP)}
    processes = [
        ForkedProcess(quota_runner.main, ITEMS, f"{label}{n}", str(sync), days_ahead, env=env)
        for n in range(TASKS)
    ]
    deadline = time.monotonic() + 180
    while len(list(sync.glob("ready-*"))) < TASKS:
        assert all(process.poll() is None for process in processes), [
            p.stderr and p.stderr.read() for p in processes if p.poll() is not None
        ]
        assert time.monotonic() < deadline, "the racers did not start within 180 s"
        time.sleep(0.05)
    (sync / "go").touch()
    results = []
    for process in processes:
        out, err = process.communicate(timeout=240)
        assert process.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.mark.aidol_server(latency=0.005)
@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_four_tasks_racing_send_exactly_the_daily_cap_and_the_next_day_sends_again(
    aidol_server, airflow_db, tmp_path, request, database
):
    request.getfixturevalue(f"{database}_registry")

    first = night(aidol_server, tmp_path, "first")

    assert aidol_server.count(path=CONVERSATION_PATH) == CAP
    summaries = [result["summary"] for result in first]
    assert sum(s["created"] for s in summaries) == CAP
    assert sum(s["created"] + s["not_sent"] for s in summaries) == TASKS * ITEMS
    assert all(s["failed"] == 0 for s in summaries)
    usages = [result["usage"] for result in first]
    assert sum(u["requests"] for u in usages) == CAP
    assert all(u["daily_cap_reached"] for u in usages if u["requests"] < ITEMS)
    records = [
        json.loads(line)
        for path in (tmp_path / "first").glob("results-*.jsonl")
        for line in path.read_text().splitlines()
        if '"status"' in line
    ]
    not_sent = [r for r in records if r["status"] == "not_sent"]
    assert len(not_sent) == TASKS * ITEMS - CAP
    assert {r["not_sent_reason"] for r in not_sent} == {"daily_cap"}

    second = night(aidol_server, tmp_path, "second")

    assert aidol_server.count(path=CONVERSATION_PATH) == CAP, "the same day sends nothing"
    assert [r["summary"]["not_sent"] for r in second] == [ITEMS] * TASKS

    third = night(aidol_server, tmp_path, "third", days_ahead=1)

    assert aidol_server.count(path=CONVERSATION_PATH) == 2 * CAP, "the next day sends again"
    assert sum(r["summary"]["created"] for r in third) == CAP
