"""Conversation reuse in Airflow Variables (kept for compatibility; see ``airflow_provider_aidol.registry``).

The key of each Variable is ``aidol_conversation:<conn id>:<user id>:<agent id>`` with every part
percent-encoded (``quote(part, safe="")``); delete a Variable to start a new conversation for
that pair. The registry package holds this store now
(:class:`~airflow_provider_aidol.registry.variables.VariablesRegistry`) next to the SQL one.
"""

from __future__ import annotations

from airflow_provider_aidol.registry.variables import (
    KEY_PREFIX,
    MAX_KEY_LENGTH,
    get_conversation,
    set_conversation,
    variable_key,
)

__all__ = ["KEY_PREFIX", "MAX_KEY_LENGTH", "ConversationStore", "variable_key"]


class ConversationStore:
    """Reads and writes reusable conversation ids in Airflow Variables (call it from a running task).

    :param conn_id: the AI-DOL connection the conversations belong to.
    """

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id

    def get(self, user_id: str, agent_id: str) -> str | None:
        """Return the stored conversation id, or ``None``."""
        return get_conversation(self.conn_id, user_id, agent_id)

    def put(self, user_id: str, agent_id: str, conversation_id: str) -> None:
        """Remember ``conversation_id`` for the pair."""
        set_conversation(self.conn_id, user_id, agent_id, conversation_id)
