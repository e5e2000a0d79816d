"""Scenario 4: 200 conversations in real Airflow, one batch task vs 200 mapped task instances.

A temporary AIRFLOW_HOME on SQLite (``airflow db migrate`` once, not timed) and a generated DAGs
folder with three DAGs, each run with ``airflow dags test <dag_id>`` in a subprocess against the
server process (AIRFLOW_CONN_AIDOL_DEFAULT). Every DAG starts with a no-op ``warm_up`` task: the
first task instance of a run also starts Airflow's in-process execution API (seconds), and this
keeps that out of the create step.

- ``aidol_bench_noop``: the warm-up task alone: the fixed cost of an ``airflow dags test`` run;
- ``aidol_bench_batch``: warm-up, then ``CreateConversationsOperator`` over the 200 items;
- ``aidol_bench_mapped``: warm-up, then ``CreateConversationOperator.partial(...).expand_kwargs(items)``.

Measured per DAG: the wall time of the ``airflow dags test`` process, and from the metadata
database the create step (first start to last end of the create task's instances). The server is
reset before each DAG and checked after it: one conversation per item, none twice.
"""

from __future__ import annotations

import sqlite3
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.common import (
    AIRFLOW,
    Deadline,
    Goal,
    ScenarioResult,
    ServerProcess,
    check_child,
    exactly_once,
    fmt_ratio,
    fmt_seconds,
    make_items,
    median,
    migrated_airflow_env,
    new_result,
    run_child,
    say,
)

TITLE = "200 items in airflow dags test"
GOAL = 50.0
WORKERS = 8

DAG_FILE = """
from airflow.sdk import DAG, task
{imports}
ITEMS = {items!r}

with DAG(dag_id="{dag_id}", schedule=None, catchup=False):

    @task
    def warm_up() -> None:
        \"\"\"No-op first task: it absorbs the start of the in-process execution API.\"\"\"

    {create}
"""

NOOP = "warm_up()"
BATCH = (
    'warm_up() >> CreateConversationsOperator(task_id="create_conversations", conversations=ITEMS, '
    "max_workers={workers})"
)
MAPPED = 'warm_up() >> CreateConversationOperator.partial(task_id="create_conversation").expand_kwargs(ITEMS)'

NOOP_LABEL = "warm-up task only"
BATCH_LABEL = "CreateConversationsOperator"
MAPPED_LABEL = "mapped CreateConversationOperator"
RUNS = {
    # label: (dag_id, task_id of the create step)
    NOOP_LABEL: ("aidol_bench_noop", "warm_up"),
    BATCH_LABEL: ("aidol_bench_batch", "create_conversations"),
    MAPPED_LABEL: ("aidol_bench_mapped", "create_conversation"),
}


def _write_dags(folder: Path, items: list[dict[str, str]], workers: int) -> None:
    files = {
        "aidol_bench_noop": ("", NOOP, []),
        "aidol_bench_batch": (
            "from airflow_provider_aidol.operators.batch import CreateConversationsOperator",
            BATCH.format(workers=workers),
            items,
        ),
        "aidol_bench_mapped": (
            "from airflow_provider_aidol.operators.aidol import CreateConversationOperator",
            MAPPED,
            items,
        ),
    }
    for dag_id, (imports, create, dag_items) in files.items():
        text = DAG_FILE.format(imports=imports, items=dag_items, dag_id=dag_id, create=create)
        (folder / f"{dag_id}.py").write_text(text)


def _task_instances(database: Path, dag_id: str, task_id: str) -> list[tuple[str, datetime, datetime]]:
    """(state, start, end) of the task's instances in the DAG's latest run."""
    with sqlite3.connect(database) as db:
        (run_id,) = db.execute(
            "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (dag_id,)
        ).fetchone()
        rows = db.execute(
            "SELECT state, start_date, end_date FROM task_instance "
            "WHERE dag_id = ? AND task_id = ? AND run_id = ?",
            (dag_id, task_id, run_id),
        ).fetchall()
    return [
        (str(state), datetime.fromisoformat(str(start)), datetime.fromisoformat(str(end)))
        for state, start, end in rows
    ]


def _span(instances: list[tuple[str, datetime, datetime]]) -> float:
    return (max(end for _, _, end in instances) - min(start for _, start, _ in instances)).total_seconds()


