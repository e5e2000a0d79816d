"""The registry fails mid-batch: what was created is recorded before the task fails, and a retry
does not create it again, and claims it in the registry before sending anything. Real failures: a
PostgreSQL backend terminated from another connection, a SQLite database locked by another
connection past the registry's busy timeout, a SQLite table renamed away from under the batch."""

from __future__ import annotations

import itertools
import json
import sqlite3
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_aidol.exceptions import AidolRegistryConfigError, AidolRegistryError
from airflow_provider_aidol.registry.reuse import ConversationReuse
from tests.aidol_default import unique_items
from tests.conftest import REGISTRY_CONN_ID, REGISTRY_ENV_VAR
from tests.operators.test_send_gate import run_batch
from tests.registry.conftest import execute as run_sql
from tests.registry.conftest import records

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from airflow_provider_aidol.testing import AidolServer
    from tests.called_patches import CalledPatches

ITEMS = 16
SLOW = 0.15
"""Seconds each request waits on the server, so the batch's waves are small and several."""


@pytest.fixture
def table() -> str:
    """A registry table no other test uses (the PostgreSQL database is shared by the session)."""
    return f"failing_{uuid.uuid4().hex[:12]}"


def batch_options(path: Path, conn_id: str, table: str) -> dict[str, Any]:
    """The batch's arguments: results to ``path``, reusing and registering pairs in ``table``."""
    return {
        "output_path": f"file://{path}",
        "reuse_existing": True,
        "registry_conn_id": conn_id,
        "registry_table": table,
    }


def fail_mid_batch(
    must_call: CalledPatches,
    server: AidolServer,
    items: list[dict[str, str]],
    fail: Callable[[], object],
    **options: Any,
) -> AidolRegistryError:
    """Run the batch, each request slowed down, with ``fail`` (the registry's failure) done right
    before the batch registers its second wave of new conversations; return what it raised.

    The failure comes at that point whatever the machine's load: a wave is registered, requests
    are in flight, and most items are not sent yet.
    """
    register = ConversationReuse.register
    waves = itertools.count()

    def failing_before_the_second_wave(reuse: ConversationReuse, created: Any) -> Any:
        if next(waves) == 1:
            fail()
        return register(reuse, created)

    must_call.setattr(ConversationReuse, "register", failing_before_the_second_wave)
    server.latency = SLOW
    try:
        with pytest.raises(AidolRegistryError) as raised:
            run_batch(items=items, **options)
    finally:
        server.latency = 0.0  # the retries need no slow answers
    return raised.value


def conversation_ids(conn_id: str, table: str) -> set[str]:
    return {row[0] for row in records(conn_id, f"SELECT conversation_id FROM {table}")}


def last_lines(path: Path) -> dict[int, dict[str, Any]]:
    """Each item's last line in ``output_path`` (a later line supersedes an earlier one)."""
    return {line["index"]: line for line in map(json.loads, path.read_text().splitlines())}


def assert_recorded_before_raising(server: AidolServer, path: Path, conn_id: str, table: str) -> set[str]:
    """Every conversation created is in ``output_path``; return those it says are not registered."""
    created = {c.conversation_id for c in server.conversations}
    assert len(created) < ITEMS, "nothing more was sent once the registry failed"
    lines = last_lines(path).values()
    assert created == {line["conversation_id"] for line in lines if line["conversation_id"]}
    unregistered = created - conversation_ids(conn_id, table)
    assert unregistered, "the wave in hand was not registered"
    flagged = {line["conversation_id"] for line in lines if line.get("unregistered")}
    assert flagged == unregistered, "output_path says which ones are not registered"
    assert all("not registered" in line["error"] for line in lines if line.get("unregistered"))
    return unregistered


def assert_retry_registers_everything(
    server: AidolServer,
    items: list[dict[str, str]],
    path: Path,
    conn_id: str,
    table: str,
    summary: Any,
    registered_before: int,
) -> None:
    """After the retry: one conversation per item, every one in the registry and in output_path."""
    per_user = Counter(c.user_id for c in server.conversations)
    assert per_user == Counter({item["user_id"]: 1 for item in items}), "nothing created twice"
    created = {c.conversation_id for c in server.conversations}
    assert conversation_ids(conn_id, table) == created, "every conversation created is registered"
    final = last_lines(path)
    assert sorted(final) == list(range(ITEMS))
    assert {line["status"] for line in final.values()} == {"created"}
    assert not any(line.get("unregistered") or line["error"] for line in final.values())
    assert summary["created"] + summary["already_recorded"] == ITEMS
    assert summary["already_recorded"] == registered_before, "the unregistered ones count as created now"


