"""Metrics reach a real StatsD listener on loopback during a real DAG run."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("statsd", reason="the StatsD client (the dev extra) is not installed")

from airflow_provider_aidol.testing import Fault
from tests.aidol_default import unique_items
from tests.dags import integration_dags


@pytest.fixture
def statsd(monkeypatch):
    """A UDP socket on loopback, and Airflow's StatsD client pointed at it as a worker's would be."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(0.2)
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(listener.getsockname()[1]))
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PREFIX", "airflow")
    _start_worker_metrics()
    yield listener
    listener.close()


def _start_worker_metrics() -> None:
    # dag.test() runs tasks in this process, where nothing starts the metrics client: do what a
    # worker's task runner does at start-up (3.2+), or what airflow.stats does on import (3.1).
    try:
        from airflow.sdk._shared.observability.metrics import stats
        from airflow.sdk.observability.metrics import stats_utils

        stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    except ImportError:
        from airflow.metrics import statsd_logger  # type: ignore[import-not-found]
        from airflow.stats import Stats

        type(Stats).factory = statsd_logger.get_statsd_logger  # type: ignore[attr-defined]
        type(Stats).instance = None  # type: ignore[attr-defined]


def received(listener: socket.socket) -> set[str]:
    names: set[str] = set()
    while True:
        try:
            packet = listener.recv(65536).decode()
        except TimeoutError:
            return names
        names |= {line.split(":", 1)[0] for line in packet.splitlines() if line}


def test_a_batch_run_sends_the_documented_metric_names(airflow_with_aidol_server, statsd, tmp_path):
    airflow_with_aidol_server.inject(Fault.RATE_LIMITED, retry_after=0)
    items = [*unique_items(3), {"agent_id": "missing-agent", "user_id": "nobody"}]

    dag_run = integration_dags.assets_batch.test(
        run_conf={"items": items, "output_path": f"file://{tmp_path}/out.jsonl"}
    )

    assert str(dag_run.state) == "success"
    names = {name for name in received(statsd) if name.startswith("airflow.aidol.")}
    print(sorted(names))
    assert names >= {
        "airflow.aidol.request.conversation.ok",
        "airflow.aidol.request.conversation.rate_limited",
        "airflow.aidol.request.conversation.not_found",
        "airflow.aidol.request_duration.conversation",
        "airflow.aidol.rate_limited.conversation",
        "airflow.aidol.retries.conversation",
        "airflow.aidol.limiter.rate",
        "airflow.aidol.batch.items.created",
        "airflow.aidol.batch.items.failed",
    }
