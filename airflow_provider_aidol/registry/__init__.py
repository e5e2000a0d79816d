"""The conversation registry: one conversation per connection, user and agent, kept for reuse.

Two stores answer the same interface (:class:`ConversationRegistry`):

- :class:`~airflow_provider_aidol.registry.variables.VariablesRegistry`: one Airflow Variable
  per pair (the key format of earlier releases), for small numbers of pairs;
- :class:`~airflow_provider_aidol.registry.sql.SqlRegistry`: one row per pair in a table of any
  Airflow SQL connection (PostgreSQL, MySQL, SQLite), read and written in bulk, and safe when
  several tasks claim the same pairs at once.

:func:`open_registry` picks the store. The operators call it when a task runs; this module
imports nothing but the standard library, so DAG files pay nothing for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_aidol.client.validation import MAX_ID_LENGTH, require_id, require_text

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "DEFAULT_TABLE",
    "MAX_ID_LENGTH",
    "ConversationRegistry",
    "Origin",
    "Pair",
    "Registration",
    "check_pairs",
    "check_registrations",
    "open_registry",
]

Pair = tuple[str, str]
"""``(user_id, agent_id)``: what the registry keeps one conversation for, per namespace."""
DEFAULT_TABLE = "aidol_conversations"
"""The table the SQL registry uses unless told otherwise."""


@dataclass(frozen=True)
class Registration:
    """One registry entry: the conversation of a user with an agent, and where it came from.

    :param user_id: the end user.
    :param agent_id: the agent.
    :param conversation_id: the conversation kept for the pair.
    :param trace_id: the ``traceId`` of the answer that created it.
    :param created_at: when it was created (UTC).
    :param dag_id: the DAG of the task that created it.
    :param run_id: the DAG run of that task.
    :param task_id: that task.
    :param map_index: that task's map index (``-1`` when it is not mapped).
    """

    user_id: str
    agent_id: str
    conversation_id: str
    trace_id: str | None = None
    created_at: datetime | None = None
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None

    @property
    def pair(self) -> Pair:
        """``(user_id, agent_id)``."""
        return self.user_id, self.agent_id


@dataclass(frozen=True)
class Origin:
    """Where new conversations come from: the task that creates them.

    ``Origin.from_context(context).registration(...)`` builds the entry a task claims.
    """

    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> Origin:
        """Return the origin of the running task (its ``ti``: DAG, run, task and map index)."""
        ti = context["ti"]
        return cls(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", None))

    def registration(
        self, user_id: str, agent_id: str, conversation_id: str, trace_id: str | None = None
    ) -> Registration:
        """Return the entry for a conversation this task has just created."""
        return Registration(
            user_id,
            agent_id,
            conversation_id,
            trace_id,
            datetime.now(UTC),
            self.dag_id,
            self.run_id,
            self.task_id,
            self.map_index,
        )


class ConversationRegistry(Protocol):
    """What every store offers. Use it as a context manager, or call ``close()``.

    Entries are grouped by ``namespace``: the AI-DOL connection id the conversations belong to.
    """

    namespace: str
    statements: int
    """Round trips to the store so far (SQL statements, or Variable reads and writes)."""
    seconds: float
    """Seconds spent waiting for the store so far."""

    @property
    def description(self) -> str:
        """Where the entries live, for log lines and messages."""

    def check(self) -> None:
        """Make sure the store can be used (creating what is missing); raise before any request.

        Raises :class:`~airflow_provider_aidol.exceptions.AidolRegistryConfigError`, naming the
        connection and the fix, when it cannot.
        """

    def lookup(self, pairs: Iterable[Pair]) -> dict[Pair, Registration]:
        """Return the entry of every given pair that has one (pairs without one are left out)."""

    def claim(self, registrations: Iterable[Registration]) -> dict[Pair, Registration]:
        """Keep each entry unless its pair has one already; return the entry kept, per pair.

        When another task claimed a pair first, the entry returned is that task's: its
        ``conversation_id`` differs from the one given, and the one given is orphaned.
        """

    def close(self) -> None:
        """Release the store's database connection, if it holds one."""

    def __enter__(self) -> ConversationRegistry: ...

    def __exit__(self, *exc_info: object) -> None: ...


def check_pairs(
    pairs: Iterable[Pair], *, max_length: int | None = MAX_ID_LENGTH, name: str = "pairs"
) -> list[Pair]:
    """Return the pairs as a list; raise ``ValueError`` for one the registry cannot keep.

    :param max_length: the longest id the store keeps (``None``: any).
    :param name: what the message calls the sequence.
    """
    checked: list[Pair] = []
    for number, pair in enumerate(pairs):
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError(f"{name}[{number}] must be a (user_id, agent_id) tuple, got {pair!r}.")
        for field_name, value in zip(("user_id", "agent_id"), pair, strict=True):
            _check_id(f"{name}[{number}].{field_name}", value, max_length)
        checked.append(pair)
    return checked


def check_registrations(
    registrations: Iterable[Registration], *, max_length: int | None = MAX_ID_LENGTH
) -> list[Registration]:
    """Return the entries as a list; raise ``ValueError`` for one the registry cannot keep."""
    checked = list(registrations)
    check_pairs((row.pair for row in checked), max_length=max_length, name="registrations")
    for number, row in enumerate(checked):
        _check_id(f"registrations[{number}].conversation_id", row.conversation_id, max_length)
        if row.trace_id is not None:
            _check_id(f"registrations[{number}].trace_id", row.trace_id, max_length)
    return checked


def _check_id(name: str, value: object, max_length: int | None) -> None:
    require_id(name, value, max_length=max_length)


def open_registry(
    namespace: str, *, registry_conn_id: str | None = None, registry_table: str | None = None
) -> ConversationRegistry:
    """Return the registry for ``namespace`` (the AI-DOL connection id).

    :param namespace: the AI-DOL connection the conversations belong to.
    :param registry_conn_id: an Airflow SQL connection (PostgreSQL, MySQL, SQLite) for the SQL
        registry; ``None``: Airflow Variables.
    :param registry_table: the SQL registry's table (``schema.table`` allowed); default
        ``aidol_conversations``. Only with ``registry_conn_id``.
    """
    require_text("namespace", namespace)
    if registry_conn_id is None:
        if registry_table is not None:
            raise ValueError(
                f"registry_table={registry_table!r} needs registry_conn_id: Airflow Variables "
                "have no table; name the SQL connection of the registry, or leave registry_table out."
            )
        from airflow_provider_aidol.registry.variables import VariablesRegistry

        return VariablesRegistry(namespace)
    from airflow_provider_aidol.registry.sql import SqlRegistry

    return SqlRegistry(namespace, registry_conn_id, registry_table or DEFAULT_TABLE)
