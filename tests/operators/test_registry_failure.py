"""The registry fails mid-batch: what was created is recorded before the task fails, and a retry
does not create it again. Real failures: a PostgreSQL backend terminated from another connection,
a SQLite table renamed away from under the batch."""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_aidol.exceptions import AidolRegistryConfigError, AidolRegistryError
from airflow_provider_aidol.testing import Fault
from tests.aidol_default import unique_items
from tests.operators.test_send_gate import run_batch
from tests.polling import wait_until
from tests.registry.conftest import execute as run_sql
from tests.registry.conftest import records

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_aidol.testing import AidolServer

ITEMS = 16
SLOW = 0.15
"""Seconds each request waits on the server, so the batch is still running when the registry fails."""


@pytest.fixture
def table() -> str:
    """A registry table no other test uses (the PostgreSQL database is shared by the session)."""
    return f"failing_{uuid.uuid4().hex[:12]}"


def run_in_thread(**kwargs: Any) -> tuple[threading.Thread, list[BaseException]]:
    """Start the batch in a thread; the list receives what it raised."""
    raised: list[BaseException] = []

    def batch() -> None:
        try:
            run_batch(**kwargs)
        except BaseException as error:  # the test inspects it
            raised.append(error)

    thread = threading.Thread(target=batch)
    thread.start()
    return thread, raised


def conversation_ids(conn_id: str, table: str) -> set[str]:
    return {row[0] for row in records(conn_id, f"SELECT conversation_id FROM {table}")}


def test_postgresql_terminated_mid_batch_the_wave_in_hand_goes_to_output_path(
    aidol_default_server: AidolServer, postgres_registry: str, table: str, tmp_path: Path
):
    server = aidol_default_server
    server.inject(Fault.DELAY, delay=SLOW, times=2 * ITEMS)
    items = unique_items(ITEMS)
    path = tmp_path / "results.jsonl"
    options = {
        "output_path": f"file://{path}",
        "reuse_existing": True,
        "registry_conn_id": postgres_registry,
        "registry_table": table,
    }
    thread, raised = run_in_thread(items=items, **options)
    wait_until(lambda: len(server.conversations) >= 4, timeout=30, what="four conversations")
    terminated = records(
        postgres_registry,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
    )
    assert terminated, "the registry's connection was there to terminate"
    thread.join(timeout=60)

    [error] = raised
    assert isinstance(error, AidolRegistryError)
    assert not isinstance(error, AidolRegistryConfigError), "a lost connection may heal: retried"
    created = {c.conversation_id for c in server.conversations}
    assert len(created) < ITEMS, "nothing more was sent once the registry failed"
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    written = {line["conversation_id"] for line in lines if line["conversation_id"]}
    assert created == written, "every conversation created is in output_path"
    unregistered = created - conversation_ids(postgres_registry, table)
    assert unregistered, "the wave in hand was not registered"
    assert all("not registered" in line["error"] for line in lines if line["conversation_id"] in unregistered)

    run_batch(items=items, **options)  # the retry, with the database back
    per_user = Counter(c.user_id for c in server.conversations)
    assert per_user == Counter({item["user_id"]: 1 for item in items}), "nothing created twice"


def test_sqlite_table_gone_mid_batch_without_output_path_logs_every_id(
    aidol_default_server: AidolServer, sqlite_registry: str, table: str, capfd: pytest.CaptureFixture[str]
):
    server = aidol_default_server
    server.inject(Fault.DELAY, delay=SLOW, times=2 * ITEMS)
    options = {"reuse_existing": True, "registry_conn_id": sqlite_registry, "registry_table": table}
    thread, raised = run_in_thread(items=unique_items(ITEMS), **options)
    wait_until(lambda: len(server.conversations) >= 4, timeout=30, what="four conversations")
    run_sql(sqlite_registry, f"ALTER TABLE {table} RENAME TO {table}_moved")
    thread.join(timeout=90)

    [error] = raised
    assert isinstance(error, AidolRegistryError)
    created = {c.conversation_id for c in server.conversations}
    unregistered = created - conversation_ids(sqlite_registry, f"{table}_moved")
    assert unregistered, "the wave in hand was not registered"
    [warning] = [line for line in capfd.readouterr().out.splitlines() if "created and not registered" in line]
    assert "warning" in warning
    assert "here only (no output_path)" in warning
    assert all(conversation_id in warning for conversation_id in unregistered), "every id is logged"