@pytest.fixture
def locking_sqlite_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A SQLite registry whose busy timeout is 0.5 s (the connection's extra ``busy_timeout``)."""
    database = tmp_path / "registry.db"
    connection = {"conn_type": "sqlite", "host": str(database), "extra": {"busy_timeout": 0.5}}
    monkeypatch.setenv(REGISTRY_ENV_VAR, json.dumps(connection))
    return REGISTRY_CONN_ID, database


def fail_on_a_lock(
    must_call: CalledPatches, server: AidolServer, items: list[dict[str, str]], database: Path, **options: Any
) -> sqlite3.Connection:
    """Run the batch while another connection holds the SQLite registry locked (``BEGIN EXCLUSIVE``)
    from its second wave on; return that connection, still holding the lock."""
    lock = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    error = fail_mid_batch(must_call, server, items, lambda: lock.execute("BEGIN EXCLUSIVE"), **options)
    assert "locked" in str(error)
    return lock


def test_postgresql_terminated_mid_batch_the_wave_in_hand_goes_to_output_path(
    aidol_default_server: AidolServer,
    postgres_registry: str,
    table: str,
    tmp_path: Path,
    must_call: CalledPatches,
):
    server, items, path = aidol_default_server, unique_items(ITEMS), tmp_path / "results.jsonl"
    options = batch_options(path, postgres_registry, table)
    terminated: list[tuple[Any, ...]] = []

    def terminate_the_registry_s_connection() -> None:
        terminated.extend(
            records(
                postgres_registry,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            )
        )

    error = fail_mid_batch(must_call, server, items, terminate_the_registry_s_connection, **options)
    assert terminated, "the registry's connection was there to terminate"
    assert not isinstance(error, AidolRegistryConfigError), "a lost connection may heal: retried"
    assert_recorded_before_raising(server, path, postgres_registry, table)
    registered_before = len(conversation_ids(postgres_registry, table))

    summary = run_batch(items=items, **options)  # the retry, with the database back
    assert_retry_registers_everything(
        server, items, path, postgres_registry, table, summary, registered_before
    )


def test_sqlite_locked_past_its_busy_timeout_mid_batch_then_the_retry_registers_the_wave(
    aidol_default_server: AidolServer,
    locking_sqlite_registry: tuple[str, Path],
    table: str,
    tmp_path: Path,
    must_call: CalledPatches,
):
    conn_id, database = locking_sqlite_registry
    items = unique_items(ITEMS)
    path = tmp_path / "results.jsonl"
    options = batch_options(path, conn_id, table)
    lock = fail_on_a_lock(must_call, aidol_default_server, items, database, **options)
    lock.rollback()
    lock.close()
    assert_recorded_before_raising(aidol_default_server, path, conn_id, table)
    registered_before = len(conversation_ids(conn_id, table))

    summary = run_batch(items=items, **options)  # the retry, the lock gone
    assert_retry_registers_everything(
        aidol_default_server, items, path, conn_id, table, summary, registered_before
    )


def test_a_pair_registered_by_another_task_meanwhile_settles_orphaned_on_the_retry(
    aidol_default_server: AidolServer,
    locking_sqlite_registry: tuple[str, Path],
    table: str,
    tmp_path: Path,
    must_call: CalledPatches,
):
    conn_id, database = locking_sqlite_registry
    server, items, path = aidol_default_server, unique_items(ITEMS), tmp_path / "results.jsonl"
    options = batch_options(path, conn_id, table)
    lock = fail_on_a_lock(must_call, server, items, database, **options)
    lock.rollback()
    [mine, *_] = sorted(assert_recorded_before_raising(server, path, conn_id, table))
    [line] = [line for line in last_lines(path).values() if line["conversation_id"] == mine]
    lock.execute(  # another task registers the pair first
        f"INSERT INTO {table} (namespace, user_id, agent_id, conversation_id) VALUES (?, ?, ?, ?)",
        ("aidol_default", line["user_id"], line["agent_id"], "conversation-of-another-task"),
    )
    lock.close()

    summary = run_batch(items=items, **options)
    assert summary["orphaned"] == 1
    settled = last_lines(path)[line["index"]]
    assert settled["status"] == "orphaned"
    assert settled["conversation_id"] == "conversation-of-another-task"
    assert settled["orphaned_conversation_id"] == mine
    assert "unregistered" not in settled
    registered = conversation_ids(conn_id, table)
    created = {c.conversation_id for c in server.conversations}
    assert registered == created - {mine} | {"conversation-of-another-task"}
    assert Counter(c.user_id for c in server.conversations) == Counter({i["user_id"]: 1 for i in items})


def test_sqlite_table_gone_mid_batch_without_output_path_logs_every_id(
    aidol_default_server: AidolServer,
    sqlite_registry: str,
    table: str,
    capfd: pytest.CaptureFixture[str],
    must_call: CalledPatches,
):
    server = aidol_default_server
    options = {"reuse_existing": True, "registry_conn_id": sqlite_registry, "registry_table": table}
    move_the_table = lambda: run_sql(sqlite_registry, f"ALTER TABLE {table} RENAME TO {table}_moved")  # noqa: E731
    fail_mid_batch(must_call, server, unique_items(ITEMS), move_the_table, **options)
    created = {c.conversation_id for c in server.conversations}
    unregistered = created - conversation_ids(sqlite_registry, f"{table}_moved")
    assert unregistered, "the wave in hand was not registered"
    [warning] = [line for line in capfd.readouterr().out.splitlines() if "created and not registered" in line]
    assert "warning" in warning.lower()  # Airflow 3.0 logs it through logging (WARNING), 3.1+ structlog
    assert "here only (no output_path)" in warning
    assert all(conversation_id in warning for conversation_id in unregistered), "every id is logged"
