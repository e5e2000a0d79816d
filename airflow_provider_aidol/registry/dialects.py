"""The SQL the registry sends, per database: the table, bulk lookups and insert-if-absent.

The table is a public, stable schema (docs/registry.md); :func:`create_table_sql` prints the
DDL for a DBA. Every statement uses the driver's placeholder (``%s`` or ``?``) and names the
table as given; table names are checked (lower-case SQL names) before they get here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow_provider_aidol.registry import Pair

COLUMNS = (
    "namespace",
    "user_id",
    "agent_id",
    "conversation_id",
    "trace_id",
    "created_at",
    "dag_id",
    "run_id",
    "task_id",
    "map_index",
)
"""The registry table's columns, in the order every statement lists them."""
KEY = ("namespace", "user_id", "agent_id")
"""The primary key: one conversation per namespace (AI-DOL connection id), user and agent."""
_TYPES = {
    # Airflow's own limit on connection, DAG, run and task ids is 250 characters.
    "namespace": "VARCHAR(250) NOT NULL",
    "user_id": "VARCHAR(255) NOT NULL",
    "agent_id": "VARCHAR(255) NOT NULL",
    "conversation_id": "VARCHAR(255) NOT NULL",
    "trace_id": "VARCHAR(255)",
    "created_at": "{timestamp} NOT NULL DEFAULT {now}",
    "dag_id": "VARCHAR(250)",
    "run_id": "VARCHAR(250)",
    "task_id": "VARCHAR(250)",
    "map_index": "INTEGER",
}

PROBE_MARKER = "aidol-registry-probe"
"""How the ids of the probe row begin (the row a check claims, then rolls back)."""
_WIDTH = re.compile(r"VARCHAR\((\d+)\)")


