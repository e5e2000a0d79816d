"""The send gate: a task that cannot succeed is refused before its first request, and costs nothing.

Each case runs the operator against the embedded server over real HTTP and a real registry
(SQLite in a file, the session's PostgreSQL), and counts what the server received: 0.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_aidol.exceptions import (
    AidolConfigurationError,
    AidolRegistryConfigError,
)
from airflow_provider_aidol.operators.aidol import CreateConversationOperator
from airflow_provider_aidol.operators.batch import CreateConversationsOperator
from airflow_provider_aidol.registry.dialects import create_table_sql
from tests.aidol_default import unique_items
from tests.conftest import REGISTRY_CONN_ID, REGISTRY_ENV_VAR
from tests.dags import batch_dags
from tests.registry.conftest import execute as run_sql

if TYPE_CHECKING:
    from pathlib import Path

    from airflow_provider_aidol.testing import AidolServer
    from tests.postgres_server import PostgresServer

LONE_SURROGATE = "agent-\ud800"


def task_instance() -> SimpleNamespace:
    """What the operators read of a running task's ``ti``."""
    return SimpleNamespace(
        dag_id="send_gate",
        run_id="manual__gate",
        task_id="create_conversations",
        map_index=-1,
        try_number=1,
        xcom_push=lambda key, value: None,
    )


def run_batch(items: list[Any], **kwargs: Any) -> Any:
    """Run ``CreateConversationsOperator.execute`` on ``items`` as a task would."""
    operator = CreateConversationsOperator(
        task_id="create_conversations", conversations=items, max_workers=2, **kwargs
    )
    return operator.execute({"ti": task_instance()})  # type: ignore[typeddict-item]


def run_single(**kwargs: Any) -> Any:
    """Run ``CreateConversationOperator.execute`` as a task would."""
    operator = CreateConversationOperator(task_id="create", **kwargs)
    return operator.execute({"ti": task_instance()})  # type: ignore[typeddict-item]


@pytest.fixture
def table() -> str:
    """A registry table no other test uses (the PostgreSQL database is shared by the session)."""
    return f"gate_{uuid.uuid4().hex[:12]}"


def task_tries(dag_run: Any, task_id: str) -> int:
    """How many tries ``task_id`` of ``dag_run`` had, read from the metadata database."""
    from airflow.models.taskinstance import TaskInstance  # noqa: TID251  (the test reads the DB itself)
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ti = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_run.dag_id,
                TaskInstance.run_id == dag_run.run_id,
                TaskInstance.task_id == task_id,
            )
        ).one()
        return int(ti.try_number)


# --- input ------------------------------------------------------------------------------------


def test_a_lone_surrogate_with_output_path_and_no_registry_sends_nothing_over_three_tries(
    aidol_default_server: AidolServer, tmp_path: Path
):
    batch = unique_items(8)
    batch[5]["agent_id"] = LONE_SURROGATE
    output_path = f"file://{tmp_path / 'results.jsonl'}"
    for _ in range(3):  # as three tries of the task would, had Airflow retried it
        with pytest.raises(
            AidolConfigurationError, match=r"items\[5\]\.agent_id holds a lone surrogate"
        ) as caught:
            run_batch(batch, output_path=output_path)
        assert caught.value.fatal, "Airflow does not retry it"
    assert aidol_default_server.count() == 0, "nothing is sent"


def test_a_bad_id_fails_the_dag_run_in_one_try_sending_nothing(
    airflow_with_aidol_server: AidolServer, tmp_path: Path
):
    # A line break a template left behind (a lone surrogate cannot travel through Airflow's own
    # API as a run's conf: the in-process tests above carry it).
    batch = unique_items(8)
    batch[5]["agent_id"] = "agent-1\n"
    path = tmp_path / "results.jsonl"
    dag_run = batch_dags.gated.test(run_conf={"items": batch, "output_path": f"file://{path}"})
    assert dag_run.state == "failed"
    assert airflow_with_aidol_server.count() == 0, "nothing is sent"
    assert task_tries(dag_run, "create_conversations") == 1, "a configuration error is not retried"
    assert not path.exists()


def test_a_lone_surrogate_is_named_by_item_and_field(aidol_default_server: AidolServer, tmp_path: Path):
    items = ["agent-1", {"agent_id": "agent-1", "user_id": "u-\udcff"}, LONE_SURROGATE]
    with pytest.raises(AidolConfigurationError) as caught:
        run_batch(items, output_path=f"file://{tmp_path / 'out.jsonl'}")
    assert "2 bad item(s), nothing was sent" in str(caught.value)
    assert "items[1].user_id holds a lone surrogate" in str(caught.value)
    assert "items[2].agent_id holds a lone surrogate" in str(caught.value)
    assert aidol_default_server.count() == 0