def run(*, items: int = 200, workers: int = WORKERS, repetitions: int = 3) -> ScenarioResult:
    config = {
        "items": items,
        "batch_workers": workers,
        "repetitions": repetitions,
        "database": "SQLite",
        "runner": "airflow dags test",
    }
    result = new_result(4, TITLE, config)
    deadline = Deadline(2100, "scenario 4")
    batch = make_items(items, "s4")
    measured: dict[str, list[dict[str, Any]]] = {label: [] for label in RUNS}
    with tempfile.TemporaryDirectory(prefix="aidol-bench-airflow-") as scratch:
        home, dags = Path(scratch) / "home", Path(scratch) / "dags"
        with ServerProcess(name="s4-server") as server:
            env = migrated_airflow_env(home, dags, server, "s4")
            _write_dags(dags, batch, workers)
            for repetition in range(repetitions):
                for label, (dag_id, task_id) in RUNS.items():
                    deadline.check()
                    measured[label].append(_run_dag(server, env, home, dag_id, task_id, batch))
                    m = measured[label][-1]
                    say(
                        f"  run {repetition + 1}, {label}: airflow dags test {m['wall_s']:.1f} s, "
                        f"warm-up {m['warmup_s']:.2f} s, create step {m['task_span_s']:.2f} s, "
                        f"{m['task_instances']} task instance(s), {m['conversations']} conversations"
                    )
    runs = {label: _median_run(values) for label, values in measured.items()}
    noop, one, mapped = runs[NOOP_LABEL], runs[BATCH_LABEL], runs[MAPPED_LABEL]
    ratio = mapped["task_span_s"] / one["task_span_s"]
    wall_ratio = mapped["wall_s"] / one["wall_s"]
    correct = all(
        m["exactly_once"] and m["succeeded"] == m["task_instances"]
        for label in (BATCH_LABEL, MAPPED_LABEL)
        for m in measured[label]
    ) and all(m["task_instances"] == items for m in measured[MAPPED_LABEL])
    per_instance = mapped["task_span_s"] / items * 1000
    goal: Goal = {
        "measure": "mapped / batch: the create step inside `airflow dags test` "
        "(first start to last end of the create task instances)",
        "goal": f"≥ {GOAL:.0f}x",
        "result": f"{ratio:.0f}x ({fmt_seconds(mapped['task_span_s'])} vs {fmt_seconds(one['task_span_s'])})",
        "met": ratio >= GOAL and correct,
    }
    if not correct:
        goal["note"] = "a run did not create exactly one conversation per item"
    elif ratio < GOAL:
        goal["note"] = (
            f"`airflow dags test` runs the mapped task instances one after another in its own process, "
            f"{per_instance:.0f} ms apiece, against {one['task_span_s'] / items * 1000:.1f} ms per item "
            "in the batch task; in a deployment every mapped instance also goes through the scheduler "
            "and a task process of its own, which `dags test` leaves out (not measured here)"
        )
    result["goals"].append(goal)
    result["goals"].append(
        {
            "measure": "mapped / batch: whole `airflow dags test` wall time",
            "goal": "(shown)",
            "result": f"{fmt_ratio(wall_ratio)} ({fmt_seconds(mapped['wall_s'])} vs "
            f"{fmt_seconds(one['wall_s'])})",
            "met": None,
            "note": f"the DAG with only the no-op task already takes {fmt_seconds(noop['wall_s'])}",
        }
    )
    result["table"] = {
        "columns": [
            "DAG",
            "`airflow dags test` wall",
            "warm-up task",
            "create step",
            "create task instances (succeeded)",
            "conversations on the server",
            "peak RSS of the run",
        ],
        "rows": [
            [
                label,
                fmt_seconds(m["wall_s"]),
                fmt_seconds(m["warmup_s"]),
                "—" if label == NOOP_LABEL else fmt_seconds(m["task_span_s"]),
                "—" if label == NOOP_LABEL else f"{m['task_instances']} ({m['succeeded']})",
                str(m["conversations"]),
                f"{m['peak_rss_mb']:.0f} MB",
            ]
            for label, m in runs.items()
        ],
    }
    result["notes"].append(
        f"Medians of {repetitions} runs per DAG, interleaved. Wall time is the whole `airflow dags test` "
        "process: interpreter start, Airflow import and provider discovery, parsing the DAGs folder, "
        "serialising the DAGs to the database, creating the DAG run, running every task instance "
        "in-process (task runner, in-process execution API, XCom and state writes to SQLite) and exit. "
        "The warm-up task (a no-op, first in every DAG) absorbs the start of the in-process execution "
        "API; the create step is read from the metadata database: first start to last end of the "
        "create task's instances."
    )
    result["data"] = {"runs": runs, "all_runs": measured, "ratio": ratio, "wall_ratio": wall_ratio}
    return result


def _run_dag(
    server: ServerProcess,
    env: dict[str, str],
    home: Path,
    dag_id: str,
    task_id: str,
    batch: list[dict[str, str]],
) -> dict[str, Any]:
    server.reset()
    test = run_child([AIRFLOW, "dags", "test", dag_id], env=env, timeout=1200, name=f"s4-{dag_id}")
    check_child(test, f"airflow dags test {dag_id}")
    instances = _task_instances(home / "airflow.db", dag_id, task_id)
    warm_up = _task_instances(home / "airflow.db", dag_id, "warm_up")
    stats = server.stats()
    return {
        "dag_id": dag_id,
        "wall_s": test.seconds,
        "warmup_s": _span(warm_up),
        "task_span_s": _span(instances),
        "task_instances": len(instances),
        "succeeded": sum(state == "success" for state, _, _ in instances),
        "conversations": stats["conversations"],
        "exactly_once": dag_id == "aidol_bench_noop" or exactly_once(stats, batch),
        "peak_rss_mb": test.peak_rss / 2**20,
    }


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The first run's facts with the median of each time."""
    merged = dict(runs[0])
    for key in ("wall_s", "warmup_s", "task_span_s", "peak_rss_mb"):
        merged[key] = median(r[key] for r in runs)
    merged["conversations"] = min(r["conversations"] for r in runs)
    merged["succeeded"] = min(r["succeeded"] for r in runs)
    return merged
