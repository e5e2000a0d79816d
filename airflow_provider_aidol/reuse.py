"""Conversation reuse: one conversation per connection, user and agent, kept in Airflow Variables.

The vendor's guidance is to keep using a user's conversation with an agent for as long as the
user talks to that agent, and to persist it. The key of each Variable is
``aidol_conversation:<conn id>:<user id>:<agent id>`` with every part percent-encoded
(``quote(part, safe="")``); delete a Variable to start a new conversation for that pair.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

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


class ConversationStore:
    """Reads and writes reusable conversation ids in Airflow Variables (call it from a running task).

    :param conn_id: the AI-DOL connection the conversations belong to.
    """

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id

    def get(self, user_id: str, agent_id: str) -> str | None:
        """Return the stored conversation id, or ``None``."""
        from airflow.sdk import Variable

        value = Variable.get(variable_key(self.conn_id, user_id, agent_id), default=None)
        return value if isinstance(value, str) and value.strip() else None

    def put(self, user_id: str, agent_id: str, conversation_id: str) -> None:
        """Remember ``conversation_id`` for the pair."""
        from airflow.sdk import Variable

        Variable.set(
            variable_key(self.conn_id, user_id, agent_id),
            conversation_id,
            description=f"AI-DOL conversation of user {user_id!r} with agent {agent_id!r}",
        )
