"""Registry connections for the tests: SQLite in a temporary file and the session's PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import REGISTRY_CONN_ID, REGISTRY_ENV_VAR

__all__ = ["REGISTRY_CONN_ID", "REGISTRY_ENV_VAR", "execute", "records"]


@pytest.fixture
def table() -> str:
    """A table name no other test uses (the PostgreSQL database is shared by the session)."""
    return f"registry_{uuid.uuid4().hex[:12]}"


def records(conn_id: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` read through the connection's own DbApiHook, not through the registry."""
    from airflow_provider_aidol._compat import BaseHook

    hook = BaseHook.get_connection(conn_id).get_hook()  # type: ignore[no-untyped-call]
    return [tuple(row) for row in hook.get_records(sql)]


def execute(conn_id: str, sql: str) -> None:
    """Run ``sql`` through the connection's own DbApiHook (autocommit)."""
    from airflow_provider_aidol._compat import BaseHook

    BaseHook.get_connection(conn_id).get_hook().run(sql, autocommit=True)  # type: ignore[no-untyped-call]
