"""Asset events carry a task's results: stored in the metadata DB, and they queue the downstream DAG.

The batch's event holds its summary; a conversation's its id, traceId and whether it was reused;
an image's its path, conversation id and traceId. None holds a credential.
"""

from __future__ import annotations

import uuid

import pytest

from airflow_provider_aidol.client.endpoints import CHAT_IMAGE_PATH, CONVERSATION_PATH
from tests.aidol_default import unique_items
from tests.airflow_db import airflow_command, parse_test_dags
from tests.dags import integration_dags


@pytest.fixture
def consumer_known_to_airflow(airflow_db):
    """The tests' DAGs parsed into the metadata DB (as the DAG processor does), the consumer unpaused."""
    parse_test_dags()
    airflow_command("dags", "unpause", "aidol_assets_consumer")


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
    airflow_with_aidol_server, consumer_known_to_airflow, tmp_path
):
    path = tmp_path / "out.jsonl"
    items = [*unique_items(3), {"agent_id": "missing-agent", "user_id": "nobody"}]
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
        "not_sent": 0,
        "in_doubt": 0,
        "output_path": f"file://{path}",
    }
    assert airflow_with_aidol_server.api_key not in repr(events)
    assert airflow_with_aidol_server.api_secret not in repr(events)
    assert queued_for("aidol_assets_consumer") == 1


def test_the_conversation_and_image_events_hold_their_ids_path_and_trace_ids(
    airflow_with_aidol_server, tmp_path
):
    user = f"u-{uuid.uuid4().hex[:8]}"
    first, second = tmp_path / "first.png", tmp_path / "second.png"

    runs = [
        integration_dags.assets_one.test(run_conf={"user": user, "output_path": f"file://{path}"})
        for path in (first, second)
    ]

    assert [str(run.state) for run in runs] == ["success", "success"]
    [created, reused] = stored_events(integration_dags.CONVERSATION.uri)[-2:]
    [conversation_call] = [
        r for r in airflow_with_aidol_server.requests if r.path == CONVERSATION_PATH and r.user_id == user
    ]
    conversation_id = created["conversation_id"]
    assert created == {
        "conversation_id": conversation_id,
        "trace_id": conversation_call.trace_id,
        "reused": False,
    }
    assert reused == {"conversation_id": conversation_id, "trace_id": None, "reused": True}
    image_calls = [
        r.trace_id
        for r in airflow_with_aidol_server.requests
        if r.path == CHAT_IMAGE_PATH and r.user_id == user
    ]
    assert stored_events(integration_dags.IMAGE.uri)[-2:] == [
        {"path": f"file://{path}", "conversation_id": conversation_id, "trace_id": trace_id}
        for path, trace_id in zip((first, second), image_calls, strict=True)
    ]
    assert first.read_bytes().startswith(b"\x89PNG")
    everything = repr(
        stored_events(integration_dags.CONVERSATION.uri) + stored_events(integration_dags.IMAGE.uri)
    )
    assert airflow_with_aidol_server.api_key not in everything
    assert airflow_with_aidol_server.api_secret not in everything
