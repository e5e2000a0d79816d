"""What the registry's SQL looks like: the DDL the docs show is the DDL the registry runs."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest

from airflow_provider_aidol.registry.dialects import DIALECTS, MYSQL, POSTGRESQL, SQLITE, create_table_sql
from tests.conftest import REPO


def test_the_docs_show_the_ddl_the_registry_runs():
    text = (REPO / "docs" / "registry.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.DOTALL)
    assert [block.strip() for block in blocks] == [
        create_table_sql("postgresql"),
        create_table_sql("mysql"),
        create_table_sql("sqlite"),
    ]


def test_mariadb_is_spoken_as_mysql():
    assert DIALECTS["mariadb"] is MYSQL


@pytest.mark.parametrize("dialect", [POSTGRESQL, SQLITE, MYSQL], ids=lambda dialect: dialect.name)
def test_created_at_comes_back_as_the_same_utc_moment(dialect):
    moment = datetime(2026, 11, 30, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=2)))
    assert dialect.from_db(dialect.to_db(moment)) == moment.astimezone(UTC)


def test_created_at_written_by_the_database_default_is_read_as_utc():
    assert SQLITE.from_db("2026-11-30 08:00:00") == datetime(2026, 11, 30, 8, tzinfo=UTC)


def test_mysql_skips_existing_keys_without_insert_ignore():
    sql, parameters = MYSQL.insert_if_absent("t", [tuple(range(10)), tuple(range(10, 20))], "%s")
    assert "IGNORE" not in sql
    assert sql.endswith("ON DUPLICATE KEY UPDATE namespace = namespace")
    assert parameters == list(range(20))
