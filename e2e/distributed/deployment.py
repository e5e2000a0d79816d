"""Airflow with the CeleryExecutor on loopback: Redis broker, PostgreSQL metadata, two Celery workers.

``celery_stack`` builds on ``e2e.stack.AirflowStack`` (api-server, scheduler, dag-processor) and
adds two ``airflow celery worker`` processes, each with its own Celery hostname and pid file.
``kill_worker`` SIGKILLs one worker with everything it forked, as an OOM kill or a lost node
would: the Task SDK puts each task process in a process group of its own, so killing the
worker's group alone would leave its tasks running; the kill walks the process tree instead.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING

import psutil  # type: ignore[import-untyped]

from e2e.stack import AIRFLOW, AirflowStack, Service

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

WORKERS = ("worker-a", "worker-b")
#: Task slots per Celery worker: the four shards run two on each worker.
WORKER_CONCURRENCY = 2
#: Seconds without a heartbeat after which the scheduler fails a running task instance (and so
#: retries it). Airflow's default is 300; a test cannot wait that long for a killed worker.
HEARTBEAT_TIMEOUT = 20


def celery_stack(
    home: Path,
    dags_folder: Path,
    *,
    database_uri: str,
    broker_url: str,
    extra_env: Mapping[str, str] | None = None,
) -> AirflowStack:
    """Return an ``AirflowStack`` on PostgreSQL with the CeleryExecutor and two workers (not started)."""
    env = {
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(len(WORKERS) * WORKER_CONCURRENCY * 2),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_uri.replace(
            "postgresql://", "postgresql+psycopg2://"
        ),
        # Several processes share a PostgreSQL with max_connections=50: small pools.
        "AIRFLOW__DATABASE__SQL_ALCHEMY_POOL_SIZE": "2",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_MAX_OVERFLOW": "3",
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + database_uri,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
        **(extra_env or {}),
    }
    stack = AirflowStack(home, dags_folder, extra_env=env)
    for name in WORKERS:
        args = [AIRFLOW, "celery", "worker", "--celery-hostname", f"{name}@127.0.0.1"]
        args += ["--concurrency", str(WORKER_CONCURRENCY), "--pid", str(home / f"{name}.pid")]
        # --skip-serve-logs: no log server on every interface; the task logs are files in AIRFLOW_HOME.
        args += ["--skip-serve-logs", "--without-gossip", "--without-mingle"]
        stack.services.append(Service(name, args, stack.env, stack.log_dir, grace=10.0))
    return stack


def worker_ready(stack: AirflowStack, name: str) -> bool:
    """Whether the Celery worker ``name`` has said it is ready (raise if any component has exited)."""
    stack.check_alive()
    return " ready." in stack.service(name).log_path.read_text(errors="replace")


def running_tasks(worker: Service) -> int:
    """Return how many task processes the worker runs now: its descendants in a process group of their own."""
    if worker.process is None:
        return 0
    group = worker.process.pid
    count = 0
    for child in psutil.Process(group).children(recursive=True):
        with contextlib.suppress(ProcessLookupError):
            count += os.getpgid(child.pid) == child.pid != group
    return count


def kill_worker(worker: Service) -> int:
    """SIGKILL the worker and every process it forked, at once; return how many processes died."""
    assert worker.process is not None, f"{worker.name} is not running"
    leader = psutil.Process(worker.process.pid)
    victims = [leader, *leader.children(recursive=True)]
    for victim in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim.pid, signal.SIGKILL)
    psutil.wait_procs(victims, timeout=10)
    worker.kill()  # reaps the leader, kills any straggler of its group, closes the log
    return len(victims)
