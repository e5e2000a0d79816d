"""``python -m benchmarks.dags_test_timed <timings.jsonl> <dag_id>``: ``airflow dags test`` with a clock.

Runs Airflow's own CLI (``airflow dags test <dag_id>``) in this process after wrapping the two
steps ``dag.test()`` takes for every task instance: ``run_task_in_process`` (the task runs:
``execute()``, or ``execute_complete()`` after a deferral; a worker slot in a deployment) and
``_run_inline_trigger`` (the task is deferred and its trigger runs, as a triggerer would run it).
Each call appends one JSON line ``{"kind": "task"|"trigger", "task_id", "map_index", "start",
"end"}`` (Unix timestamps) to the timings file. Nothing else is changed: the wrappers call the
originals with the same arguments.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
from typing import Any

_lock = threading.Lock()


def _timed(kind: str, original: Any, path: str) -> Any:
    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ti = kwargs.get("ti") or (args[1] if len(args) > 1 else None)
        start = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            record = {
                "kind": kind,
                "task_id": getattr(ti, "task_id", None),
                "map_index": getattr(ti, "map_index", None),
                "start": start,
                "end": time.time(),
            }
            with _lock, open(path, "a") as timings:
                timings.write(json.dumps(record) + "\n")

    return wrapper


def main() -> int:
    path, dag_id = sys.argv[1], sys.argv[2]
    from airflow.sdk.definitions import dag as dag_module
    from airflow.sdk.execution_time import supervisor

    supervisor.run_task_in_process = _timed("task", supervisor.run_task_in_process, path)
    dag_module._run_inline_trigger = _timed("trigger", dag_module._run_inline_trigger, path)
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", "dags", "test", dag_id]
    airflow_main()  # type: ignore[no-untyped-call]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
