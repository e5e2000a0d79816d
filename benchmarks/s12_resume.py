"""Scenario 12: resume of 1,000,000 items that are all recorded: peak RSS and time, against parsing.

A retried task whose results file already records every item must send nothing; what it costs
is reading that file. Two client processes (benchmarks.resume_client) build the same 1,000,000
items and an operator with the same ``output_path``: one only checks the items
(``hook.parse_items()``, which every run does first), the other runs ``execute()`` over the
results file. Each one's peak RSS comes from ``os.wait4`` (``ru_maxrss`` of exactly that child);
its time is the step's own (``parse_items()`` or ``execute()``), so the interpreter's start and
the imports, the same in both, are left out. The server process must see no request.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import (
    MB,
    ScenarioResult,
    ServerProcess,
    airflow_env,
    at_most,
    check_child,
    make_items,
    new_result,
    run_child,
    say,
)

TITLE = "Resume of 1,000,000 recorded items"
COUNT = 1_000_000
GOAL_MB, GOAL_RATIO = 150, 2.0


def _write_results(path: Path, count: int) -> None:
    """A results file as a finished batch writes it: one ``created`` record per item."""
    with path.open("w") as target:
        for index, item in enumerate(make_items(count, "s12")):
            record = {
                "index": index,
                **item,
                "status": "created",
                "conversation_id": f"00000000-0000-4000-8000-{index:012d}",
                "trace_id": f"trace-{index}",
                "error": None,
                "reused": False,
            }
            target.write(json.dumps(record) + "\n")


def _client(mode: str, output: Path, env: dict[str, str], name: str) -> dict[str, Any]:
    child = run_child(
        [sys.executable, "-m", "benchmarks.resume_client", mode, str(COUNT), output.as_uri()],
        env=env,
        timeout=600,
        name=name,
    )
    check_child(child, name)
    report: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return {**report, "wall_seconds": child.seconds, "child_peak_rss": child.peak_rss}


def run(*, repetitions: int = 2) -> ScenarioResult:
    config = {"items": COUNT, "repetitions": repetitions, "output": "file:// in a temp dir"}
    result = new_result(12, TITLE, config)
    runs: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="aidol-bench-resume-") as scratch,
        ServerProcess(name="s12-server") as server,
    ):
        output = Path(scratch) / "results.jsonl"
        _write_results(output, COUNT)
        env = airflow_env(Path(scratch) / "home", connection=server.connection)
        for repetition in range(repetitions):
            parse = _client("parse", output, env, f"s12-parse-{repetition}")
            resume = _client("resume", output, env, f"s12-resume-{repetition}")
            runs.append({"parse": parse, "resume": resume})
            say(
                f"  run {repetition + 1}: parse {parse['seconds']:.1f} s, "
                f"{parse['child_peak_rss'] / MB:.0f} MB; resume {resume['seconds']:.1f} s, "
                f"{resume['child_peak_rss'] / MB:.0f} MB; {resume['summary']}"
            )
        requests = server.stats()["requests"]
    extra_mb = max((r["resume"]["child_peak_rss"] - r["parse"]["child_peak_rss"]) / MB for r in runs)
    ratio = max(r["resume"]["seconds"] / r["parse"]["seconds"] for r in runs)
    nothing_sent = requests == 0 and all(r["resume"]["summary"]["already_recorded"] == COUNT for r in runs)
    result["goals"] = [
        {
            "measure": f"peak RSS of the resume above merely parsing the items (worst of {repetitions})",
            "goal": f"≤ {GOAL_MB} MB",
            "result": f"{extra_mb:.0f} MB",
            "met": at_most(extra_mb, GOAL_MB) and nothing_sent,
        },
        {
            "measure": f"time of the resume over merely parsing the items (worst of {repetitions})",
            "goal": f"≤ {GOAL_RATIO:g}x",
            "result": f"{ratio:.2f}x",
            "met": at_most(ratio, GOAL_RATIO) and nothing_sent,
        },
    ]
    result["table"] = {
        "columns": ["run", "step", "step time", "process wall time", "peak RSS", "XCom"],
        "rows": [
            [
                str(number),
                step,
                f"{r[step]['seconds']:.2f} s",
                f"{r[step]['wall_seconds']:.2f} s",
                f"{r[step]['child_peak_rss'] / MB:.0f} MB",
                json.dumps(r[step]["summary"]) if step == "resume" else f"{r[step]['summary']:,} items",
            ]
            for number, r in enumerate(runs, start=1)
            for step in ("parse", "resume")
        ],
    }
    result["notes"].append(
        f"{COUNT:,} items, each a distinct (agent, user) pair; the results file records each as "
        f"created. Requests the server received during the resumes: {requests}."
    )
    result["data"] = {"runs": runs, "requests": requests}
    return result
