"""Scenario 9: four separate batch processes share one API key (50/s, burst 5), 300 items each.

Each process runs its own ``create_conversations`` with 8 workers, like four mapped tasks or
four DAGs on one key. Adaptive: the default limiter in every process, none told the rate.
Each told its share: ``requests_per_second=12.5``, the reference. The processes import the
provider first and start their batches together; the server (its own process) counts the
rate-limited answers among all requests and the conversations created (exactly one per item).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from benchmarks.common import (
    REPO,
    Deadline,
    ScenarioResult,
    ServerProcess,
    at_most,
    log_file,
    make_items,
    median,
    new_result,
    rate_limited,
    rate_limited_cells,
    rate_limited_result,
    rate_limited_run,
    rate_limited_summary,
    say,
)

TITLE = "Four processes, one key (50/s, burst 5)"
TIME_GOAL = 1.20
LIMITED_GOAL = 0.10
SPREAD_GOAL = 1.5
COLUMNS = [
    "limiter",
    "median wall",
    "x ideal",
    "runs (s)",
    "per-task seconds, per run",
    "slowest / fastest (median)",
    "rate-limited / requests",
    "median share",
    "exactly once",
]


def _run_processes(
    server: ServerProcess,
    batches: list[list[dict[str, str]]],
    workers: int,
    rate: float | None,
    timeout: float,
) -> list[dict[str, Any]]:
    """Start one client process per batch, release them together, return their start/end/failed."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    env.update(AIRFLOW_CONN_AIDOL_DEFAULT=server.connection, AIRFLOW__CORE__LOAD_EXAMPLES="False")
    env["AIRFLOW_HOME"] = os.environ["AIRFLOW_HOME"]
    processes = []
    for number, batch in enumerate(batches):
        settings = {"items": batch, "workers": workers, "requests_per_second": rate}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.shared_key_client", json.dumps(settings)],
                cwd=REPO,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log_file(f"s9-client-{number}.stderr.log").open("a"),
                text=True,
            )
        )
    try:
        for process in processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError("a scenario 9 client failed to start; see benchmarks/.out/logs")
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outcomes = []
        for process in processes:
            output, _ = process.communicate(timeout=timeout)
            outcomes.append(json.loads(output.strip().splitlines()[-1]))
        return outcomes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


def run(
    *,
    processes: int = 4,
    items: int = 300,
    rate: float = 50.0,
    burst: int = 5,
    workers: int = 8,
    repetitions: int = 3,
) -> ScenarioResult:
    config = {
        "processes": processes,
        "items_each": items,
        "rate_limit_per_s": rate,
        "burst": burst,
        "workers_each": workers,
        "repetitions": repetitions,
    }
    result = new_result(9, TITLE, config)
    ideal = (processes * items - burst) / rate
    modes: dict[str, float | None] = {"adaptive": None, f"each told {rate / processes:g}/s": rate / processes}
    deadline = Deadline(700, "scenario 9")
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    with ServerProcess(rate_limit=rate, burst=burst, name="s9-server") as server:
        for repetition in range(repetitions):
            for mode, told in modes.items():
                if told is not None and repetition > 0:
                    continue  # the fixed shares are the reference; one run shows them
                deadline.check()
                prefix = f"s9-{'told' if told else 'adaptive'}-r{repetition}"
                batches = [make_items(items, f"{prefix}-p{p}") for p in range(processes)]
                server.reset()
                outcomes = _run_processes(server, batches, workers, told, timeout=max(deadline.left, 1))
                stats = server.stats()
                limited = rate_limited(stats)
                wall = max(o["end"] for o in outcomes) - min(o["start"] for o in outcomes)
                per_task = [o["end"] - o["start"] for o in outcomes]
                every_item = [item for batch in batches for item in batch]
                data = rate_limited_run(
                    stats, every_item, seconds=wall, failed=sum(o["failed"] for o in outcomes)
                )
                data["per_task_s"] = per_task
                runs[mode].append(data)
                say(
                    f"  {mode:>16}: {wall:.2f} s (ideal {ideal:.2f} s), per task "
                    f"{', '.join(f'{s:.1f}' for s in per_task)} s, {limited}/{stats['requests']} "
                    f"rate-limited, exactly once: {data['exactly_once']}"
                )
    rows = []
    summary: dict[str, dict[str, Any]] = {}
    for mode, told in modes.items():
        data_runs = runs[mode]
        spread = median(max(r["per_task_s"]) / min(r["per_task_s"]) for r in data_runs)
        summary[mode] = summed = {**rate_limited_summary(data_runs, ideal), "spread": spread}
        cells = {
            "limiter": mode,
            **rate_limited_cells(summed, data_runs),
            "per-task seconds, per run": " / ".join(
                ", ".join(f"{s:.1f}" for s in r["per_task_s"]) for r in data_runs
            ),
            "slowest / fastest (median)": f"{spread:.2f}x",
        }
        if told is None:
            met = (
                at_most(summed["ratio"], TIME_GOAL)
                and at_most(summed["limited_share"], LIMITED_GOAL)
                and at_most(spread, SPREAD_GOAL)
                and summed["exactly_once"]
            )
            result["goals"].append(
                {
                    "measure": "adaptive, 4 processes: wall / ideal; share rate-limited; "
                    "slowest / fastest task; created exactly once",
                    "goal": f"≤ {TIME_GOAL:.2f}x; ≤ {LIMITED_GOAL:.0%}; ≤ {SPREAD_GOAL}x; yes",
                    "result": rate_limited_result(cells, cells["slowest / fastest (median)"]),
                    "met": met,
                }
            )
        rows.append([cells[column] for column in COLUMNS])
    result["table"] = {"columns": COLUMNS, "rows": rows}
    result["notes"].append(
        f"Ideal: (processes x items - burst) / rate = ({processes} x {items} - {burst}) / {rate:g} = "
        f"{ideal:.2f} s. Wall time runs from the first batch's start to the last one's end; a task's "
        "time from its own start to its end. All processes, the server and other work share the "
        "machine's CPUs, so the ratios, not the absolute seconds, are the result."
    )
    result["data"] = {"ideal_s": ideal, "runs": runs, "summary": summary}
    return result
