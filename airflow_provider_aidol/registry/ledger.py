"""The usage ledger: one API key's requests per day, shared by every task, in a SQL table.

One row per key, day and kind (``requests``, ``images``) in ``aidol_usage_ledger`` of the
database of the registry connection (docs/quotas.md shows the DDL). ``used`` counts what tasks
reserved (and did not give back); ``outstanding`` what running tasks hold and have not yet
spent, so after every task has ended it is what killed tasks stranded (at most one block each).
A reservation is one atomic ``UPDATE ... WHERE used + n <= cap``: two tasks reserving at once
can never pass the cap together, on any database.

The key is never stored: ``key_id`` is a SHA-256 digest of the Base URL and the API key.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_aidol.exceptions import AidolRegistryError
from airflow_provider_aidol.registry.schema import TableShape, ensure_table
from airflow_provider_aidol.registry.sql import dialect_of, open_connection, resolve_sql_hook

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_provider_aidol.registry.dialects import SqlDialect

log = logging.getLogger(__name__)
_T = TypeVar("_T")

LEDGER_TABLE = "aidol_usage_ledger"
"""The ledger's table, beside the registry's in the same database."""
LEDGER_COLUMNS = ("key_id", "day", "kind", "used", "outstanding", "last_cap", "updated_at")
LEDGER_KEY = ("key_id", "day", "kind")
_TYPES = {
    "key_id": "VARCHAR(64) NOT NULL",
    "day": "VARCHAR(10) NOT NULL",
    "kind": "VARCHAR(16) NOT NULL",
    "used": "INTEGER NOT NULL DEFAULT 0",
    "outstanding": "INTEGER NOT NULL DEFAULT 0",
    "last_cap": "INTEGER",
    "updated_at": "{timestamp}",
}


def create_ledger_sql(dialect: SqlDialect, table: str = LEDGER_TABLE) -> str:
    """Return the ``CREATE TABLE IF NOT EXISTS`` statement of the ledger for ``dialect``."""
    columns = [f"    {name:<12} {kind.format(timestamp=dialect.timestamp)}" for name, kind in _TYPES.items()]
    body = ",\n".join([*columns, f"    PRIMARY KEY ({', '.join(LEDGER_KEY)})"])
    return f"CREATE TABLE IF NOT EXISTS {table} (\n{body}\n){dialect.table_options}"


LEDGER_SHAPE = TableShape("Usage ledger", LEDGER_COLUMNS, LEDGER_KEY, create_ledger_sql, "docs/quotas.md")


def key_id(base_url: str, api_key: str) -> str:
    """Return the ledger's name of an API key at a Base URL (a digest: the key is never stored)."""
    return hashlib.sha256(f"{base_url}\n{api_key}".encode()).hexdigest()


