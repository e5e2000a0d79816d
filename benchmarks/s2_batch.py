"""Scenario 2: ``create_conversations`` with 50 ms server latency, 1/4/8/16 workers vs N·latency/workers.

No rate limit on the server, so the batch runs with its default (adaptive) limiter, which
should never slow it. Each run uses a fresh hook (its pool and threads are part of the time),
distinct (agent, user) pairs, and is checked on the server: one conversation per item.
"""

from __future__ import annotations

import os
import time

from benchmarks.common import (
    Deadline,
    Goal,
    ScenarioResult,
    ServerProcess,
    at_most,
    exactly_once,
    fmt_ratio,
    fmt_seconds,
    make_items,
    median,
    new_result,
    say,
)

TITLE = "Batch under 50 ms latency"
GOAL = 1.15
GOAL_WORKERS = 8


def run(
    *,
    items: int = 400,
    latency: float = 0.05,
    workers: tuple[int, ...] = (1, 4, 8, 16),
    repetitions: int = 3,
) -> ScenarioResult:
    from airflow_provider_aidol.hooks.aidol import AidolHook

    config = {"items": items, "latency_s": latency, "workers": list(workers), "repetitions": repetitions}
    result = new_result(2, TITLE, config)
    deadline = Deadline(900, "scenario 2")
    seconds: dict[int, list[float]] = {}
    all_ok = True
    with ServerProcess(latency=latency, name="s2-server") as server:
        os.environ["AIRFLOW_CONN_AIDOL_DEFAULT"] = server.connection
        for count in workers:
            # One worker is slow (N x latency) and steady: one run is enough.
            runs = 1 if count == 1 else repetitions
            seconds[count] = []
            for repetition in range(runs):
                deadline.check()
                batch = make_items(items, f"s2-w{count}-r{repetition}")
                server.reset()
                hook = AidolHook(aidol_conn_id="aidol_default")
                start = time.perf_counter()
                results = hook.create_conversations(batch, max_workers=count)
                elapsed = time.perf_counter() - start
                hook.close()
                seconds[count].append(elapsed)
                failed = sum(r["error"] is not None for r in results)
                ok = exactly_once(server.stats(), batch) and failed == 0
                all_ok = all_ok and ok
                if not ok:
                    result["notes"].append(f"{count} workers, run {repetition + 1}: {failed} items failed")
                say(f"  {count:>2} workers: {elapsed:.2f} s (ideal {items * latency / count:.2f} s)")
    ideal = {count: items * latency / count for count in workers}
    medians = {count: median(values) for count, values in seconds.items()}
    ratio = medians[GOAL_WORKERS] / ideal[GOAL_WORKERS]
    goal: Goal = {
        "measure": f"{GOAL_WORKERS} workers, wall time / ideal N·latency/workers",
        "goal": f"≤ {GOAL:.2f}x",
        "result": f"{fmt_ratio(ratio)} ({fmt_seconds(medians[GOAL_WORKERS])} vs "
        f"{fmt_seconds(ideal[GOAL_WORKERS])})",
        "met": at_most(ratio, GOAL) and all_ok,
    }
    if not all_ok:
        goal["note"] = "some items failed or were not created exactly once"
    result["goals"].append(goal)
    result["table"] = {
        "columns": ["workers", "ideal", "median wall", "runs (s)", "x ideal", "conversations/s"],
        "rows": [
            [
                str(count),
                fmt_seconds(ideal[count]),
                fmt_seconds(medians[count]),
                " / ".join(f"{value:.2f}" for value in seconds[count]),
                fmt_ratio(medians[count] / ideal[count]),
                f"{items / medians[count]:.0f}",
            ]
            for count in workers
        ],
    }
    result["notes"].append(
        f"Every run created exactly one conversation per item on the server: {'yes' if all_ok else 'NO'}."
    )
    result["data"] = {
        "seconds": {str(count): values for count, values in seconds.items()},
        "median_s": {str(count): value for count, value in medians.items()},
        "ideal_s": {str(count): value for count, value in ideal.items()},
        "exactly_once": all_ok,
    }
    return result
