"""The crash journal of a batch whose ``output_path`` is on object storage, in the registry's database.

Object storage cannot append a line cheaply, so results go there in chunks (every second or
1,000 lines). What a killed worker had not written yet must still be found by the retry, on
whichever worker it runs: each request is journalled here before it is sent, and each outcome
as soon as it is known; the rows of an item go once its results line is in the remote file.
A retry reads the rows back: outcomes not yet in the remote file are written there, requests
without an outcome are *in doubt* (named with their ``X-Request-ID``).

One row per request sent (``request_id``) and one per recorded outcome (``request_id`` empty,
``record`` the results line) in ``aidol_batch_journal`` beside the registry's table, created
like it when missing (docs/batches.md shows the DDL). ``output_key`` is a SHA-256 digest of the
``output_path`` URI, so two outputs never share rows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_provider_aidol.exceptions import AidolRegistryError
from airflow_provider_aidol.registry.schema import TableShape, ensure_table
from airflow_provider_aidol.registry.sql import dialect_of, open_connection, resolve_sql_hook

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from airflow.providers.common.sql.hooks.sql import DbApiHook

    from airflow_provider_aidol.registry.dialects import SqlDialect

log = logging.getLogger(__name__)
_T = TypeVar("_T")

JOURNAL_TABLE = "aidol_batch_journal"
"""The journal's table, beside the registry's in the same database."""
JOURNAL_COLUMNS = ("output_key", "item_index", "request_id", "agent_id", "user_id", "record", "written_at")
JOURNAL_KEY = ("output_key", "item_index", "request_id")
OUTCOME = ""
"""The ``request_id`` of an item's outcome row."""
_TYPES = {
    "output_key": "VARCHAR(64) NOT NULL",
    "item_index": "INTEGER NOT NULL",
    "request_id": "VARCHAR(64) NOT NULL",
    "agent_id": "VARCHAR(255)",
    "user_id": "VARCHAR(255)",
    "record": "TEXT",
    "written_at": "{timestamp}",
}
_DELETE_CHUNK = 500


def create_journal_sql(dialect: SqlDialect, table: str = JOURNAL_TABLE) -> str:
    """Return the ``CREATE TABLE IF NOT EXISTS`` statement of the journal for ``dialect``."""
    columns = [f"    {name:<11} {kind.format(timestamp=dialect.timestamp)}" for name, kind in _TYPES.items()]
    body = ",\n".join([*columns, f"    PRIMARY KEY ({', '.join(JOURNAL_KEY)})"])
    return f"CREATE TABLE IF NOT EXISTS {table} (\n{body}\n){dialect.table_options}"


JOURNAL_SHAPE = TableShape(
    "Batch journal", JOURNAL_COLUMNS, JOURNAL_KEY, create_journal_sql, "docs/batches.md"
)


def output_key(uri: str) -> str:
    """Return the journal's name of an ``output_path``: a SHA-256 digest of its URI."""
    return hashlib.sha256(uri.encode()).hexdigest()