@pytest.mark.parametrize("agent_id", [LONE_SURROGATE, "agent\x00", "agent-1\n", "a" * 256])
def test_the_single_operator_refuses_an_id_no_store_can_keep(aidol_default_server: AidolServer, agent_id):
    with pytest.raises(AidolConfigurationError, match=r"^agent_id .*Nothing was sent\.$"):
        run_single(agent_id=agent_id, user_id="ana")
    assert aidol_default_server.count() == 0


def test_nul_in_an_id_with_a_postgresql_registry_is_refused_before_anything(
    aidol_default_server: AidolServer, postgres_registry: str, table: str
):
    items = [{"agent_id": "agent-1", "user_id": "ana"}, {"agent_id": "agent-1\x00", "user_id": "bob"}]
    with pytest.raises(AidolConfigurationError, match=r"items\[1\]\.agent_id holds a control character"):
        run_batch(items, reuse_existing=True, registry_conn_id=postgres_registry, registry_table=table)
    assert aidol_default_server.count() == 0


# --- registries that pass the shape check but cannot be written ---------------------------------


def ddl(dialect: str, table: str, *, extra: str = "", primary_key: bool = True) -> str:
    """The documented DDL of ``table``, with ``extra`` lines before the key (or without the key)."""
    statement = create_table_sql(dialect, table).rstrip(";")
    key_line = statement[statement.index("    PRIMARY KEY") :].split("\n")[0]
    replacement = (extra + key_line) if primary_key else extra.rstrip(",\n")
    statement = statement.replace(key_line, replacement)
    return statement.replace(",\n\n)", "\n)")


def refused(items: list[Any], conn_id: str, table: str) -> AidolRegistryConfigError:
    """Run the batch with reuse through ``table``; return the configuration error it raised."""
    with pytest.raises(AidolRegistryConfigError) as caught:
        run_batch(items, reuse_existing=True, registry_conn_id=conn_id, registry_table=table)
    return caught.value


