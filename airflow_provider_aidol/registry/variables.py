"""The registry in Airflow Variables: one Variable per connection, user and agent.

The key of each Variable is ``aidol_conversation:<conn id>:<user id>:<agent id>`` with every part
percent-encoded (``quote(part, safe="")``); its value is the conversation id. Delete a Variable
to start a new conversation for that pair. Version 0.1.0 kept a pair whose ids hold characters
that quoting changes (``/``, ``:``, ``@``, ...) under the key decoded once, as Airflow's API server
reads the Task SDK's URL path: lookups still find it there, but for a pair whose ids hold a colon
(decoded, it could be another pair's key). Every read and write is one Task SDK
round trip, so this store suits thousands of pairs, not hundreds of thousands, and it cannot tell
two tasks that claim the same new pair at once apart (the later write wins); the SQL registry can.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

from airflow_provider_aidol.registry import Pair, Registration, check_pairs, check_registrations

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

_T = TypeVar("_T")

KEY_PREFIX = "aidol_conversation"
MAX_KEY_LENGTH = 250
"""Airflow's limit on Variable keys."""


def variable_key(conn_id: str, user_id: str, agent_id: str) -> str:
    """Return the Variable key that holds the conversation of ``user_id`` with ``agent_id``.

    A key that would exceed Airflow's 250 characters ends in a SHA-256 of the user and agent
    instead: ``aidol_conversation:<conn id>:sha256:<hex>``.
    """
    key = ":".join(quote(part, safe="") for part in (KEY_PREFIX, conn_id, user_id, agent_id))
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha256(f"{user_id}\n{agent_id}".encode()).hexdigest()
    return f"{KEY_PREFIX}:{quote(conn_id, safe='')}:sha256:{digest}"


def variable_description(user_id: str, agent_id: str) -> str:
    """Return the description the Variable of a pair gets (it names the pair of a hashed key)."""
    return f"AI-DOL conversation of user {user_id!r} with agent {agent_id!r}"


_COLON = "%3A"
"""An id's colon, quoted. Decoded once, as 0.1.0's keys were, it reads as the key's separator: the
pairs (``org:1``, ``a``) and (``org``, ``1:a``) shared one key then, so such a pair is never looked
up where 0.1.0 kept it (it could find another pair's conversation)."""


def _sent(key: str) -> str:
    """Return ``key`` as the Task SDK must be handed it for Airflow to store ``key`` itself.

    The SDK puts the key in a URL path, which Airflow's API server percent-decodes once: escaping
    ``%`` keeps an id's ``/`` as ``%2F`` (Airflow 3.0 routes a key only up to a ``/``) and two
    pairs apart (``a:b`` + ``c`` and ``a`` + ``b:c`` would both decode to ``a:b:c``).
    """
    return key.replace("%", "%25")


def get_conversation(conn_id: str, user_id: str, agent_id: str) -> str | None:
    """Return the conversation id kept in the pair's Variable, or ``None`` (call it from a task)."""
    from airflow.sdk import Variable

    key = variable_key(conn_id, user_id, agent_id)
    value = Variable.get(_sent(key), default=None)
    if value is None and _sent(key) != key and _COLON not in key:
        value = Variable.get(key, default=None)  # where 0.1.0 kept it (see the module's docstring)
    return value if isinstance(value, str) and value.strip() else None


def set_conversation(conn_id: str, user_id: str, agent_id: str, conversation_id: str) -> None:
    """Keep ``conversation_id`` in the pair's Variable, replacing what it held (call it from a task)."""
    from airflow.sdk import Variable

    Variable.set(
        _sent(variable_key(conn_id, user_id, agent_id)),
        conversation_id,
        description=variable_description(user_id, agent_id),
    )


class VariablesRegistry:
    """The registry in Airflow Variables (call it from a running task).

    Only the conversation id is kept: entries it returns have no ``trace_id`` or origin.

    :param namespace: the AI-DOL connection the conversations belong to.
    """

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.statements = 0
        """Task SDK round trips so far (one per Variable read or written)."""
        self.seconds = 0.0
        """Seconds spent in them so far."""

    @property
    def description(self) -> str:
        """Where the entries live."""
        return f"Airflow Variables {KEY_PREFIX}:{quote(self.namespace, safe='')}:…"

    def check(self) -> None:
        """Nothing to check: Airflow Variables are always there."""

    def lookup(self, pairs: Iterable[Pair]) -> dict[Pair, Registration]:
        """Return the entry of every pair that has a Variable (one Task SDK round trip per pair)."""
        found: dict[Pair, Registration] = {}
        for pair in dict.fromkeys(check_pairs(pairs, max_length=None)):
            conversation_id = self._timed(get_conversation, *pair)
            if conversation_id is not None:
                found[pair] = Registration(*pair, conversation_id)
        return found

    def claim(self, registrations: Iterable[Registration]) -> dict[Pair, Registration]:
        """Set the Variable of every pair that has none; return the entry kept, per pair.

        A pair whose Variable is set already keeps it. Two tasks that claim the same new pair at
        the same moment can both see it unset; then the later write wins unnoticed.
        """
        kept: dict[Pair, Registration] = {}
        for registration in check_registrations(registrations, max_length=None):
            pair = registration.pair
            if pair in kept:
                continue
            existing = self._timed(get_conversation, *pair)
            if existing is None:
                self._timed(set_conversation, *pair, registration.conversation_id)
                kept[pair] = registration
            else:
                kept[pair] = Registration(*pair, existing)
        return kept

    def _timed(self, call: Callable[..., _T], *args: str) -> _T:
        started = time.perf_counter()
        try:
            return call(self.namespace, *args)
        finally:
            self.statements += 1
            self.seconds += time.perf_counter() - started

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> VariablesRegistry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