class SqlJournal:
    """The journal rows of one ``output_path``, over an Airflow SQL connection; thread-safe.

    Every statement runs on one thread of its own, whichever thread asks (the batch's workers
    journal their requests): database connections may not be shared between threads. Each
    statement is committed before it returns, so a request is journalled before it leaves.

    :param conn_id: the SQL connection (the registry's).
    :param uri: the ``output_path`` URI the rows belong to.
    :param table: the journal table.
    """

    def __init__(self, conn_id: str, uri: str, table: str = JOURNAL_TABLE) -> None:
        self.conn_id = conn_id
        self.uri = uri
        self.key = output_key(uri)
        self.table = table
        self._hook: DbApiHook | None = None
        self._dialect: SqlDialect | None = None
        self._connection: Any = None
        self._lock = threading.Lock()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aidol-journal")

    @property
    def description(self) -> str:
        """Where the rows live."""
        return f"table {self.table} of connection {self.conn_id!r}"

    def check(self) -> None:
        """Connect, create the table when it is missing and check its shape (before any request)."""
        self._on_own_thread(self._check)

    def read(self) -> list[tuple[int, str, str, str, dict[str, Any] | None]]:
        """Return every row of this output: ``(index, request_id, agent_id, user_id, record)``.

        ``request_id`` is empty on an outcome row, and ``record`` ``None`` on a request's row.
        """
        rows = self._on_own_thread(
            self._execute,
            f"SELECT item_index, request_id, agent_id, user_id, record FROM {self.table} "
            "WHERE output_key = {p} ORDER BY written_at, item_index",
            [self.key],
        )
        return [
            (int(index), str(rid), str(agent), str(user), json.loads(record) if record else None)
            for index, rid, agent, user, record in rows
        ]

    def sending(self, index: int, agent_id: str, user_id: str, request_id: str) -> None:
        """Journal that item ``index``'s request ``request_id`` is about to be sent."""
        self._insert([(index, request_id, agent_id, user_id, None)])

    def recorded(self, records: Sequence[dict[str, Any]]) -> None:
        """Journal outcomes (results lines) that are not yet in the remote file."""
        self._insert(
            [
                (r["index"], OUTCOME, r.get("agent_id"), r.get("user_id"), json.dumps(r, ensure_ascii=False))
                for r in records
            ]
        )

    def written(self, indexes: Sequence[int]) -> None:
        """Drop the rows of items whose results lines are now in the remote file."""
        unique = sorted(set(indexes))
        for start in range(0, len(unique), _DELETE_CHUNK):
            chunk = unique[start : start + _DELETE_CHUNK]
            self._on_own_thread(
                self._execute,
                f"DELETE FROM {self.table} WHERE output_key = {{p}} AND item_index IN "
                f"({', '.join(['{p}'] * len(chunk))})",
                [self.key, *chunk],
            )

    def clear(self) -> None:
        """Drop every row of this output (every item has its results line there)."""
        self._on_own_thread(self._execute, f"DELETE FROM {self.table} WHERE output_key = {{p}}", [self.key])

    def close(self) -> None:
        """Close the database connection and the journal's thread."""
        self._on_own_thread(self._close)
        self._thread.shutdown()

    def _on_own_thread(self, call: Callable[..., _T], *args: Any) -> _T:
        with self._lock:
            return self._thread.submit(call, *args).result()

    def _check(self) -> None:
        if self._connection is not None:
            return
        hook = resolve_sql_hook(self.conn_id, self.description)
        dialect = dialect_of(hook, self.conn_id, self.description)
        ensure_table(hook, dialect, self.table, self.conn_id, JOURNAL_SHAPE)
        self._connection = open_connection(hook, dialect, self.conn_id, self.description)
        self._hook, self._dialect = hook, dialect

    def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _insert(self, rows: list[tuple[object, ...]]) -> None:
        if rows:
            self._on_own_thread(self._insert_rows, rows)

    def _insert_rows(self, rows: list[tuple[object, ...]]) -> None:
        self._check()
        assert self._dialect is not None
        now = self._dialect.to_db(None)
        self._execute(
            f"INSERT INTO {self.table} ({', '.join(JOURNAL_COLUMNS)}) VALUES "
            f"({', '.join(['{p}'] * len(JOURNAL_COLUMNS))})",
            [(self.key, *row, now) for row in rows],
            many=True,
        )

    def _execute(self, sql: str, parameters: list[Any], *, many: bool = False) -> list[tuple[Any, ...]]:
        """Run one statement (``many``: once per parameter row) and commit; return its rows."""
        self._check()
        assert self._hook is not None
        sql = sql.replace("{p}", str(self._hook.placeholder))
        try:
            with closing(self._connection.cursor()) as cursor:
                if many:
                    cursor.executemany(sql, parameters)
                else:
                    cursor.execute(sql, parameters)
                result = cursor.fetchall() if cursor.description else []
            self._connection.commit()
        except Exception as error:
            try:
                self._connection.rollback()
            except Exception:  # the connection may be broken; the original error matters
                log.debug("rollback failed", exc_info=True)
            raise AidolRegistryError(
                f"Batch journal {self.description} failed: {type(error).__name__}: {error}",
                registry=self.description,
            ) from error
        return [tuple(row.values()) if isinstance(row, dict) else tuple(row) for row in result]