@dataclass(frozen=True)
class SqlDialect:
    """How one database spells the registry's statements.

    :param name: SQLAlchemy's dialect name (``postgresql``, ``sqlite``, ``mysql``).
    :param timestamp: the column type of ``created_at``.
    :param now: its default (for rows a person inserts by hand).
    :param table_options: what follows the column list in ``CREATE TABLE``.
    :param on_conflict: the clause that makes an ``INSERT`` skip rows whose key exists.
    :param rows_per_insert: rows per ``INSERT`` (ten parameters each), at most.
    :param pairs_per_lookup: pairs per ``SELECT`` (two parameters each), at most.
    :param session_sql: statements run once on every new database connection.
    """

    name: str
    timestamp: str
    now: str
    table_options: str = ""
    on_conflict: str = f"ON CONFLICT ({', '.join(KEY)}) DO NOTHING"
    rows_per_insert: int = 1000
    pairs_per_lookup: int = 1000
    session_sql: tuple[str, ...] = ()
    timestamp_as_text: bool = False
    """``created_at`` travels as ISO 8601 text (SQLite has no timestamp type)."""
    naive_timestamps: bool = False
    """``created_at`` is stored without a time zone (as UTC)."""
    row_value_in: bool = False
    """Look pairs up with ``(user_id, agent_id) IN (...)`` instead of joining a ``VALUES`` list."""
    array_types: tuple[str, ...] = ()
    """Send each column as one array parameter (``unnest``), with these element types."""
    insert_returns: bool = False
    """The insert returns the rows it inserted, so only the other pairs are read back."""

    @property
    def returning(self) -> str:
        """The clause that makes the insert return the rows it inserted, or ``""``."""
        return f" RETURNING {', '.join(COLUMNS)}" if self.insert_returns else ""

    @property
    def arrays(self) -> bool:
        """Whether statements take one array per column instead of one parameter per value."""
        return bool(self.array_types)

    def create_table(self, table: str) -> str:
        """Return the ``CREATE TABLE IF NOT EXISTS`` statement of the registry table."""
        columns = [
            f"    {name:<15} {kind.format(timestamp=self.timestamp, now=self.now)}"
            for name, kind in _TYPES.items()
        ]
        body = ",\n".join([*columns, f"    PRIMARY KEY ({', '.join(KEY)})"])
        return f"CREATE TABLE IF NOT EXISTS {table} (\n{body}\n){self.table_options}"

    def insert_if_absent(
        self, table: str, rows: Sequence[Sequence[object]], placeholder: str
    ) -> tuple[str, list[object]]:
        """Return an ``INSERT`` of ``rows`` (values in ``COLUMNS`` order) that skips existing keys."""
        insert = f"INSERT INTO {table} ({', '.join(COLUMNS)})"
        if self.arrays:
            # One array per column: two placeholders whatever the chunk size, and no parsing
            # of a statement with thousands of them in the driver.
            namespace, *columns = zip(*rows, strict=True)
            arrays = ", ".join(f"{placeholder}::{kind}[]" for kind in self.array_types)
            sql = f"{insert} SELECT {placeholder}, u.* FROM unnest({arrays}) AS u {self.on_conflict}"
            return sql + self.returning, [namespace[0], *map(list, columns)]
        values = "(" + ", ".join([placeholder] * len(COLUMNS)) + ")"
        sql = f"{insert} VALUES {', '.join([values] * len(rows))} {self.on_conflict}"
        return sql + self.returning, [value for row in rows for value in row]

    def lookup(
        self, table: str, pairs: Sequence[Pair], namespace: str, placeholder: str
    ) -> tuple[str, list[object]]:
        """Return a ``SELECT`` of the rows (``COLUMNS``) of ``pairs`` in ``namespace``."""
        selected = ", ".join(f"t.{name}" for name in COLUMNS)
        on = f"t.user_id = p.user_id AND t.agent_id = p.agent_id AND t.namespace = {placeholder}"
        if self.arrays:
            users, agents = (list(column) for column in zip(*pairs, strict=True))
            kind = self.array_types[0]
            sql = (
                f"SELECT {selected} FROM unnest({placeholder}::{kind}[], {placeholder}::{kind}[]) "
                f"AS p (user_id, agent_id) JOIN {table} t ON {on}"
            )
            return sql, [users, agents, namespace]
        pair = f"({placeholder}, {placeholder})"
        flat = [value for pair_ in pairs for value in pair_]
        if self.row_value_in:
            sql = (
                f"SELECT {selected} FROM {table} t WHERE (t.user_id, t.agent_id) IN "
                f"({', '.join([pair] * len(pairs))}) AND t.namespace = {placeholder}"
            )
            return sql, [*flat, namespace]
        # A joined VALUES list uses the primary key once per pair; an OR of pairs is planned
        # far more slowly (PostgreSQL: 16x at 1,000 pairs; SQLite: quadratic).
        values = ", ".join([pair] * len(pairs))
        sql = (
            f"WITH p (user_id, agent_id) AS (VALUES {values}) SELECT {selected} FROM p JOIN {table} t ON {on}"
        )
        return sql, [*flat, namespace]

    def to_db(self, moment: datetime | None) -> object:
        """Return ``created_at`` as this database's driver takes it (now when ``None``)."""
        moment = (moment or datetime.now(UTC)).astimezone(UTC)
        if self.timestamp_as_text:
            return moment.isoformat(sep=" ")
        return moment.replace(tzinfo=None) if self.naive_timestamps else moment

    def probe_row(self, namespace: str, marker: str) -> tuple[object, ...]:
        """Return a probe row (values in ``COLUMNS`` order) whose ids fill their columns' full width.

        Claims may write ids that long, so a table whose columns are narrower than the DDL's
        refuses the probe. ``marker`` starts the user id and makes it unique: the probe never
        meets a real row.
        """
        values: list[object] = []
        for column in COLUMNS:
            width = _WIDTH.search(_TYPES[column])
            if column == "namespace":
                values.append(namespace)
            elif column == "created_at":
                values.append(self.to_db(None))
            elif width is None:  # map_index: that of a task that is not mapped
                values.append(-1)
            else:
                start = marker if column == "user_id" else PROBE_MARKER
                values.append(start.ljust(int(width.group(1)), "-"))
        return tuple(values)

    @staticmethod
    def from_db(value: object) -> datetime | None:
        """Return a stored ``created_at`` as an aware UTC datetime."""
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if not isinstance(value, datetime):
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


POSTGRESQL = SqlDialect(
    "postgresql",
    timestamp="TIMESTAMP WITH TIME ZONE",
    now="CURRENT_TIMESTAMP",
    rows_per_insert=5000,
    pairs_per_lookup=5000,
    # The columns after namespace, as psycopg (2 or 3) sends Python lists: arrays.
    array_types=("varchar",) * 4 + ("timestamptz",) + ("varchar",) * 3 + ("integer",),
    # Reading back only the conflicting pairs also spares a join planned on statistics that are
    # stale while the table grows within one task.
    insert_returns=True,
    # psycopg 3 prepares a statement run five times, and PostgreSQL may then plan it once for
    # any parameters: a plan for an unknown array length that scans the table once per pair.
    session_sql=("SET plan_cache_mode = force_custom_plan",),
)
SQLITE_BUSY_TIMEOUT = 60.0
"""Seconds a SQLite registry waits for another writer's lock; the connection's extra
``busy_timeout`` (seconds) sets another."""
SQLITE = SqlDialect(
    "sqlite",
    timestamp="TIMESTAMP",
    now="CURRENT_TIMESTAMP",
    # Wait for another writer's transaction instead of failing with "database is locked".
    session_sql=(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT * 1000)}",),
    timestamp_as_text=True,
)
MYSQL = SqlDialect(
    "mysql",
    timestamp="DATETIME(6)",
    now="CURRENT_TIMESTAMP(6)",
    # Binary collation: ids compare exactly (the default one is case- and accent-insensitive).
    table_options=" CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
    # A no-op update skips existing keys; INSERT IGNORE would also hide other errors (truncation).
    on_conflict="ON DUPLICATE KEY UPDATE namespace = namespace",
    naive_timestamps=True,
    row_value_in=True,
)
DIALECTS = {"postgresql": POSTGRESQL, "sqlite": SQLITE, "mysql": MYSQL, "mariadb": MYSQL}


