"""The Variables store (the key format of earlier releases) and both stores inside real Airflow tasks."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from airflow_provider_aidol.registry import variables
from tests.airflow_db import returned
from tests.dags import registry_dags


def run(**params: Any) -> dict[tuple[str, str], str]:
    """Run the registry DAG with ``dag.test()``; return what the registry answered in the task."""
    # Every param named: Airflow 3.0's dag.test() keeps an earlier run's conf in the DAG's params.
    conf = {"registry_conn_id": None, "namespace": "aidol_default", **params}
    dagrun = registry_dags.registry_task.test(run_conf=conf)
    assert str(dagrun.state) == "success"
    answered = returned(dagrun, "use_registry")
    return {(row["user_id"], row["agent_id"]): row["conversation_id"] for row in answered}


@pytest.fixture
def users():
    """Users unique to the test, so Variables of other tests never match."""
    run_id = uuid.uuid4().hex[:8]
    return [f"{run_id}-ana", f"{run_id}-ben", f"{run_id}-cy"]


def test_the_key_format_is_unchanged():
    assert variables.variable_key("aidol_default", "user-123", "agent-uuid") == (
        "aidol_conversation:aidol_default:user-123:agent-uuid"
    )
    assert variables.variable_key("c", "a:b", "x/y") == "aidol_conversation:c:a%3Ab:x%2Fy"
    long_key = variables.variable_key("c", "u" * 300, "agent")
    assert long_key.startswith("aidol_conversation:c:sha256:")
    assert len(long_key) == len("aidol_conversation:c:sha256:") + 64


def test_a_claim_is_found_by_the_next_run(airflow_db, users):
    pairs = [[user, "agent-1"] for user in users]
    assert run(op="claim", pairs=pairs, ids=["c-1", "c-2", "c-3"]) == {
        (users[0], "agent-1"): "c-1",
        (users[1], "agent-1"): "c-2",
        (users[2], "agent-1"): "c-3",
    }
    assert run(op="lookup", pairs=[*pairs, [users[0], "agent-2"]]) == {
        (users[0], "agent-1"): "c-1",
        (users[1], "agent-1"): "c-2",
        (users[2], "agent-1"): "c-3",
    }


def test_a_claim_keeps_the_conversation_already_there(airflow_db, users):
    run(op="claim", pairs=[[users[0], "agent-1"]], ids=["first"])
    kept = run(op="claim", pairs=[[users[0], "agent-1"], [users[1], "agent-1"]], ids=["second", "other"])
    assert kept == {(users[0], "agent-1"): "first", (users[1], "agent-1"): "other"}


def test_the_sql_registry_inside_a_task(airflow_db, sqlite_registry, users):
    """The task finds the registry connection through the Task SDK, as an operator will."""
    pairs = [[user, "agent-1"] for user in users]
    run(op="claim", pairs=pairs, ids=["s-1", "s-2", "s-3"], registry_conn_id=sqlite_registry)
    dagrun_rows = run(op="lookup", pairs=pairs, registry_conn_id=sqlite_registry)
    assert dagrun_rows == {
        (users[0], "agent-1"): "s-1",
        (users[1], "agent-1"): "s-2",
        (users[2], "agent-1"): "s-3",
    }
    # The Variables store knows nothing of them.
    assert run(op="lookup", pairs=pairs) == {}


def test_a_claimed_row_names_the_task_that_created_it(airflow_db, sqlite_registry, users):
    dagrun = registry_dags.registry_task.test(
        run_conf={
            "op": "claim",
            "pairs": [[users[0], "agent-1"]],
            "ids": ["c"],
            "registry_conn_id": sqlite_registry,
        }
    )
    assert str(dagrun.state) == "success"
    [row] = returned(dagrun, "use_registry")
    assert (row["dag_id"], row["run_id"], row["task_id"], row["map_index"]) == (
        "aidol_registry_task",
        dagrun.run_id,
        "use_registry",
        -1,
    )


def test_ids_with_colons_and_slashes_keep_their_own_variables(airflow_db, users):
    """Airflow stores the key as written (percent-encoded), so ``a:b`` + ``c`` is not ``a`` + ``b:c``."""
    pairs = [[f"{users[0]}:x", "agent"], [users[0], "x:agent"], [users[1], "agent/3"]]
    assert run(op="claim", pairs=pairs, ids=["colon-user", "colon-agent", "slash"]) == {
        (f"{users[0]}:x", "agent"): "colon-user",
        (users[0], "x:agent"): "colon-agent",
        (users[1], "agent/3"): "slash",
    }
    assert run(op="lookup", pairs=pairs) == {
        (f"{users[0]}:x", "agent"): "colon-user",
        (users[0], "x:agent"): "colon-agent",
        (users[1], "agent/3"): "slash",
    }
    [(stored,)] = _variables_like(f"%{users[1]}%")
    assert stored == variables.variable_key("aidol_default", users[1], "agent/3")


def test_a_variable_kept_by_0_1_0_under_the_decoded_key_is_still_found(airflow_db, users):
    from airflow.models.variable import Variable  # noqa: TID251  (the test reads the metadata DB)

    # 0.1.0 handed the key to the Task SDK as is; Airflow's API server decoded it once.
    Variable.set(f"aidol_conversation:aidol_default:{users[2]}@example.com:agent-1", "from-0.1.0")
    pairs = [[f"{users[2]}@example.com", "agent-1"]]
    assert run(op="claim", pairs=pairs, ids=["new"]) == {(f"{users[2]}@example.com", "agent-1"): "from-0.1.0"}


def test_a_0_1_0_variable_is_not_taken_for_a_pair_whose_ids_hold_a_colon(airflow_db, users):
    from airflow.models.variable import Variable  # noqa: TID251  (the test reads the metadata DB)

    # 0.1.0 kept (user "<u>:1", agent "a") under the decoded key, which (user "<u>", agent "1:a") shares.
    Variable.set(f"aidol_conversation:aidol_default:{users[0]}:1:a", "another-pairs")
    pairs = [[users[0], "1:a"]]
    assert run(op="claim", pairs=pairs, ids=["new"]) == {(users[0], "1:a"): "new"}


def _variables_like(pattern: str) -> list[tuple[str]]:
    from airflow.models.variable import Variable  # noqa: TID251  (the test reads the metadata DB)
    from airflow.utils.session import create_session

    with create_session() as session:
        return [(row.key,) for row in session.query(Variable).filter(Variable.key.like(pattern))]
