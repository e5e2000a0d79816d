"""The SQL registry on real SQLite, PostgreSQL and MariaDB: bulk lookups and claims, races, bad setups."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_aidol.exceptions import AidolRegistryConfigError, AidolRegistryError
from airflow_provider_aidol.registry import DEFAULT_TABLE, Origin, Registration, open_registry
from airflow_provider_aidol.registry.dialects import COLUMNS, create_table_sql
from airflow_provider_aidol.registry.sql import SqlRegistry
from tests.forked import ForkedProcess
from tests.registry import claimer
from tests.registry.conftest import REGISTRY_CONN_ID, execute, records

NAMESPACE = "aidol_default"
ORIGIN = Origin("nightly", "scheduled__2026-11-30", "create_conversations", 3)


def registrations(count: int, label: str = "c") -> list[Registration]:
    return [
        ORIGIN.registration(f"user-{n}", f"agent-{n % 3}", f"{label}-{n}", f"trace-{n}") for n in range(count)
    ]


def test_the_first_use_creates_the_documented_table(registry_conn_id, table):
    with SqlRegistry(NAMESPACE, registry_conn_id, table) as registry:
        assert registry.lookup([("ana", "agent-1")]) == {}
    assert records(registry_conn_id, f"SELECT {', '.join(COLUMNS)} FROM {table}") == []


def test_a_claimed_row_is_found_with_everything_it_was_given(registry_conn_id, table):
    before = datetime.now(UTC)
    [mine] = registrations(1)
    with SqlRegistry(NAMESPACE, registry_conn_id, table) as registry:
        assert registry.claim([mine]) == {mine.pair: mine}
    with SqlRegistry(NAMESPACE, registry_conn_id, table) as registry:
        found = registry.lookup([mine.pair, ("someone-else", "agent-0")])
    assert list(found) == [mine.pair]
    row = found[mine.pair]
    assert (row.conversation_id, row.trace_id, row.dag_id, row.run_id, row.task_id, row.map_index) == (
        "c-0",
        "trace-0",
        "nightly",
        "scheduled__2026-11-30",
        "create_conversations",
        3,
    )
    assert row.created_at is not None
    assert row.created_at.tzinfo is not None
    assert before - timedelta(seconds=1) <= row.created_at <= datetime.now(UTC)


def test_a_claim_keeps_the_row_that_was_there_first(registry_conn_id, table):
    first, second = registrations(5, "first"), registrations(5, "second")
    with SqlRegistry(NAMESPACE, registry_conn_id, table) as registry:
        registry.claim(first[:3])
        kept = registry.claim(second)
    assert [kept[row.pair].conversation_id for row in second] == [
        "first-0",
        "first-1",
        "first-2",
        "second-3",
        "second-4",
    ]
    orphaned = [
        row.conversation_id for row in second if kept[row.pair].conversation_id != row.conversation_id
    ]
    assert orphaned == ["second-0", "second-1", "second-2"]
    assert records(registry_conn_id, f"SELECT COUNT(*) FROM {table}") == [(5,)]


def test_namespaces_keep_their_own_conversations(registry_conn_id, table):
    [mine] = registrations(1)
    with SqlRegistry("aidol_default", registry_conn_id, table) as default:
        default.claim([mine])
    with SqlRegistry("aidol_eu", registry_conn_id, table) as other:
        assert other.lookup([mine.pair]) == {}
        kept = other.claim([Registration(*mine.pair, "eu-conversation")])
    assert kept[mine.pair].conversation_id == "eu-conversation"


def test_thousands_of_pairs_go_in_a_few_statements(registry_conn_id, table):
    rows = registrations(2500)
    with SqlRegistry(NAMESPACE, registry_conn_id, table) as registry:
        assert registry.lookup(row.pair for row in rows) == {}
        assert len(registry.claim(rows)) == 2500
        found = registry.lookup(row.pair for row in rows)
        statements = registry.statements
    assert {pair: row.conversation_id for pair, row in found.items()} == {
        row.pair: row.conversation_id for row in rows
    }
    assert statements <= 12, f"{statements} statements for 2,500 pairs: not in bulk"
    assert records(registry_conn_id, f"SELECT COUNT(*) FROM {table}") == [(2500,)]


def test_a_pair_listed_twice_in_one_claim_is_one_row(registry_conn_id, table):
    [mine] = registrations(1)
    with SqlRegistry(NAMESPACE, registry_conn_id, table) as registry:
        kept = registry.claim([mine, Registration(*mine.pair, "later")])
    assert kept == {mine.pair: mine}


def test_ids_compare_exactly(registry_conn_id, table):
    rows = [Registration("Ana", "agent-1", "upper"), Registration("ana", "agent-1", "lower")]
    with SqlRegistry(NAMESPACE, registry_conn_id, table) as registry:
        kept = registry.claim(rows)
    assert {pair: row.conversation_id for pair, row in kept.items()} == {
        ("Ana", "agent-1"): "upper",
        ("ana", "agent-1"): "lower",
    }


# MySQL once, in claims of 100 pairs: the two sides' claims interleave most there.
@pytest.mark.parametrize(
    ("database", "batch"),
    [("sqlite", 2000), ("sqlite", 100), ("postgres", 2000), ("postgres", 100), ("mysql", 100)],
)
def test_two_processes_claiming_the_same_2000_pairs_keep_one_row_each_and_agree(
    request, database, table, batch
):
    registry_conn_id = request.getfixturevalue(f"{database}_registry")
    sides = {
        label: ForkedProcess(claimer.main, registry_conn_id, table, label, 2000, batch) for label in "AB"
    }
    try:
        for label, process in sides.items():
            assert process.stdout is not None
            while (line := process.stdout.readline()) and line.strip() != "ready":
                pass
            if line.strip() != "ready":  # it ended before it was ready: say how
                _, stderr = process.communicate(timeout=30)
                returncode = process.returncode
                pytest.fail(
                    f"side {label} ended before it was ready, with return code {returncode}:\n{stderr}"
                )
        for process in sides.values():
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = {label: process.communicate(timeout=120) for label, process in sides.items()}
    finally:
        for process in sides.values():
            process.close()
    kept = {}
    for label, (stdout, stderr) in outputs.items():
        returncode = sides[label].returncode
        assert returncode == 0, f"side {label} ended with return code {returncode}:\n{stderr}"
        kept[label] = json.loads(stdout.strip().splitlines()[-1])
    pairs = {f"{user}\t{agent}" for user, agent in claimer.pairs(2000)}
    assert set(kept["A"]) == set(kept["B"]) == pairs
    assert kept["A"] == kept["B"], "the two sides were told different conversations for a pair"
    # Each pair has exactly one winner; the other side learns that its conversation is orphaned.
    winners = {pair: conversation.split("-")[0] for pair, conversation in kept["A"].items()}
    assert set(winners.values()) <= {"A", "B"}
    stored = records(
        registry_conn_id,
        f"SELECT user_id, agent_id, conversation_id, run_id FROM {table} "
        f"WHERE namespace = '{claimer.NAMESPACE}'",
    )
    assert len(stored) == 2000
    assert {f"{user}\t{agent}": (conversation, run) for user, agent, conversation, run in stored} == {
        pair: (conversation, winners[pair]) for pair, conversation in kept["A"].items()
    }


def test_a_missing_connection_fails_before_anything_is_claimed(monkeypatch, table):
    monkeypatch.delenv("AIRFLOW_CONN_AIDOL_REGISTRY", raising=False)
    registry = SqlRegistry(NAMESPACE, REGISTRY_CONN_ID, table)
    with pytest.raises(
        AidolRegistryConfigError, match=r"Registry connection 'aidol_registry' does not exist"
    ) as info:
        registry.lookup([("ana", "agent-1")])
    assert "AIRFLOW_CONN_AIDOL_REGISTRY" in str(info.value)
    assert "registry_conn_id" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_a_connection_that_is_not_sql_is_refused(monkeypatch, table):
    aidol = {"conn_type": "aidol", "host": "http://127.0.0.1:1", "login": "key", "password": "secret"}
    monkeypatch.setenv("AIRFLOW_CONN_AIDOL_REGISTRY", json.dumps(aidol))
    with pytest.raises(AidolRegistryConfigError) as info:
        SqlRegistry(NAMESPACE, REGISTRY_CONN_ID, table).check()
    message = str(info.value)
    assert "'aidol_registry' has type 'aidol', whose hook AidolHook is not a SQL hook" in message
    assert "PostgreSQL, MySQL or SQLite connection" in message
    assert "secret" not in message


@pytest.mark.parametrize("busy_timeout", ["soon", 0, -1, True, 86400])
def test_a_sqlite_busy_timeout_extra_that_is_not_a_sane_number_of_seconds_is_refused(
    monkeypatch, tmp_path, table, busy_timeout
):
    database = tmp_path / "registry.db"
    connection = {"conn_type": "sqlite", "host": str(database), "extra": {"busy_timeout": busy_timeout}}
    monkeypatch.setenv("AIRFLOW_CONN_AIDOL_REGISTRY", json.dumps(connection))
    with pytest.raises(
        AidolRegistryConfigError, match=r"has extra busy_timeout=.* a number above 0 and at most 3600"
    ):
        SqlRegistry(NAMESPACE, REGISTRY_CONN_ID, table).check()
    assert not database.exists(), "refused before the database was touched"


def test_a_connection_whose_provider_is_missing_says_what_to_install(monkeypatch, table):
    monkeypatch.setenv("AIRFLOW_CONN_AIDOL_REGISTRY", json.dumps({"conn_type": "mssql", "host": "db"}))
    with pytest.raises(AidolRegistryConfigError, match=r"has type 'mssql', for which no hook can be loaded"):
        SqlRegistry(NAMESPACE, REGISTRY_CONN_ID, table).check()


# A Python without the sqlite provider's hook, as when the provider is not installed: Airflow then
# knows no hook for the type.
_WITHOUT_SQLITE_PROVIDER = """
import sys
sys.modules["airflow.providers.sqlite.hooks.sqlite"] = None
from airflow_provider_aidol.registry.sql import SqlRegistry
try:
    SqlRegistry("aidol_default", "aidol_registry", "aidol_conversations").check()
