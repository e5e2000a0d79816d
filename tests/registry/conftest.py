"""Registry connections for the tests: SQLite in a temporary file and the session's PostgreSQL."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from tests.postgres_server import PostgresServer

REGISTRY_CONN_ID = "aidol_registry"
REGISTRY_ENV_VAR = "AIRFLOW_CONN_AIDOL_REGISTRY"


@pytest.fixture
def sqlite_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The connection id of a SQLite registry database in a temporary file."""
    connection = {"conn_type": "sqlite", "host": str(tmp_path / "registry.db")}
    monkeypatch.setenv(REGISTRY_ENV_VAR, json.dumps(connection))
    return REGISTRY_CONN_ID


@pytest.fixture
def postgres_registry(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """The connection id of the session's PostgreSQL database."""
    monkeypatch.setenv(REGISTRY_ENV_VAR, postgres_server.airflow_uri)
    return REGISTRY_CONN_ID


@pytest.fixture(params=["sqlite", "postgres"])
def registry_conn_id(request: pytest.FixtureRequest) -> str:
    """Each registry database in turn: SQLite, then PostgreSQL."""
    conn_id: str = request.getfixturevalue(f"{request.param}_registry")
    return conn_id


@pytest.fixture
def table() -> str:
    """A table name no other test uses (the PostgreSQL database is shared by the session)."""
    return f"registry_{uuid.uuid4().hex[:12]}"


def records(conn_id: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` read through the connection's own DbApiHook, not through the registry."""
    from airflow.sdk import BaseHook

    hook = BaseHook.get_connection(conn_id).get_hook()  # type: ignore[no-untyped-call]
    return [tuple(row) for row in hook.get_records(sql)]


def execute(conn_id: str, sql: str) -> None:
    """Run ``sql`` through the connection's own DbApiHook (autocommit)."""
    from airflow.sdk import BaseHook

    BaseHook.get_connection(conn_id).get_hook().run(sql, autocommit=True)  # type: ignore[no-untyped-call]
