"""Scenario 5: 100,000 items with ``output_path``: completes, and the client's peak RSS.

The client (benchmarks.large_client: the operator's ``execute()`` with ``output_path`` a
``file://`` URI in a temp dir) runs in its own process; this process polls its RSS with psutil
for the curve and takes the peak from ``os.wait4`` (``ru_maxrss`` of exactly that child). No
server latency. Afterwards the JSON lines file must have 100,000 lines, one per index, each with
a conversation id, and the server must hold 100,000 conversations, one per item. The CPU time of
client and server over the wall time shows which of them is the bottleneck.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import (
    MB,
    Goal,
    ScenarioResult,
    ServerProcess,
    airflow_env,
    check_child,
    exactly_once,
    make_items,
    new_result,
    run_child,
    say,
)

TITLE = "100,000 items to output_path"
GOAL_MB = 300


def _check_lines(path: Path, count: int) -> dict[str, Any]:
    """Count lines, distinct indexes, successes and distinct conversation ids in the JSON lines."""
    lines = 0
    indexes: set[int] = set()
    ids: set[str] = set()
    failed = 0
    with path.open() as source:
        for line in source:
            if not line.strip():
                continue
            lines += 1
            record = json.loads(line)
            indexes.add(record["index"])
            if record.get("conversation_id"):
                ids.add(record["conversation_id"])
            else:
                failed += 1
    return {
        "lines": lines,
        "distinct_indexes": len(indexes),
        "all_indexes": indexes == set(range(count)),
        "distinct_conversation_ids": len(ids),
        "failed": failed,
    }


def run(*, items: int = 100_000, workers: int = 16, timeout: float = 900) -> ScenarioResult:
    config = {"items": items, "workers": workers, "latency_s": 0.0, "output": "file:// in a temp dir"}
    result = new_result(5, TITLE, config)
    with tempfile.TemporaryDirectory(prefix="aidol-bench-large-") as scratch:
        output = Path(scratch) / "results" / "conversations.jsonl"
        home = Path(scratch) / "home"
        home.mkdir()
        with ServerProcess(name="s5-server", max_seconds=timeout + 300) as server:
            env = airflow_env(home, connection=server.connection)
            server_cpu = server.cpu_seconds()
            child = run_child(
                [sys.executable, "-m", "benchmarks.large_client", str(items), str(workers), output.as_uri()],
                env=env,
                timeout=timeout,
                poll=0.25,
                name="s5-client",
            )
            server_cpu = server.cpu_seconds() - server_cpu
            check_child(child, "the 100,000-item client")
            stats = server.stats()
        report: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
        lines = _check_lines(output, items)
        size = output.stat().st_size
    once = exactly_once(stats, make_items(items, "s5"))
    complete = (
        lines["lines"] == items
        and lines["all_indexes"]
        and lines["failed"] == 0
        and lines["distinct_conversation_ids"] == items
        and once
    )
    peak = child.peak_rss
    batch_seconds = float(report["seconds"])
    client_share = child.cpu_seconds / child.seconds
    server_share = server_cpu / child.seconds
    say(
        f"  {items} items in {batch_seconds:.1f} s ({items / batch_seconds:.0f}/s), "
        f"peak RSS {peak / MB:.0f} MB, client CPU {client_share:.0%}, server CPU {server_share:.0%}"
    )
    goal: Goal = {
        "measure": "completes (JSON lines and server both hold every item once); client peak RSS",
        "goal": f"yes; < {GOAL_MB} MB",
        "result": f"{'yes' if complete else 'NO'}; {peak / MB:.0f} MB "
        f"(in {batch_seconds:.0f} s, {items / batch_seconds:.0f} conversations/s)",
        "met": complete and peak < GOAL_MB * MB,
    }
    if not complete:
        goal["note"] = f"lines {lines}, server {stats['conversations']} conversations, exactly once {once}"
    result["goals"].append(goal)
    if max(client_share, server_share) < 0.7:
        bottleneck = "neither process is near a full core; the two share 2 cores"
    elif server_share >= client_share:
        bottleneck = "the server (one Python process, so at most one core) is the limit"
    else:
        bottleneck = (
            "the client is the limit: its threads share one interpreter lock, so it can use about one "
            "core, spent per item in requests/urllib3, signing, the thread pool and the JSON lines"
        )
    result["table"] = {
        "columns": ["measure", "value"],
        "rows": [
            ["batch time (operator execute)", f"{batch_seconds:.1f} s"],
            ["client process wall (start to exit)", f"{child.seconds:.1f} s"],
            ["throughput", f"{items / batch_seconds:.0f} conversations/s"],
            ["client peak RSS (wait4 ru_maxrss)", f"{peak / MB:.0f} MB"],
            [
                "client peak RSS before the batch (imports + 100,000 items)",
                f"{report['peak_rss_before'] / MB:.0f} MB",
            ],
            [
                "client peak RSS by psutil polling (every 0.25 s)",
                f"{max((r for _, r in child.rss_samples), default=0) / MB:.0f} MB",
            ],
            ["client CPU / wall", f"{client_share:.0%} of one core"],
            ["server CPU / client wall", f"{server_share:.0%} of one core"],
            [
                "JSON lines",
                f"{lines['lines']} lines, {lines['distinct_indexes']} indexes, {size / MB:.1f} MB",
            ],
            [
                "server",
                f"{stats['requests']} requests, {stats['conversations']} conversations, "
                f"{stats['distinct_pairs']} distinct (agent, user)",
            ],
            ["XCom summary", json.dumps(report["summary"])],
        ],
    }
    result["notes"].append(
        f"CPU over the wall time: client {client_share:.0%} of one core, server {server_share:.0%}: "
        f"{bottleneck}."
    )
    result["data"] = {
        "peak_rss": peak,
        "peak_rss_before": report["peak_rss_before"],
        "rss_samples": [
            (round(t, 2), rss) for t, rss in child.rss_samples[:: max(1, len(child.rss_samples) // 600)]
        ],
        "batch_seconds": batch_seconds,
        "client_wall_s": child.seconds,
        "client_cpu_share": client_share,
        "server_cpu_share": server_share,
        "lines": lines,
        "server": stats,
        "summary": report["summary"],
        "complete": complete,
    }
    return result