except Exception as error:
    print(error)
"""


def test_a_sqlite_connection_without_its_provider_is_told_to_install_the_sqlite_extra(tmp_path):
    connection = {"conn_type": "sqlite", "host": str(tmp_path / "registry.db")}
    env = {**os.environ, "AIRFLOW_CONN_AIDOL_REGISTRY": json.dumps(connection)}
    run = subprocess.run(
        [sys.executable, "-c", _WITHOUT_SQLITE_PROVIDER], env=env, capture_output=True, text=True, timeout=120
    )
    assert "has type 'sqlite', for which no hook can be loaded" in run.stdout, run.stderr
    assert "pip install 'airflow-provider-aidol[sqlite]'" in run.stdout
    assert "[postgres]" not in run.stdout


def test_a_table_without_the_registry_columns_is_refused(registry_conn_id, table):
    execute(registry_conn_id, f"CREATE TABLE {table} (namespace VARCHAR(250), user_id VARCHAR(255))")
    with pytest.raises(AidolRegistryConfigError) as info:
        SqlRegistry(NAMESPACE, registry_conn_id, table).lookup([("ana", "agent-1")])
    message = str(info.value)
    assert f"Registry table {table} of connection 'aidol_registry' has another shape" in message
    assert "lacks the column(s) agent_id, conversation_id, trace_id" in message
    assert "docs/registry.md" in message
    assert "registry_table" in message


def test_a_table_without_the_primary_key_is_refused(registry_conn_id, table):
    columns = ", ".join(f"{name} VARCHAR(250)" for name in COLUMNS)
    execute(registry_conn_id, f"CREATE TABLE {table} ({columns})")
    with pytest.raises(AidolRegistryConfigError, match=r"no primary key or unique constraint on exactly"):
        SqlRegistry(NAMESPACE, registry_conn_id, table).check()


@pytest.mark.parametrize(
    ("database", "dialect"), [("sqlite", "sqlite"), ("postgres", "postgresql"), ("mysql", "mysql")]
)
def test_a_table_created_from_the_documented_ddl_is_accepted(request, database, dialect, table):
    registry_conn_id = request.getfixturevalue(f"{database}_registry")
    execute(registry_conn_id, create_table_sql(dialect, table).rstrip(";"))
    with SqlRegistry(NAMESPACE, registry_conn_id, table) as registry:
        assert registry.claim(registrations(1))


def test_a_bad_table_name_is_a_value_error_naming_the_argument(registry_conn_id):
    with pytest.raises(ValueError, match=r"registry_table must be a lower-case SQL name"):
        SqlRegistry(NAMESPACE, registry_conn_id, "conversations; DROP TABLE x")


def test_ids_longer_than_the_columns_are_refused_before_the_database_is_asked(registry_conn_id, table):
    registry = SqlRegistry(NAMESPACE, registry_conn_id, table)
    with pytest.raises(
        ValueError, match=r"pairs\[1\].user_id is 256 characters long; ids may have at most 255"
    ):
        registry.lookup([("ana", "agent-1"), ("u" * 256, "agent-1")])
    with pytest.raises(ValueError, match=r"registrations\[0\].conversation_id is 300 characters long"):
        registry.claim([Registration("ana", "agent-1", "c" * 300)])
    assert registry.statements == 0


def test_a_schema_qualified_table_on_postgresql(postgres_registry, table):
    execute(postgres_registry, "CREATE SCHEMA IF NOT EXISTS analytics")
    with SqlRegistry(NAMESPACE, postgres_registry, f"analytics.{table}") as registry:
        registry.claim(registrations(2))
    assert records(postgres_registry, f"SELECT COUNT(*) FROM analytics.{table}") == [(2,)]


def test_a_postgresql_connection_asking_for_dict_rows_works(postgres_server, monkeypatch, table):
    monkeypatch.setenv("AIRFLOW_CONN_AIDOL_REGISTRY", f"{postgres_server.airflow_uri}?cursor=dictcursor")
    rows = registrations(3)
    with SqlRegistry(NAMESPACE, REGISTRY_CONN_ID, table) as registry:
        registry.claim(rows)
        found = registry.lookup(row.pair for row in rows)
    assert [found[row.pair].conversation_id for row in rows] == ["c-0", "c-1", "c-2"]


MYSQL_CLIENTS = ["mysqlclient", "mysql-connector-python"]
"""The drivers the MySQL provider speaks through (the connection's extra ``client``)."""


@pytest.mark.parametrize("client", MYSQL_CLIENTS)
def test_a_mysql_connection_through_either_driver_claims_and_finds(
    mariadb_server, monkeypatch, table, client
):
    monkeypatch.setenv("AIRFLOW_CONN_AIDOL_REGISTRY", f"{mariadb_server.airflow_uri}?client={client}")
    rows = registrations(3)
    with SqlRegistry(NAMESPACE, REGISTRY_CONN_ID, table) as registry:
        registry.claim(rows)
        found = registry.lookup(row.pair for row in rows)
    assert [found[row.pair].conversation_id for row in rows] == ["c-0", "c-1", "c-2"]
    assert found[rows[0].pair].created_at == rows[0].created_at


@pytest.mark.parametrize("client", MYSQL_CLIENTS)
@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ("CHECK (map_index >= 0)", "CONSTRAINT"),  # a task that is not mapped has map_index -1
        ("team VARCHAR(20) NOT NULL", "team"),
    ],
)
def test_a_mysql_table_the_rows_break_is_a_configuration_error(
    mariadb_server, monkeypatch, table, client, extra, words
):
    # MariaDB's number for a CHECK constraint (4025) is not MySQL's (3819); mysql-connector-python
    # also gives a SQLSTATE, which for a missing default says only "HY000" (general error).
    monkeypatch.setenv("AIRFLOW_CONN_AIDOL_REGISTRY", f"{mariadb_server.airflow_uri}?client={client}")
    ddl = create_table_sql("mysql", table).rstrip(";")
    execute(REGISTRY_CONN_ID, ddl.replace("    PRIMARY KEY", f"    {extra},\n    PRIMARY KEY"))
    with pytest.raises(AidolRegistryConfigError, match=rf"refused a probe row.*{words}"):
        SqlRegistry(NAMESPACE, REGISTRY_CONN_ID, table).check()


def test_an_unreachable_database_is_a_registry_error(monkeypatch, table):
    monkeypatch.setenv("AIRFLOW_CONN_AIDOL_REGISTRY", "postgres://nobody:s3cret-pw@127.0.0.1:1/none")
    with pytest.raises(AidolRegistryError, match=r"connection 'aidol_registry'.*Connection refused") as info:
        SqlRegistry(NAMESPACE, REGISTRY_CONN_ID, table).check()
    assert not isinstance(info.value, AidolRegistryConfigError)  # retried like any failure
    assert "s3cret-pw" not in str(info.value)
    assert "s3cret-pw" not in repr(info.value)


def test_open_registry_picks_the_store(sqlite_registry):
    assert open_registry(NAMESPACE).description == "Airflow Variables aidol_conversation:aidol_default:…"
    sql = open_registry(NAMESPACE, registry_conn_id=sqlite_registry)
    assert sql.description == f"table {DEFAULT_TABLE} of connection 'aidol_registry'"
    with pytest.raises(ValueError, match=r"registry_table='mine' needs registry_conn_id"):
        open_registry(NAMESPACE, registry_table="mine")
