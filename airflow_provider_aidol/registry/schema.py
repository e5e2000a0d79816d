"""The registry table's existence and shape, checked through SQLAlchemy's inspector before any use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.exceptions import AidolRegistryConfigError, AidolRegistryError
from airflow_provider_aidol.registry.dialects import COLUMNS, KEY, is_refusal

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_provider_aidol.registry.dialects import SqlDialect

DOCS = "docs/registry.md"
"""Where the DDL for a table created by hand is documented."""


@dataclass(frozen=True)
class TableShape:
    """What a table of ours must hold: its columns, its key, its DDL and where that is documented.

    :param what: how messages name the table (``Registry``, ``Usage ledger``).
    :param columns: the columns it must have (others are allowed).
    :param key: the primary key or unique constraint it must have, exactly.
    :param create: the ``CREATE TABLE IF NOT EXISTS`` statement for a dialect and a table name.
    :param docs: the docs page with the DDL.
    """

    what: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    create: Callable[[SqlDialect, str], str]
    docs: str


REGISTRY_SHAPE = TableShape(
    "Registry", COLUMNS, KEY, lambda dialect, table: dialect.create_table(table), DOCS
)


def ensure_table(
    hook: DbApiHook, dialect: SqlDialect, table: str, conn_id: str, shape: TableShape = REGISTRY_SHAPE
) -> None:
    """Create ``table`` when it is missing; raise when it exists with another shape.

    The shape is right when the table has every column of ``shape`` and a primary key or unique
    constraint on exactly its key (the registry's: ``(namespace, user_id, agent_id)``); other
    columns are allowed.
    """
    from sqlalchemy import inspect

    schema, _, name = table.rpartition(".")
    where = f"table {table} of connection {conn_id!r}"
    try:
        engine = hook.get_sqlalchemy_engine()
    except Exception as error:
        raise AidolRegistryConfigError(
            f"Registry connection {conn_id!r} cannot be opened with SQLAlchemy to check {where}: "
            f"{type(error).__name__}: {error}. Fix the connection (host, schema, extras).",
            registry=where,
        ) from error
    try:
        _check_name(engine.dialect, table, where)
        with engine.connect() as connection:
            if not inspect(connection).has_table(name, schema=schema or None):
                _create(connection, shape.create(dialect, table), table)
            problems = _shape_problems(inspect(connection), name, schema or None, shape)
    except AidolRegistryError:
        raise
    except Exception as error:
        if is_refusal(error):
            raise AidolRegistryConfigError(
                f"The database refused to check or create {where}: {type(error).__name__}: "
                f"{error}. Fix: give the user of connection {conn_id!r} the rights to read the "
                f"table (and create it), or create it as {DOCS} shows.",
                registry=where,
            ) from error
        raise AidolRegistryError(
            f"Cannot check or create {where}: {type(error).__name__}: {error}", registry=where
        ) from error
    finally:
        engine.dispose()
    if problems:
        raise AidolRegistryConfigError(
            f"{shape.what} {where} has another shape: {'; '.join(problems)}. Fix: create it as "
            f"{shape.docs} shows (the DDL for your database), or set registry_table to a new table "
            "name; the registry creates a missing table itself.",
            registry=where,
        )


def _check_name(sql_dialect: Any, table: str, where: str) -> None:
    """Raise when a part of ``table`` is longer than the database keeps or a word it reserves.

    PostgreSQL would cut a longer name to 63 bytes and then never find the table by its name; a
    reserved word (``order``, ``user``) cannot name a table without quotes.
    """
    longest = int(sql_dialect.max_identifier_length)
    reserved = sql_dialect.identifier_preparer.reserved_words
    for part in table.split("."):
        if len(part.encode()) > longest:
            problem = (
                f"{part!r} is {len(part.encode())} bytes long, and {sql_dialect.name} keeps at most {longest}"
            )
        elif part in reserved:
            problem = f"{part!r} is a word {sql_dialect.name} reserves"
        else:
            continue
        raise AidolRegistryConfigError(
            f"registry_table {table!r} cannot name a table here: {problem}. Fix: set "
            f"registry_table to another name (e.g. aidol_conversations).",
            registry=where,
        )


def _create(connection: Any, ddl: str, table: str) -> None:
    """Run the DDL; another task creating the same table at the same moment is no error."""
    from sqlalchemy import inspect, text

    schema, _, name = table.rpartition(".")
    # SQLAlchemy 2 (Airflow 3.1+) runs the DDL in the transaction the inspection began, to commit or
    # roll back; SQLAlchemy 1.4's Connection (Airflow 3.0) has neither: it gets a transaction of its
    # own (not 1.4's implicit autocommit, which 2.0 removed and 1.4 warns about).
    ends_transactions = hasattr(connection, "commit")
    try:
        if ends_transactions:
            connection.execute(text(ddl))
            connection.commit()
        else:
            with connection.begin():
                connection.execute(text(ddl))
    except Exception:
        # PostgreSQL's IF NOT EXISTS can still collide with a concurrent CREATE TABLE.
        if ends_transactions:
            connection.rollback()
        if not inspect(connection).has_table(name, schema=schema or None):
            raise


def _shape_problems(inspector: Any, name: str, schema: str | None, shape: TableShape) -> list[str]:
    columns = {column["name"].lower() for column in inspector.get_columns(name, schema=schema)}
    problems = []
    missing = [column for column in shape.columns if column not in columns]
    if missing:
        problems.append(f"it lacks the column(s) {', '.join(missing)}")
    keys = [inspector.get_pk_constraint(name, schema=schema).get("constrained_columns") or []]
    keys += [unique["column_names"] for unique in inspector.get_unique_constraints(name, schema=schema)]
    keys += [index["column_names"] for index in inspector.get_indexes(name, schema=schema) if index["unique"]]
    if not any(sorted(str(column).lower() for column in key) == sorted(shape.key) for key in keys):
        problems.append(
            f"no primary key or unique constraint on exactly ({', '.join(shape.key)}), so the database "
            "cannot keep one row per key"
        )
    return problems
