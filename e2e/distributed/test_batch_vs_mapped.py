"""Batch vs mapped on a real scheduler: 200 items, one batch task against 200 mapped task instances.

Benchmark scenario 4 measures this in ``airflow dags test``, which runs mapped task instances one
after another in its own process. Here the deployment is real: the scheduler queues every
mapped ``CreateConversationOperator`` instance through Redis to the two Celery workers, each of
which starts a task process for it. The server has no rate limit. Measured per DAG, and
written to ``e2e/.out/distributed-batch-vs-mapped.json``: the create step as Airflow records it (first start
to last end of the create task's instances, from the REST API; a task instance starts before its
process has parsed the DAG file) and as the server saw it (first to last conversation created).
Asserted: every instance succeeded, and the server created one conversation per item, none
twice. The speed goal (mapped / batch >= 50x) is reported, not asserted: speed goals are
benchmark results (docs/benchmarks.md), not pass/fail tests.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from e2e.distributed.deployment import WORKER_CONCURRENCY, WORKERS
from e2e.distributed.test_worker_killed import create_span, seconds
from e2e.timing import TIMINGS, Stopwatch

if TYPE_CHECKING:
    from airflow_provider_aidol.testing import AidolServer
    from e2e.stack import AirflowStack

DAG_FILE = "e2e_aidol_distributed.py"
ITEMS = 200
#: The runs to compare: label → (dag_id, task_id of the create step).
RUNS = {
    "CreateConversationsOperator (1 task, max_workers=8)": ("e2e_create_batch", "create_conversations"),
    "mapped CreateConversationOperator (200 task instances)": ("e2e_create_mapped", "create_conversation"),
}
GOAL = 50.0
#: Where the measured numbers go (not in git; docs/benchmarks.md quotes them).
RESULTS = Path(__file__).resolve().parent.parent / ".out" / "distributed-batch-vs-mapped.json"


def test_one_batch_task_and_200_mapped_tasks_create_each_conversation_once(
    celery_airflow: AirflowStack, bench_aidol: AidolServer
) -> None:
    """Both create every item once on two Celery workers; their create steps are measured side by side."""
    measured: dict[str, dict[str, Any]] = {}
    for label, (dag_id, task_id) in RUNS.items():
        celery_airflow.wait_dag_parsed(dag_id, dag_file=DAG_FILE)
        bench_aidol.reset()
        with Stopwatch(f"batch vs mapped: {dag_id}"):
            run_id = celery_airflow.trigger(dag_id)
            state = celery_airflow.wait_run_finished(dag_id, run_id, timeout=900)
        instances = [t for t in celery_airflow.task_instances(dag_id, run_id) if t["task_id"] == task_id]
        assert state == "success", [(t["map_index"], t["state"]) for t in instances]
        assert all(t["state"] == "success" for t in instances)
        per_user = Counter(c.user_id for c in bench_aidol.conversations)
        assert len(per_user) == ITEMS, "one conversation per item"
        assert set(per_user.values()) == {1}, "none twice"
        assert len(instances) == (1 if dag_id == "e2e_create_batch" else ITEMS)
        run = celery_airflow.api("GET", celery_airflow.run_path(dag_id, run_id))
        created = [c.created_at for c in bench_aidol.conversations]
        measured[label] = {
            "dag_id": dag_id,
            "task_instances": len(instances),
            "create_step_s": round(create_span(instances), 2),
            "server_span_s": round((max(created) - min(created)).total_seconds(), 3),
            "run_s": round(seconds(run["start_date"], run["end_date"]), 2),
        }
        TIMINGS[f"batch vs mapped: {dag_id} create step"] = create_span(instances)
    batch, mapped = (measured[label] for label in RUNS)
    ratio = mapped["create_step_s"] / batch["create_step_s"]
    server_ratio = mapped["server_span_s"] / max(batch["server_span_s"], 0.001)
    document = {
        "items": ITEMS,
        "executor": "CeleryExecutor",
        "celery_workers": len(WORKERS),
        "worker_concurrency": WORKER_CONCURRENCY,
        "runs": measured,
        "mapped_vs_batch_create_step": round(ratio, 1),
        "mapped_vs_batch_server_span": round(server_ratio, 1),
        "mapped_vs_batch_run": round(mapped["run_s"] / batch["run_s"], 2),
        "goal": GOAL,
        "goal_met_on_create_step": ratio >= GOAL,
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(document))