class SqlLedger:
    """The ledger rows of one API key, over an Airflow SQL connection; thread-safe.

    Every statement runs on one thread of its own, whichever thread asks: database connections
    (SQLite's, for one) may not be shared between threads.

    ``check()`` (before anything is sent) creates the table when it is missing and refuses one of
    another shape.

    :param conn_id: the SQL connection (the AI-DOL connection's ``registry_conn_id``).
    :param key: ``key_id()`` of the API key.
    :param table: the ledger table.
    """

    def __init__(self, conn_id: str, key: str, table: str = LEDGER_TABLE) -> None:
        self.conn_id = conn_id
        self.key = key
        self.table = table
        self._hook: DbApiHook | None = None
        self._dialect: SqlDialect | None = None
        self._connection: Any = None
        self._rows: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aidol-ledger")

    def _on_own_thread(self, call: Callable[..., _T], *args: Any) -> _T:
        with self._lock:
            return self._thread.submit(call, *args).result()

    @property
    def description(self) -> str:
        """Where the counts live."""
        return f"table {self.table} of connection {self.conn_id!r}"

    def check(self) -> None:
        """Connect, create the table when it is missing and check its shape (before any request)."""
        self._on_own_thread(self._check)

    def _check(self) -> None:
        if self._hook is not None:
            return
        hook = resolve_sql_hook(self.conn_id, self.description)
        dialect = dialect_of(hook, self.conn_id, self.description)
        ensure_table(hook, dialect, self.table, self.conn_id, LEDGER_SHAPE)
        self._connection = open_connection(hook, dialect, self.conn_id, self.description)
        self._hook, self._dialect = hook, dialect

    def _connect(self) -> Any:
        """Return the open connection; after a failure, a new one.

        The table is not created again then: a ledger table dropped while tasks run is an error,
        not the start of a new count.
        """
        self._check()
        if self._connection is None:
            assert self._hook is not None
            assert self._dialect is not None
            self._connection = open_connection(self._hook, self._dialect, self.conn_id, self.description)
        return self._connection

    def reserve(self, kind: str, day: str, wanted: int, cap: int, spent: int) -> int:
        """Reserve up to ``wanted`` of ``kind`` on ``day`` within ``cap``; return how many (0: none left).

        ``spent`` leaves ``outstanding`` in the same statement: the caller's previous block.
        """
        return self._on_own_thread(self._reserve, kind, day, wanted, cap, spent)

    def _reserve(self, kind: str, day: str, wanted: int, cap: int, spent: int) -> int:
        self._ensure_row(kind, day)
        while wanted > 0:
            granted = self._update(
                f"SET used = used + {{p}}, outstanding = outstanding + {{p}} - {{p}}, last_cap = {{p}}, "
                f"updated_at = {{p}} {self._where} AND used + {{p}} <= {{p}}",
                [wanted, wanted, spent, cap, self._now(), *self._key(kind, day), wanted, cap],
            )
            if granted:
                return wanted
            row = self._row(kind, day)
            if row is None:  # a person deleted today's row meanwhile: start it again
                self._rows.discard((kind, day))
                self._ensure_row(kind, day)
                continue
            wanted = min(wanted, cap - row[0])
        if spent:
            self._release(kind, day, 0, spent)
        return 0

    def give_back(self, kind: str, day: str, unused: int, held: int) -> None:
        """Return ``unused`` of a block of ``held``; neither is outstanding any more."""
        self._on_own_thread(self._release, kind, day, unused, held)

    def read(self, kind: str, day: str) -> tuple[int, int]:
        """Return ``(used, outstanding)`` of ``kind`` on ``day`` (zeros when there is no row)."""
        return self._on_own_thread(self._read, kind, day)

    def close(self) -> None:
        """Close the database connection and the ledger's thread."""
        self._on_own_thread(self._close)
        self._thread.shutdown()

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    @property
    def _where(self) -> str:
        return "WHERE key_id = {p} AND day = {p} AND kind = {p}"

    def _key(self, kind: str, day: str) -> list[object]:
        return [self.key, day, kind]

    def _now(self) -> object:
        assert self._dialect is not None
        return self._dialect.to_db(None)

    def _release(self, kind: str, day: str, unused: int, held: int) -> None:
        self._update(
            f"SET used = used - {{p}}, outstanding = outstanding - {{p}}, updated_at = {{p}} {self._where}",
            [unused, held, self._now(), *self._key(kind, day)],
        )

    def _read(self, kind: str, day: str) -> tuple[int, int]:
        return self._row(kind, day) or (0, 0)

    def _row(self, kind: str, day: str) -> tuple[int, int] | None:
        rows = self._execute(
            f"SELECT used, outstanding FROM {self.table} {self._where}", self._key(kind, day)
        )
        return (int(rows[0][0]), int(rows[0][1])) if rows else None

    def _ensure_row(self, kind: str, day: str) -> None:
        if (kind, day) in self._rows:
            return
        assert self._dialect is not None
        conflict = (
            "ON DUPLICATE KEY UPDATE key_id = key_id"
            if self._dialect.name == "mysql"
            else f"ON CONFLICT ({', '.join(LEDGER_KEY)}) DO NOTHING"
        )
        self._execute(
            f"INSERT INTO {self.table} (key_id, day, kind, used, outstanding) VALUES "
            f"({{p}}, {{p}}, {{p}}, 0, 0) {conflict}",
            self._key(kind, day),
        )
        self._rows.add((kind, day))

    def _update(self, assignment: str, parameters: list[object]) -> int:
        return int(self._execute(f"UPDATE {self.table} {assignment}", parameters, rowcount=True))

    def _execute(self, sql: str, parameters: list[object], *, rowcount: bool = False) -> Any:
        """Run one statement in its own transaction; return its rows, or the rows it changed.

        After a failure the connection is dropped, so the next statement opens a new one (the
        database may be back by then).
        """
        connection = self._connect()
        assert self._hook is not None
        sql = sql.replace("{p}", str(self._hook.placeholder))
        result: Any
        try:
            with closing(connection.cursor()) as cursor:
                cursor.execute(sql, parameters)
                result = cursor.rowcount if rowcount else (cursor.fetchall() if cursor.description else [])
            connection.commit()
        except Exception as error:
            self._connection = None
            for end in (connection.rollback, connection.close):
                try:
                    end()
                except Exception:  # the connection may be broken; the original error matters
                    log.debug("%s failed", end.__name__, exc_info=True)
            raise AidolRegistryError(
                f"Usage ledger {self.description} failed: {type(error).__name__}: {error}",
                registry=self.description,
            ) from error
        if rowcount:
            return int(result)
        return [tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in result]
