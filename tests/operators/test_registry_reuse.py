"""Reuse through the SQL registry in real DAG runs: first night creates, second night reuses all."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from tests.aidol_default import plain, point_connection, unique_items
from tests.airflow_db import returned
from tests.dags import batch_dags
from tests.registry.conftest import records

if TYPE_CHECKING:
    from airflow.sdk import DAG


def run(dag: DAG, **params: Any) -> Any:
    """Run ``dag`` with ``dag.test()`` and ``params`` as the run's conf; return the finished run."""
    return dag.test(run_conf=params)


def rows(conn_id: str, users: list[str]) -> dict[tuple[str, str], tuple[str, str, str]]:
    listed = ", ".join(f"'{user}'" for user in users)
    found = records(
        conn_id,
        "SELECT user_id, agent_id, conversation_id, dag_id, task_id FROM aidol_conversations "
        f"WHERE namespace = 'aidol_default' AND user_id IN ({listed})",
    )
    return {(user, agent): (conversation, dag, task) for user, agent, conversation, dag, task in found}


def test_the_second_night_reuses_every_conversation_from_the_sql_registry(
    airflow_with_aidol_server, registry_conn_id
):
    batch = unique_items(12, agents=2)
    first_run = run(batch_dags.registry_reusing, items=batch)
    second_run = run(batch_dags.registry_reusing, items=batch)
    assert (first_run.state, second_run.state) == ("success", "success")

    first, second = returned(first_run), returned(second_run)
    assert [r["reused"] for r in first] == [False] * 12
    assert [r["reused"] for r in second] == [True] * 12
    assert [r["conversation_id"] for r in second] == [r["conversation_id"] for r in first]
    assert len(airflow_with_aidol_server.conversations) == 12, "the second night sent nothing"
    kept = rows(registry_conn_id, [item["user_id"] for item in batch])
    assert {pair: row[0] for pair, row in kept.items()} == {
        (r["user_id"], r["agent_id"]): r["conversation_id"] for r in first
    }
    assert {row[1:] for row in kept.values()} == {("aidol_batch_registry", "create_conversations")}


def test_the_single_operator_registers_and_reuses_through_sql(airflow_with_aidol_server, registry_conn_id):
    user = f"{uuid.uuid4().hex[:8]}-solo"
    first_run, second_run = (
        run(batch_dags.single_registry, user=user),
        run(batch_dags.single_registry, user=user),
    )
    assert (first_run.state, second_run.state) == ("success", "success")
    first, second = returned(first_run), returned(second_run)
    assert first == second == airflow_with_aidol_server.conversations[0].conversation_id
    assert len(airflow_with_aidol_server.conversations) == 1
    assert rows(registry_conn_id, [user])[user, "agent-1"][0] == first


def test_a_registry_connection_that_does_not_exist_fails_before_any_request(airflow_with_aidol_server, capfd):
    assert run(batch_dags.bad_registry, items=unique_items(3, agents=2)).state == "failed"
    out = plain(capfd.readouterr().out)
    assert "Registry connection 'no_such_registry' does not exist" in out
    assert airflow_with_aidol_server.count() == 0


def test_the_connection_extra_sets_the_default_registry(
    airflow_with_aidol_server, monkeypatch, sqlite_registry
):
    point_connection(monkeypatch, airflow_with_aidol_server, registry_conn_id=sqlite_registry)
    batch = unique_items(3, agents=2)
    assert run(batch_dags.reusing, items=batch).state == "success"
    kept = rows(sqlite_registry, [item["user_id"] for item in batch])
    assert len(kept) == 3, "the rows are in the SQL registry the extra names"


def test_a_registry_the_operator_names_keeps_the_default_table_not_the_connections(
    airflow_with_aidol_server, monkeypatch, sqlite_registry
):
    # The connection's registry_table belongs to the connection's registry_conn_id; the operator
    # names another registry, so its rows go to that registry's default table.
    point_connection(
        monkeypatch,
        airflow_with_aidol_server,
        registry_conn_id="connection_registry",
        registry_table="connection_table",
    )
    batch = unique_items(3)
    assert run(batch_dags.registry_reusing, items=batch).state == "success"
    kept = rows(sqlite_registry, [item["user_id"] for item in batch])
    assert len(kept) == 3, "the rows are in aidol_conversations of the registry the operator names"
