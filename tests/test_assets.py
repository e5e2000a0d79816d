"""Asset events carry a task's results: stored in the metadata DB, and they queue the downstream DAG."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.dags import integration_dags


@pytest.fixture
def server(airflow_db, aidol_default_connection):
    return aidol_default_connection


@pytest.fixture
def consumer_known_to_airflow(airflow_db):
    """The tests' DAGs parsed into the metadata DB (as the DAG processor does), the consumer unpaused."""
    airflow = Path(sys.executable).with_name("airflow")
    for command in (
        ["dags", "reserialize", "-B", "aidol_tests"],
        ["dags", "unpause", "aidol_assets_consumer"],
    ):
        subprocess.run([str(airflow), *command], check=True, capture_output=True, env=os.environ.copy())


def stored_events(uri: str) -> list[dict[str, object]]:
    from airflow.models.asset import AssetEvent, AssetModel  # noqa: TID251  (the test reads the metadata DB)
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        query = (
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri)
        )
        return [dict(event.extra) for event in session.scalars(query)]


def queued_for(dag_id: str) -> int:
    from airflow.models.asset import AssetDagRunQueue  # noqa: TID251
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(select(func.count()).where(AssetDagRunQueue.target_dag_id == dag_id)) or 0


def test_the_batch_asset_event_holds_the_summary_and_queues_the_downstream_dag(
    server, consumer_known_to_airflow, tmp_path
):
    path = tmp_path / "out.jsonl"
    run = uuid.uuid4().hex[:8]
    items = [{"agent_id": "agent-1", "user_id": f"{run}-{n}"} for n in range(3)]
    items.append({"agent_id": "missing-agent", "user_id": f"{run}-x"})
    before = stored_events(integration_dags.NIGHTLY.uri)

    dag_run = integration_dags.assets_batch.test(run_conf={"items": items, "output_path": f"file://{path}"})

    assert str(dag_run.state) == "success"
    events = stored_events(integration_dags.NIGHTLY.uri)
    assert len(events) == len(before) + 1
    assert events[-1] == {
        "total": 4,
        "created": 3,
        "reused": 0,
        "failed": 1,
        "in_doubt": 0,
        "output_path": f"file://{path}",
    }
    assert server.api_key not in repr(events)
    assert server.api_secret not in repr(events)
    assert queued_for("aidol_assets_consumer") == 1
