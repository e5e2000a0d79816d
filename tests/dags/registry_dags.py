"""A DAG whose task uses a conversation registry, so the stores run inside a real Airflow task.

Params: ``op`` (``"claim"`` or ``"lookup"``), ``pairs`` (``[[user, agent], ...]``), ``ids`` (the
conversation ids to claim, one per pair), ``registry_conn_id`` (``None``: Variables) and
``namespace`` (default ``aidol_default``). What the registry returned is kept in
``RESULTS[run_id]`` (``dag.test()`` runs tasks in this process).
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import DAG, get_current_context, task

from airflow_provider_aidol.registry import Origin, Registration, open_registry

RESULTS: dict[str, dict[tuple[str, str], Registration]] = {}


@task
def use_registry() -> None:
    """Claim or look up the params' pairs in the params' registry."""
    context = get_current_context()
    params: dict[str, Any] = context["params"]
    pairs = [(user, agent) for user, agent in params["pairs"]]
    origin = Origin.from_context(context)
    with open_registry(params["namespace"], registry_conn_id=params["registry_conn_id"]) as registry:
        if params["op"] == "claim":
            ids = params["ids"]
            rows = [origin.registration(*pair, ids[n]) for n, pair in enumerate(pairs)]
            RESULTS[context["run_id"]] = registry.claim(rows)
        else:
            RESULTS[context["run_id"]] = registry.lookup(pairs)


with DAG(
    "aidol_registry_task",
    schedule=None,
    params={"op": "lookup", "pairs": [], "ids": [], "registry_conn_id": None, "namespace": "aidol_default"},
) as registry_task:
    use_registry()
