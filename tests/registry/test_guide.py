"""docs/registry.md's example tasks, as pasted, in real DAG runs against a SQLite registry."""

from __future__ import annotations

from typing import Any

from tests.airflow_db import returned
from tests.dags import registry_guide_dags


def run(created: list[dict[str, str]], user: str = "ana", agent: str = "agent-1") -> Any:
    """Run the guide's DAG; return what its two tasks returned: (orphaned, conversation)."""
    conf = {"created": created, "user": user, "agent": agent}
    dag_run = registry_guide_dags.guide.test(run_conf=conf)
    assert str(dag_run.state) == "success"
    orphaned, conversation = returned(dag_run)
    return orphaned, conversation


def created(label: str) -> list[dict[str, str]]:
    return [
        {"user_id": "ana", "agent_id": "agent-1", "conversation_id": f"{label}-1", "trace_id": "t1"},
        {"user_id": "ben", "agent_id": "agent-1", "conversation_id": f"{label}-2", "trace_id": "t2"},
    ]


def test_the_guide_keeps_the_first_conversation_and_reports_the_orphans(airflow_db, sqlite_registry):
    assert run(created("first")) == ([], "first-1")
    assert run(created("second")) == (["second-1", "second-2"], "first-1")
    assert run([], user="nobody") == ([], None)