DIALECT_NAMES = {"sqlite": "sqlite", "postgres": "postgresql", "mysql": "mysql"}


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def database(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Each registry database in turn: ``(connection id, SQLAlchemy dialect name)``."""
    conn_id: str = request.getfixturevalue(f"{request.param}_registry")
    return conn_id, DIALECT_NAMES[request.param]


@pytest.fixture(params=["sqlite", "postgres"])
def database_with_partial_indexes(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The registry databases with partial indexes and triggers that drop a row (MySQL has neither)."""
    conn_id: str = request.getfixturevalue(f"{request.param}_registry")
    return conn_id, DIALECT_NAMES[request.param]


def test_an_extra_not_null_column_is_refused_before_anything(
    aidol_default_server: AidolServer, database: tuple[str, str], table: str
):
    conn_id, dialect = database
    run_sql(conn_id, ddl(dialect, table, extra="    team VARCHAR(20) NOT NULL,\n"))
    error = refused(unique_items(6), conn_id, table)
    assert "cannot be written the way claims write" in str(error)
    assert "team" in str(error), "the database's own words name the column"
    assert aidol_default_server.count() == 0


def test_a_check_constraint_the_rows_break_is_refused_before_anything(
    aidol_default_server: AidolServer, database: tuple[str, str], table: str
):
    conn_id, dialect = database
    # A task that is not mapped has map_index -1, which this table refuses.
    run_sql(conn_id, ddl(dialect, table, extra="    CHECK (map_index >= 0),\n"))
    refused(unique_items(6), conn_id, table)
    assert aidol_default_server.count() == 0


def test_a_partial_unique_index_instead_of_the_key_is_refused_before_anything(
    aidol_default_server: AidolServer, database_with_partial_indexes: tuple[str, str], table: str
):
    conn_id, dialect = database_with_partial_indexes
    run_sql(conn_id, ddl(dialect, table, primary_key=False))
    run_sql(
        conn_id,
        f"CREATE UNIQUE INDEX {table}_pair ON {table} (namespace, user_id, agent_id) "
        "WHERE conversation_id <> ''",
    )
    error = refused(unique_items(6), conn_id, table)
    assert "cannot be written the way claims write" in str(error)
    assert aidol_default_server.count() == 0


DROPPING_TRIGGERS = {
    "sqlite": ["CREATE TRIGGER {t}_drop BEFORE INSERT ON {t} BEGIN SELECT RAISE(IGNORE); END"],
    "postgresql": [
        "CREATE FUNCTION {t}_drop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
        "CREATE TRIGGER {t}_drop BEFORE INSERT ON {t} FOR EACH ROW EXECUTE FUNCTION {t}_drop()",
    ],
}


def test_a_trigger_that_drops_the_rows_claims_write_is_refused_before_anything(
    aidol_default_server: AidolServer, database_with_partial_indexes: tuple[str, str], table: str
):
    conn_id, dialect = database_with_partial_indexes
    run_sql(conn_id, create_table_sql(dialect, table))
    for statement in DROPPING_TRIGGERS[dialect]:
        run_sql(conn_id, statement.format(t=table))
    error = refused(unique_items(6), conn_id, table)
    assert "lost a probe row" in str(error)
    assert aidol_default_server.count() == 0


def test_a_column_narrower_than_the_ddls_is_refused_before_anything(
    aidol_default_server: AidolServer, postgres_registry: str, table: str
):
    run_sql(
        postgres_registry,
        ddl("postgresql", table).replace("agent_id        VARCHAR(255)", "agent_id VARCHAR(16)"),
    )
    agent = f"agent-{uuid.uuid4()}"  # 42 characters: more than the column holds
    aidol_default_server.add_agent(agent)
    error = refused([{"agent_id": agent, "user_id": "ana"}], postgres_registry, table)
    assert "character varying(16)" in str(error)
    assert aidol_default_server.count() == 0


def registry_as_a_new_user(monkeypatch: pytest.MonkeyPatch, owner: str, *grants: str) -> None:
    """Point the registry connection at a new PostgreSQL login with only ``grants`` (run as ``owner``)."""
    monkeypatch.setenv(REGISTRY_ENV_VAR, owner)
    user = f"reader_{uuid.uuid4().hex[:8]}"
    run_sql(REGISTRY_CONN_ID, f"CREATE ROLE {user} LOGIN")  # PostgreSQL 15+: no CREATE on public
    for grant in grants:
        run_sql(REGISTRY_CONN_ID, grant.format(user=user))
    monkeypatch.setenv(REGISTRY_ENV_VAR, owner.replace("postgres@", f"{user}@", 1))


def test_a_read_only_postgresql_user_is_refused_before_anything(
    aidol_default_server: AidolServer,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    table: str,
):
    monkeypatch.setenv(REGISTRY_ENV_VAR, postgres_server.airflow_uri)
    run_sql(REGISTRY_CONN_ID, create_table_sql("postgresql", table))
    registry_as_a_new_user(monkeypatch, postgres_server.airflow_uri, f"GRANT SELECT ON {table} TO {{user}}")
    error = refused(unique_items(6), REGISTRY_CONN_ID, table)
    assert "permission denied" in str(error)
    assert aidol_default_server.count() == 0


def test_a_postgresql_user_that_cannot_create_the_missing_table_is_refused_before_anything(
    aidol_default_server: AidolServer,
    postgres_server: PostgresServer,
    monkeypatch: pytest.MonkeyPatch,
    table: str,
):
    registry_as_a_new_user(monkeypatch, postgres_server.airflow_uri)
    error = refused(unique_items(6), REGISTRY_CONN_ID, table)
    assert "The database refused to check or create" in str(error)
    assert aidol_default_server.count() == 0


@pytest.fixture
def read_only_file(tmp_path: Path) -> Any:
    """Make a file unwritable, also for root (``chattr +i``); undone after the test."""
    made: list[Path] = []

    def make(path: Path) -> None:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "+i", str(path)], check=True)
        else:
            path.chmod(0o444)
        made.append(path)

    yield make
    for path in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_sqlite_file_is_refused_before_anything(
    aidol_default_server: AidolServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    read_only_file: Any,
    table: str,
):
    database = tmp_path / "frozen.db"
    monkeypatch.setenv(REGISTRY_ENV_VAR, json.dumps({"conn_type": "sqlite", "host": str(database)}))
    run_sql(REGISTRY_CONN_ID, create_table_sql("sqlite", table))
    read_only_file(database)
    error = refused(unique_items(6), REGISTRY_CONN_ID, table)
    assert "readonly database" in str(error)
    assert aidol_default_server.count() == 0


# --- table names the database cannot keep --------------------------------------------------------


@pytest.mark.parametrize("name", ["order", "user", "t" * 64])
def test_a_table_name_postgresql_cannot_keep_is_refused_before_anything(
    aidol_default_server: AidolServer, postgres_registry: str, name: str
):
    error = refused(unique_items(3), postgres_registry, name)
    assert "Fix: set registry_table to another name" in str(error)
    assert aidol_default_server.count() == 0


def test_a_reserved_word_is_refused_on_sqlite_too(aidol_default_server: AidolServer, sqlite_registry: str):
    error = refused(unique_items(3), sqlite_registry, "order")
    assert "'order' is a word sqlite reserves" in str(error)
    assert aidol_default_server.count() == 0
