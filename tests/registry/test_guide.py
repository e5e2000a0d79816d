"""docs/registry.md's example tasks, as pasted, in real DAG runs against a SQLite registry."""

from __future__ import annotations

from typing import Any

from tests.dags import registry_guide_dags


def run(created: list[dict[str, str]], user: str = "ana", agent: str = "agent-1") -> Any:
    conf = {"created": created, "user": user, "agent": agent}
    assert str(registry_guide_dags.guide.test(run_conf=conf).state) == "success"
    return registry_guide_dags.RECEIVED["guide"].pop()


def created(label: str) -> list[dict[str, str]]:
    return [
        {"user_id": "ana", "agent_id": "agent-1", "conversation_id": f"{label}-1", "trace_id": "t1"},
        {"user_id": "ben", "agent_id": "agent-1", "conversation_id": f"{label}-2", "trace_id": "t2"},
    ]


def test_the_guide_keeps_the_first_conversation_and_reports_the_orphans(airflow_db, sqlite_registry):
    assert run(created("first")) == ([], "first-1")
    assert run(created("second")) == (["second-1", "second-2"], "first-1")
    assert run([], user="nobody") == ([], None)
