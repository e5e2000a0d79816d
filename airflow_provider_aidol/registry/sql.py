"""The registry in a SQL table of any Airflow SQL connection (common.sql ``DbApiHook``).

One row per namespace (AI-DOL connection id), user and agent. Lookups and claims go in chunks
over one database connection; a claim is an insert-if-absent in the database's own dialect
followed by reading the rows back, so when two tasks claim the same pair at once the database
keeps one row and both tasks get it.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextlib import closing
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.exceptions import AidolRegistryConfigError, AidolRegistryError
from airflow_provider_aidol.registry import (
    DEFAULT_TABLE,
    Pair,
    Registration,
    check_pairs,
    check_registrations,
)
from airflow_provider_aidol.registry.dialects import (
    DIALECTS,
    PROBE_MARKER,
    SQLITE_BUSY_TIMEOUT,
    is_refusal,
    mysql_error_code,
    sqlite_busy_timeout,
    sqlite_chunks,
)
from airflow_provider_aidol.registry.schema import DOCS, ensure_table

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_provider_aidol.registry.dialects import SqlDialect

log = logging.getLogger(__name__)

_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?")
_SQLITE_VARIABLE_NUMBER = 9  # sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER
_SQLITE_OLD_DEFAULT_LIMIT = 999
_ATTEMPTS = 3
_MYSQL_TRANSIENT = frozenset({1205, 1213})  # lock wait timeout, deadlock
_MAX_BUSY_TIMEOUT = 3600.0


def check_table_name(table: str) -> str:
    """Return ``table`` when it is a lower-case SQL name (``schema.`` allowed), else raise ``ValueError``."""
    if not isinstance(table, str) or not _TABLE_NAME.fullmatch(table):
        raise ValueError(
            f"registry_table must be a lower-case SQL name, optionally schema-qualified "
            f"([a-z_][a-z0-9_]*, e.g. 'aidol_conversations' or 'analytics.aidol_conversations'), "
            f"got {table!r}."
        )
    return table


class SqlRegistry:
    """The registry in a table of an Airflow SQL connection (PostgreSQL, MySQL, SQLite).

    The first call checks the connection and the table (creating it when missing), so a
    misconfiguration fails before any conversation is created. It holds one database connection
    until ``close()``; use it from one thread.

    :param namespace: the AI-DOL connection the conversations belong to.
    :param conn_id: the Airflow connection of the database (any common.sql ``DbApiHook``).
    :param table: the table, ``schema.table`` allowed (default ``aidol_conversations``).
    """

    def __init__(self, namespace: str, conn_id: str, table: str = DEFAULT_TABLE) -> None:
        self.namespace = namespace
        self.conn_id = conn_id
        self.table = check_table_name(table)
        self._hook: DbApiHook | None = None
        self._dialect: SqlDialect | None = None
        self._connection: Any = None
        self.statements = 0
        """Statements sent so far (lookups and claims go in chunks, never one per pair)."""
        self.seconds = 0.0
        """Seconds spent waiting for the database in lookups and claims so far."""

    @property
    def description(self) -> str:
        """Where the entries live."""
        return f"table {self.table} of connection {self.conn_id!r}"

    def check(self) -> None:
        """Connect, create the table when it is missing, check its shape, and prove it writable.

        The proof is a probe claim: a row with every id at its column's full width, written by
        the very statement claims use and read back by the one lookups use, inside a
        transaction that is then rolled back (no row is left).

        Raises :class:`~airflow_provider_aidol.exceptions.AidolRegistryConfigError` when the
        connection does not exist, is not a SQL connection, speaks a database the registry does
        not know, the table name does not suit the database, the table has another shape, or
        the database refuses the probe (a read-only user or file, a constraint or column the
        rows break); ``AidolRegistryError`` when the database cannot be reached or is busy.
        """
        if self._connection is not None:
            return
        hook = self._hook or self._resolve_hook()
        dialect = self._dialect_of(hook)
        ensure_table(hook, dialect, self.table, self.conn_id)
        connection = open_connection(hook, dialect, self.conn_id, self.description, autocommit=False)
        try:
            if dialect.name == "sqlite":
                dialect = sqlite_chunks(dialect, _sqlite_variable_limit(connection))
            self._probe(connection, dialect, str(hook.placeholder))
            if hook.supports_autocommit:
                # Every statement is a transaction of its own: no BEGIN and COMMIT round trips.
                hook.set_autocommit(connection, True)
        except BaseException:
            connection.close()
            raise
        self._hook, self._dialect, self._connection = hook, dialect, connection

    def _probe(self, connection: Any, dialect: SqlDialect, placeholder: str) -> None:
        """Claim a probe row as claims do and read it back, then roll it back; raise if refused."""
        row = dialect.probe_row(self.namespace, f"{PROBE_MARKER}-{uuid.uuid4().hex}")
        pair = (str(row[1]), str(row[2]))
        statements = [
            dialect.insert_if_absent(self.table, [row], placeholder),
            dialect.lookup(self.table, [pair], self.namespace, placeholder),
        ]
        try:
            with closing(connection.cursor()) as cursor:
                for sql, parameters in statements:
                    cursor.execute(sql, parameters)
                    read = _as_tuples(cursor) if cursor.description else []
            connection.rollback()  # the probe row is never kept
        except Exception as error:
            _rollback(connection)
            if not is_refusal(error):
                raise AidolRegistryError(
                    f"The probe claim in {self.description} failed: {type(error).__name__}: {error}",
                    registry=self.description,
                ) from error
            raise self._config_error(
                f"cannot be written the way claims write: the database refused a probe row "
                f"({type(error).__name__}: {str(error).strip()}). Fix: give the user INSERT and "
                f"SELECT on {self.table} in a writable database, and make the table match the "
                f"DDL in {DOCS} (no other NOT NULL column without a default, no CHECK or partial "
                "index the rows break, columns as wide as the DDL's); or set registry_table to a "
                "new table name, which the registry creates itself"
            ) from error
        if not any(found[1:3] == pair for found in read):
            raise self._config_error(
                "lost a probe row: written the way claims write, it could not be read back (a "
                f"trigger or rule on {self.table} that drops or changes rows?). Fix: remove it, "
                "or set registry_table to a new table name"
            )

    def _resolve_hook(self) -> DbApiHook:
        return resolve_sql_hook(self.conn_id, self.description)

    def _dialect_of(self, hook: DbApiHook) -> SqlDialect:
        return dialect_of(hook, self.conn_id, self.description)

    def lookup(self, pairs: Iterable[Pair]) -> dict[Pair, Registration]:
        """Return the row of every given pair that has one, in chunks of one ``SELECT`` each."""
        wanted = list(dict.fromkeys(check_pairs(pairs)))
        self.check()
        assert self._dialect is not None
        found: dict[Pair, Registration] = {}
        size = self._dialect.pairs_per_lookup
        for start in range(0, len(wanted), size):
            found.update(self._select(wanted[start : start + size]))
        return found

    def claim(self, registrations: Iterable[Registration]) -> dict[Pair, Registration]:
        """Insert the rows whose pair has none (in chunks), then read every pair's row back.

        The row returned for a pair is the one the database kept: this call's, or that of the
        task that claimed the pair first (then this call's conversation is orphaned).
        """
        unique: dict[Pair, Registration] = {}
        for registration in check_registrations(registrations):
            unique.setdefault(registration.pair, registration)
        self.check()
        assert self._dialect is not None
        # Every writer inserts in the same order, so two claims of overlapping pairs wait for
        # each other at most once and never deadlock.
        dialect, rows = self._dialect, sorted(unique.values(), key=lambda row: row.pair)
        kept: dict[Pair, Registration] = {}
        for start in range(0, len(rows), dialect.rows_per_insert):
            chunk = rows[start : start + dialect.rows_per_insert]
            values = [self._values(row) for row in chunk]
            inserted = self._execute(
                *dialect.insert_if_absent(self.table, values, self._placeholder), "claim"
            )
            kept.update(self._registrations(inserted))
            others = [row.pair for row in chunk if row.pair not in kept]
            if others:
                kept.update(self._select(others))
        missing = [pair for pair in unique if pair not in kept]
        if missing:
            raise AidolRegistryError(
                f"{len(missing)} row(s) of {self.description} were gone right after the claim "
                f"(deleted at the same moment?), e.g. {missing[0]}; run the task again.",
                registry=self.description,
            )
        return kept

    @property
    def _placeholder(self) -> str:
        assert self._hook is not None
        return str(self._hook.placeholder)

    def _values(self, row: Registration) -> tuple[object, ...]:
        assert self._dialect is not None
        return (
            self.namespace,
            row.user_id,
            row.agent_id,
            row.conversation_id,
            row.trace_id,
            self._dialect.to_db(row.created_at),
            row.dag_id,
            row.run_id,
            row.task_id,
            row.map_index,
        )

    def _select(self, pairs: Sequence[Pair]) -> dict[Pair, Registration]:
        assert self._dialect is not None
        statement = self._dialect.lookup(self.table, pairs, self.namespace, self._placeholder)
        return self._registrations(self._execute(*statement, "lookup"))

    def _registrations(self, rows: Iterable[Sequence[Any]]) -> dict[Pair, Registration]:
        return {entry.pair: entry for entry in map(self._registration, rows)}

    def _registration(self, row: Sequence[Any]) -> Registration:
        assert self._dialect is not None
        _, user_id, agent_id, conversation_id, trace_id, created_at, *origin = row
        dag_id, run_id, task_id, map_index = origin
        return Registration(
            user_id,
            agent_id,
            conversation_id,
            trace_id,
            self._dialect.from_db(created_at),
            dag_id,
            run_id,
            task_id,
            None if map_index is None else int(map_index),
        )

    def _execute(self, sql: str, parameters: list[object], what: str) -> list[Sequence[Any]]:
        """Run one statement in a transaction of its own; return its rows as tuples.

        A deadlock or serialization failure is tried again (both statements are idempotent).
        """
        started = time.perf_counter()
        for attempt in range(1, _ATTEMPTS + 1):
            self.statements += 1
            try:
                with closing(self._connection.cursor()) as cursor:
                    cursor.execute(sql, parameters)
                    rows = _as_tuples(cursor) if cursor.description else []
                self._connection.commit()
                break
            except Exception as error:
                _rollback(self._connection)
                if attempt < _ATTEMPTS and _transient(error):
                    log.info("Registry %s in %s: %s; trying again", what, self.description, error)
                    continue
                raise AidolRegistryError(
                    f"Registry {what} in {self.description} failed: {type(error).__name__}: {error}",
                    registry=self.description,
                ) from error
            finally:
                self.seconds += time.perf_counter() - started
                started = time.perf_counter()
        return rows

    def close(self) -> None:
        """Close the database connection (a later call opens a new one)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            _rollback(connection)
            connection.close()

    def __enter__(self) -> SqlRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _config_error(self, problem: str) -> AidolRegistryConfigError:
        return AidolRegistryConfigError(
            f"Registry connection {self.conn_id!r} {problem}.", registry=self.description
        )


def resolve_sql_hook(conn_id: str, description: str) -> DbApiHook:
    """Return the common.sql hook of Airflow connection ``conn_id``; raise a config error naming the fix."""
    from airflow_provider_aidol._compat import AirflowNotFoundException, BaseHook

    def config_error(problem: str) -> AidolRegistryConfigError:
        return AidolRegistryConfigError(f"Registry connection {conn_id!r} {problem}.", registry=description)

    try:
        from airflow.providers.common.sql.hooks.sql import DbApiHook
    except ImportError as error:
        raise config_error(
            "needs the common.sql provider: pip install apache-airflow-providers-common-sql"
        ) from error
    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException as error:
        raise config_error(
            "does not exist: create it (Admin > Connections, an AIRFLOW_CONN_"
            f"{conn_id.upper()} environment variable or a secrets backend) or fix "
            "registry_conn_id"
        ) from error
    try:
        hook = connection.get_hook()  # type: ignore[no-untyped-call]
    except Exception as error:
        raise config_error(
            f"has type {connection.conn_type!r}, for which no hook can be loaded "
            f"({type(error).__name__}: {error}): install its provider: "
            + _PROVIDERS.get(connection.conn_type or "", "the Airflow provider package that defines the type")
        ) from error
    if not isinstance(hook, DbApiHook):
        raise config_error(
            f"has type {connection.conn_type!r}, whose hook {type(hook).__name__} is not a SQL "
            "hook (common.sql DbApiHook): point registry_conn_id at a PostgreSQL, MySQL or "
            "SQLite connection"
        )
    return hook


# What to pip install for a registry connection type's hook: this package's extra where it has one.
_PROVIDERS = {
    "postgres": "pip install 'airflow-provider-aidol[postgres]'",
    "sqlite": "pip install 'airflow-provider-aidol[sqlite]'",
    "mysql": "pip install apache-airflow-providers-mysql",
    "mssql": "pip install apache-airflow-providers-microsoft-mssql",
}


def dialect_of(hook: DbApiHook, conn_id: str, description: str) -> SqlDialect:
    """Return the dialect of ``hook``'s database; raise a config error for one not spoken."""
    name = str(hook.dialect_name)
    if name not in DIALECTS:
        raise AidolRegistryConfigError(
            f"Registry connection {conn_id!r} is a {name!r} database; the registry speaks "
            f"{', '.join(sorted(DIALECTS))}: point registry_conn_id at one of those.",
            registry=description,
        )
    extra = getattr(hook, "connection_extra", None) or {}
    if name == "sqlite" and "busy_timeout" in extra:
        seconds = _busy_timeout(extra["busy_timeout"], conn_id, description)
        return sqlite_busy_timeout(DIALECTS[name], seconds)
    return DIALECTS[name]


def _busy_timeout(seconds: object, conn_id: str, description: str) -> float:
    """Return the SQLite connection's extra ``busy_timeout`` in seconds; raise a config error if not sane."""
    try:
        value = float(seconds)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        value = 0.0
    if isinstance(seconds, bool) or not 0 < value <= _MAX_BUSY_TIMEOUT:
        raise AidolRegistryConfigError(
            f"Registry connection {conn_id!r} has extra busy_timeout={seconds!r}: it must be the "
            f"seconds SQLite waits for another writer's lock, a number above 0 and at most "
            f"{_MAX_BUSY_TIMEOUT:g} (default {SQLITE_BUSY_TIMEOUT:g}).",
            registry=description,
        )
    return value


def open_connection(
    hook: DbApiHook, dialect: SqlDialect, conn_id: str, description: str, *, autocommit: bool = True
) -> Any:
    """Open a database connection with the dialect's session settings, in autocommit when it can.

    With ``autocommit=False`` the caller runs transactions of its own first (the registry's probe
    claim, rolled back) and turns autocommit on itself.
    """
    connection = None
    try:
        connection = hook.get_conn()
        if hook.supports_autocommit:
            hook.set_autocommit(connection, False)
        with closing(connection.cursor()) as cursor:
            for statement in dialect.session_sql:
                cursor.execute(statement)
        connection.commit()
        if autocommit and hook.supports_autocommit:
            # Every statement is a transaction of its own: no BEGIN and COMMIT round trips.
            hook.set_autocommit(connection, True)
    except Exception as error:
        if connection is not None:
            connection.close()
        raise AidolRegistryError(
            f"Cannot connect to the registry database of connection {conn_id!r}: "
            f"{type(error).__name__}: {error}",
            registry=description,
        ) from error
    return connection


def _as_tuples(cursor: Any) -> list[Sequence[Any]]:
    """Return the fetched rows as tuples, also from a connection whose extras ask for dict rows."""
    rows = cursor.fetchall()
    names = [column[0] for column in cursor.description]
    return [tuple(row[name] for name in names) if isinstance(row, dict) else tuple(row) for row in rows]


def _rollback(connection: Any) -> None:
    try:
        connection.rollback()
    except Exception:  # the connection may be broken; the original error matters
        log.debug("rollback failed", exc_info=True)


def _transient(error: Exception) -> bool:
    """Whether ``error`` is a deadlock or serialization failure (SQLSTATE class 40, MySQL 1205/1213)."""
    mysql_code = mysql_error_code(error)
    if mysql_code is not None:
        return mysql_code in _MYSQL_TRANSIENT
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)  # psycopg 3, psycopg2
    return isinstance(state, str) and state.startswith("40")


def _sqlite_variable_limit(connection: Any) -> int:
    getlimit = getattr(connection, "getlimit", None)  # Python 3.11+
    return int(getlimit(_SQLITE_VARIABLE_NUMBER)) if getlimit else _SQLITE_OLD_DEFAULT_LIMIT
