"""Fixtures of ``make e2e-distributed``: PostgreSQL, Redis, two embedded AI-DOL servers, a Celery Airflow.

One deployment for the session, started once and stopped at the end, also when a step fails:
Debian's PostgreSQL (metadata database, Celery result backend and the conversation registry)
and Redis (Celery broker), ``airflow api-server``, ``scheduler``, ``dag-processor`` and two
``airflow celery worker``. The AI-DOL servers run in this pytest process, so the test reads what
they recorded: ``aidol_default`` is rate-limited (``RATE`` requests/s, burst ``BURST``,
``LATENCY`` s per answer),
``aidol_bench`` is not.
"""

from __future__ import annotations

import secrets
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from airflow_provider_aidol.testing import AidolServer
from e2e.conftest import _STACKS
from e2e.distributed.deployment import WORKERS, celery_stack, worker_ready
from e2e.distributed.redis_server import RedisServer
from e2e.stack import wait_for
from e2e.timing import NOTES, Stopwatch
from tests.postgres_server import PostgresServer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from e2e.stack import AirflowStack

DAGS = Path(__file__).resolve().parent / "dags"
RATE = 50.0
BURST = 5
#: Seconds per answer: a shard has about one request in flight at any time, as against a real
#: server, so a SIGKILL is likely to catch some mid-request.
LATENCY = 0.1


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """Run a throwaway PostgreSQL on loopback: Airflow's metadata database and the registry."""
    server = PostgresServer()
    try:
        with Stopwatch("startup: postgresql"):
            server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def broker() -> Iterator[RedisServer]:
    """Run a throwaway Redis on loopback: the Celery broker."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def aidol() -> Iterator[AidolServer]:
    """Run the rate-limited AI-DOL server (``aidol_default``)."""
    secret = secrets.token_hex(16)
    with AidolServer(
        api_key="e2e-key",
        api_secret=secret,
        user_id="e2e-user",
        rate_limit=RATE,
        burst=BURST,
        latency=LATENCY,
    ) as server:
        yield server


@pytest.fixture(scope="session")
def bench_aidol() -> Iterator[AidolServer]:
    """Run an AI-DOL server without a rate limit (``aidol_bench``): batch vs mapped."""
    with AidolServer(api_key="bench-key", api_secret=secrets.token_hex(16), user_id="bench-user") as server:
        yield server


@pytest.fixture(scope="session")
def celery_airflow(
    tmp_path_factory: pytest.TempPathFactory,
    postgres: PostgresServer,
    broker: RedisServer,
    aidol: AidolServer,
    bench_aidol: AidolServer,
) -> Iterator[AirflowStack]:
    """Run Airflow with the CeleryExecutor and two workers; stop every process afterwards."""
    stack = celery_stack(
        tmp_path_factory.mktemp("airflow-home"),
        DAGS,
        database_uri=postgres.uri,
        broker_url=broker.url,
        extra_env={
            "AIRFLOW_CONN_AIDOL_DEFAULT": aidol.connection_json(),
            "AIRFLOW_CONN_AIDOL_BENCH": bench_aidol.connection_json(),
            "AIRFLOW_CONN_AIDOL_REGISTRY": postgres.airflow_uri,
        },
    )
    _STACKS.append(stack)
    try:
        with Stopwatch("startup: airflow db migrate (PostgreSQL)"):
            stack.migrate()
        with Stopwatch("startup: api-server, scheduler, dag-processor, 2 celery workers ready"):
            stack.start()
            stack.wait_healthy()
            for name in WORKERS:
                wait_for(f"celery {name} to be ready", partial(worker_ready, stack, name), timeout=120)
        yield stack
    finally:
        with Stopwatch("shutdown: airflow"):
            stack.stop()
        NOTES.extend(f"{s.name} ignored SIGTERM and was killed" for s in stack.services if s.forced)
