"""Metrics reach a real StatsD listener on loopback during a real DAG run."""

from __future__ import annotations

import socket

import pytest

pytest.importorskip("statsd", reason="the StatsD client (the dev extra) is not installed")

from airflow_provider_aidol.client.endpoints import CHAT_IMAGE_PATH
from airflow_provider_aidol.hooks.aidol import AidolHook
from airflow_provider_aidol.testing import Fault
from tests.aidol_default import USER, unique_items
from tests.dags import images_dags, integration_dags


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


def received_values(listener: socket.socket) -> dict[str, list[float]]:
    """Every value each metric was sent with (``name:value|type`` lines), in the order received."""
    values: dict[str, list[float]] = {}
    while True:
        try:
            packet = listener.recv(65536).decode()
        except TimeoutError:
            return values
        for line in packet.splitlines():
            name, _, rest = line.partition(":")
            values.setdefault(name, []).append(float(rest.split("|", 1)[0]))


def _image_conversations(count: int) -> list[str]:
    hook = AidolHook()
    try:
        return [hook.create_conversation("agent-1", user_id=USER) for _ in range(count)]
    finally:
        hook.close()


def test_an_image_batch_sends_its_counts(airflow_with_aidol_server, statsd, tmp_path):
    images = [{"conversation_id": cid, "text": f"p{n}"} for n, cid in enumerate(_image_conversations(2))]
    images.append("not a dict")  # type: ignore[arg-type]
    airflow_with_aidol_server.inject(Fault.DROP_AFTER_CREATE, path=CHAT_IMAGE_PATH)
    run_conf = {"images": images, "output": f"file://{tmp_path}"}

    assert str(images_dags.deferred.test(run_conf=run_conf).state) == "success"
    first = received_values(statsd)
    assert str(images_dags.deferred.test(run_conf=run_conf).state) == "success"  # the same folder again
    again = received_values(statsd)

    prefix = "airflow.aidol.image_batch.items."
    assert {n: v for n, v in first.items() if n.startswith(prefix)} == {
        f"{prefix}generated": [1.0],
        f"{prefix}in_doubt": [1.0],
        f"{prefix}failed": [1.0],
    }
    assert {n: v for n, v in again.items() if n.startswith(prefix)} == {
        f"{prefix}already_done": [1.0],
        f"{prefix}in_doubt": [1.0],
        f"{prefix}failed": [1.0],
    }
    # The trigger's own requests (run in this process by dag.test()) are counted too.
    assert first["airflow.aidol.request.chat_image.ok"] == [1.0]
