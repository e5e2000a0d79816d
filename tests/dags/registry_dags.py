"""A DAG whose task uses a conversation registry, so the stores run inside a real Airflow task.

Params: ``op`` (``"claim"`` or ``"lookup"``), ``pairs`` (``[[user, agent], ...]``), ``ids`` (the
conversation ids to claim, one per pair), ``registry_conn_id`` (``None``: Variables) and
``namespace`` (default ``aidol_default``). The task returns what the registry answered, one
``{user_id, agent_id, conversation_id, dag_id, run_id, task_id, map_index}`` a pair (its XCom).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, get_current_context, task

from airflow_provider_aidol.registry import Origin, open_registry

FIELDS = ("user_id", "agent_id", "conversation_id", "dag_id", "run_id", "task_id", "map_index")


@task
def use_registry() -> list[dict[str, Any]]:
    """Claim or look up the params' pairs in the params' registry; return the rows it answered."""
    context = get_current_context()
    params: dict[str, Any] = context["params"]
    pairs = [(user, agent) for user, agent in params["pairs"]]
    origin = Origin.from_context(context)
    with open_registry(params["namespace"], registry_conn_id=params["registry_conn_id"]) as registry:
        if params["op"] == "claim":
            ids = params["ids"]
            rows = [origin.registration(*pair, ids[n]) for n, pair in enumerate(pairs)]
            answered = registry.claim(rows)
        else:
            answered = registry.lookup(pairs)
    return [{field: getattr(row, field) for field in FIELDS} for row in answered.values()]


with DAG(
    "aidol_registry_task",
    schedule=None,
    params={"op": "lookup", "pairs": [], "ids": [], "registry_conn_id": None, "namespace": "aidol_default"},
) as registry_task:
    use_registry()
