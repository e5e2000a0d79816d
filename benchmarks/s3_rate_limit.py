"""Scenario 3: a server rate limit of 50/s (burst 5), N=300, told the rate and not told.

Told: ``create_conversations(items, requests_per_second=50)``. Not told: the default adaptive
limiter, which must find the granted rate from the server's rate-limit answers. Both with 8
workers, a fresh hook and a reset server (full token bucket) per run. The server counts the
rate-limited answers (code 10429) among all requests, and the conversations created: exactly
one per item, no duplicates, none missing.
"""

from __future__ import annotations

import os
import time
from typing import Any

from benchmarks.common import (
    Deadline,
    ScenarioResult,
    ServerProcess,
    at_most,
    make_items,
    new_result,
    rate_limited,
    rate_limited_cells,
    rate_limited_result,
    rate_limited_run,
    rate_limited_summary,
    say,
)

TITLE = "Rate limit 50/s, burst 5"
MODES: dict[str, dict[str, Any]] = {
    # mode: (requests_per_second passed to the hook, time goal x ideal, rate-limited share goal)
    "told": {"requests_per_second": 50.0, "time_goal": 1.10, "limited_goal": 0.02},
    "not told": {"requests_per_second": None, "time_goal": 1.30, "limited_goal": 0.50},
}
COLUMNS = [
    "limiter",
    "median wall",
    "x ideal",
    "runs (s)",
    "rate-limited / requests",
    "median share",
    "conversations",
    "exactly once",
]


def run(
    *, items: int = 300, rate: float = 50.0, burst: int = 5, workers: int = 8, repetitions: int = 3
) -> ScenarioResult:
    from airflow_provider_aidol.hooks.aidol import AidolHook

    config = {
        "items": items,
        "rate_limit_per_s": rate,
        "burst": burst,
        "workers": workers,
        "repetitions": repetitions,
        "rate_limit_status": 200,
    }
    result = new_result(3, TITLE, config)
    ideal = (items - burst) / rate
    deadline = Deadline(600, "scenario 3")
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with ServerProcess(rate_limit=rate, burst=burst, name="s3-server") as server:
        os.environ["AIRFLOW_CONN_AIDOL_DEFAULT"] = server.connection
        for repetition in range(repetitions):
            for mode, spec in MODES.items():
                deadline.check()
                batch = make_items(items, f"s3-{mode.replace(' ', '')}-r{repetition}")
                server.reset()
                hook = AidolHook(aidol_conn_id="aidol_default")
                start = time.perf_counter()
                results = hook.create_conversations(
                    batch, max_workers=workers, requests_per_second=spec["requests_per_second"]
                )
                elapsed = time.perf_counter() - start
                hook.close()
                stats = server.stats()
                limited = rate_limited(stats)
                failed = sum(r["error"] is not None for r in results)
                run_data = rate_limited_run(stats, batch, seconds=elapsed, failed=failed)
                runs[mode].append(run_data)
                say(
                    f"  {mode:>8}: {elapsed:.2f} s (ideal {ideal:.2f} s), {limited}/{stats['requests']} "
                    f"requests rate-limited, {stats['conversations']} created, "
                    f"exactly once: {run_data['exactly_once']}"
                )
    rows = []
    summary: dict[str, dict[str, Any]] = {}
    for mode, spec in MODES.items():
        data = runs[mode]
        summary[mode] = summed = rate_limited_summary(data, ideal)
        cells = {
            "limiter": mode,
            **rate_limited_cells(summed, data),
            "conversations": " / ".join(str(r["conversations"]) for r in data),
        }
        met = (
            at_most(summed["ratio"], spec["time_goal"])
            and at_most(summed["limited_share"], spec["limited_goal"])
            and summed["exactly_once"]
        )
        result["goals"].append(
            {
                "measure": f"{mode}: wall / ideal (N-burst)/rate; share rate-limited; created exactly once",
                "goal": f"≤ {spec['time_goal']:.2f}x; ≤ {spec['limited_goal']:.0%}; yes",
                "result": rate_limited_result(cells),
                "met": met,
            }
        )
        rows.append([cells[column] for column in COLUMNS])
    result["table"] = {"columns": COLUMNS, "rows": rows}
    result["notes"].append(
        f"Ideal: (N - burst) / rate = ({items} - {burst}) / {rate:g} = {ideal:.2f} s. "
        "Rate-limited answers are HTTP 200 with code 10429, like the vendor's."
    )
    result["data"] = {"ideal_s": ideal, "runs": runs, "summary": summary}
    return result