def create_table_sql(dialect: str, table: str = "aidol_conversations") -> str:
    """Return the DDL of the registry table for ``dialect`` (``postgresql``, ``mysql`` or ``sqlite``)."""
    return DIALECTS[dialect].create_table(table) + ";"


def sqlite_busy_timeout(dialect: SqlDialect, seconds: float) -> SqlDialect:
    """Return the SQLite ``dialect`` waiting ``seconds`` for another writer's lock."""
    from dataclasses import replace

    return replace(dialect, session_sql=(f"PRAGMA busy_timeout = {round(seconds * 1000)}",))


def sqlite_chunks(dialect: SqlDialect, variable_limit: int) -> SqlDialect:
    """Return ``dialect`` with chunks that fit SQLite's limit on parameters per statement."""
    from dataclasses import replace

    return replace(
        dialect,
        rows_per_insert=max(1, min(dialect.rows_per_insert, variable_limit // len(COLUMNS))),
        pairs_per_lookup=max(1, min(dialect.pairs_per_lookup, (variable_limit - 1) // 2)),
    )


# SQLSTATE classes of a statement the database refuses as such: feature not supported, data,
# integrity, authorization, syntax or access rule, WITH CHECK OPTION; and a read-only transaction.
_REFUSED_SQLSTATE_CLASSES = ("0A", "22", "23", "28", "42", "44")
_READ_ONLY_SQLSTATE = "25006"
# SQLite primary result codes that a later try may not meet: busy, locked, out of memory,
# interrupted, I/O error, disk full, lock protocol.
_SQLITE_TRANSIENT = frozenset({5, 6, 7, 9, 10, 13, 15})
# MySQL and MariaDB errors of a refused statement: access denied, read-only server or transaction,
# a NULL, missing default, too long, out of range or badly encoded value, a foreign key, a CHECK
# constraint (3819 on MySQL, 4025 on MariaDB).
_MYSQL_REFUSED = frozenset(
    {1044, 1045, 1142, 1143, 1290, 1792, 1048, 1364, 1406, 1264, 1265, 1292, 1366, 1216, 1452, 3819, 4025}
)
_MYSQL_DRIVERS = ("MySQLdb", "pymysql", "mysql.connector")
_DBAPI_REFUSED = frozenset({"IntegrityError", "DataError", "ProgrammingError", "NotSupportedError"})


def mysql_error_code(error: BaseException) -> int | None:
    """Return the server's error number of a MySQL driver's error, else ``None``.

    It comes before the SQLSTATE: mysql-connector-python gives one too, but the server says
    ``HY000`` (general error) for most refusals (a CHECK constraint, a missing default).
    """
    code = error.args[0] if error.args else None
    if isinstance(code, int) and type(error).__module__.startswith(_MYSQL_DRIVERS):
        return code
    return None


def is_refusal(error: BaseException) -> bool:
    """Return whether the database refused a statement as such, so trying again cannot help.

    A missing privilege, a read-only database or file, a constraint, a value the column cannot
    hold, a statement the table does not fit: ``True``. A lost connection, a lock, a timeout,
    a full disk: ``False``. SQLAlchemy's wrapper is looked through to the driver's error.
    """
    error = getattr(error, "orig", None) or error
    mysql_code = mysql_error_code(error)
    if mysql_code is not None:
        return mysql_code in _MYSQL_REFUSED
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)  # psycopg 3, psycopg2
    if isinstance(state, str):
        return state.startswith(_REFUSED_SQLSTATE_CLASSES) or state == _READ_ONLY_SQLSTATE
    sqlite_code = getattr(error, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return sqlite_code & 0xFF not in _SQLITE_TRANSIENT
    return any(kind.__name__ in _DBAPI_REFUSED for kind in type(error).__mro__)
