"""The ``aidol_default`` connection in the tests: pointed at an embedded server, and what is sent through it.

The fixtures built on these (``aidol_default_server``, ``airflow_with_aidol_server``,
``conversation``) are at the end of ``tests/conftest.py``.
"""

from __future__ import annotations

import json
import uuid
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.hooks.aidol import AidolHook

if TYPE_CHECKING:
    import pytest

FAST_RETRIES = {"retry_wait_initial": 0.01, "retry_wait_max": 0.05}
"""Retry waits short enough for tests that make the hook retry."""

USER = "bob"
"""The end user of the ``conversation`` fixture's conversation (and of ``tests/dags/image_dags.py``)."""


def point_connection(
    monkeypatch: pytest.MonkeyPatch, server: Any, *, without: tuple[str, ...] = (), **changes: Any
) -> None:
    """Point ``aidol_default`` at ``server`` with fast retry waits and ``changes`` to host/login/password
    or extra fields; ``without`` names extra fields to leave out."""
    conn = json.loads(server.connection_json())
    for field in ("host", "login", "password"):
        if field in changes:
            conn[field] = changes.pop(field)
    conn["extra"].update(FAST_RETRIES, **changes)
    for field in without:
        del conn["extra"][field]
    monkeypatch.setenv("AIRFLOW_CONN_AIDOL_DEFAULT", json.dumps(conn))


def items(count: int, *, agents: int = 1, users: str = "user") -> list[dict[str, str]]:
    """Batch items with one distinct user each (``<users>-0000``, ...), round-robin over ``agents``
    agents (``agent-1``, ...), so the server's records tell every item apart."""
    return [{"agent_id": f"agent-{1 + n % agents}", "user_id": f"{users}-{n:04d}"} for n in range(count)]


def unique_items(count: int, *, agents: int = 1) -> list[dict[str, str]]:
    """``items`` with users unique to this call: DAG runs share one metadata database, so the
    registry's Variables of earlier tests never match them."""
    return items(count, agents=agents, users=f"{uuid.uuid4().hex[:8]}-user")


def conversations(count: int, agent: str = "agent-1") -> list[str]:
    """Create ``count`` conversations of ``USER`` with ``agent`` (``aidol_default``); return their ids."""
    hook = AidolHook()
    try:
        return [hook.create_conversation(agent, user_id=USER) for _ in range(count)]
    finally:
        hook.close()


def task_instance(
    dag_id: str,
    task_id: str,
    run_id: str = "r",
    pushed: dict[str, Any] | None = None,
    id: uuid.UUID | None = None,
) -> SimpleNamespace:
    """What the operators read of a running task's ``ti``; the XComs it pushes go into ``pushed``.

    :param id: the task instance's id (the approval's HITL detail is keyed by it); default: a new one.
    """
    sink: dict[str, Any] = {} if pushed is None else pushed
    return SimpleNamespace(
        id=id or uuid.uuid4(),
        dag_id=dag_id,
        run_id=run_id,
        task_id=task_id,
        map_index=-1,
        try_number=1,
        xcom_push=lambda key, value: sink.__setitem__(key, value),
    )


def from_uri(uri: str, conn_id: str) -> Any:
    """The connection Airflow makes of ``AIRFLOW_CONN_X=uri``: Task SDK's (3.1+), the core model's (3.0)."""
    from airflow.sdk import Connection

    if hasattr(Connection, "from_uri"):
        return Connection.from_uri(uri, conn_id=conn_id)
    from airflow.models.connection import Connection as CoreConnection  # noqa: TID251

    return CoreConnection(conn_id=conn_id, uri=uri)


def from_json(value: str, conn_id: str) -> Any:
    """The connection Airflow makes of a JSON ``AIRFLOW_CONN_X``: the SDK's (3.1+), the core model's (3.0)."""
    from airflow.sdk import Connection

    if hasattr(Connection, "from_json"):
        return Connection.from_json(value, conn_id=conn_id)
    from airflow.models.connection import Connection as CoreConnection  # noqa: TID251

    return CoreConnection.from_json(value, conn_id=conn_id)


def plain(log: str) -> str:
    """``log`` without colours: Airflow 3.0 colours a failed task's exception even off a terminal."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", log)


def logged(log: str, text: str) -> int:
    """How many log records of a task log hold ``text``, each counted once.

    Airflow 3.0's ``dag.test()`` prints every record twice (``[date time,ms]`` and ``[dateTtime.ms+0000]``).
    """
    import re

    stamp = re.compile(r"^\[(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)[.,](\d{3})\S*\] (.*)$")
    records = set()
    for number, line in enumerate(plain(log).splitlines()):
        if text in line:
            found = stamp.match(line)
            records.add(found.groups() if found else number)
    return len(records)
