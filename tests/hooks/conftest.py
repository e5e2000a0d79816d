"""Fixtures for hook tests: the embedded server behind ``aidol_default``, with fast retry waits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_aidol.hooks.aidol import AidolHook

FAST_RETRIES = {"retry_wait_initial": 0.01, "retry_wait_max": 0.05}


def point_connection(
    monkeypatch: pytest.MonkeyPatch, server: Any, *, without: tuple[str, ...] = (), **changes: Any
) -> None:
    """Point ``aidol_default`` at ``server``, with ``changes`` to host/login/password or extra fields."""
    conn = json.loads(server.connection_json())
    for field in ("host", "login", "password"):
        if field in changes:
            conn[field] = changes.pop(field)
    conn["extra"].update(FAST_RETRIES, **changes)
    for field in without:
        del conn["extra"][field]
    monkeypatch.setenv("AIRFLOW_CONN_AIDOL_DEFAULT", json.dumps(conn))


@pytest.fixture
def server(aidol_default_connection, monkeypatch):
    point_connection(monkeypatch, aidol_default_connection)
    return aidol_default_connection


@pytest.fixture
def hook(server):
    hook = AidolHook()
    yield hook
    hook.close()
