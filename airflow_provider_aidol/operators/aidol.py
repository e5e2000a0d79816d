"""Operators that create AI-DOL conversations.

DAG files import this module, so it imports only ``airflow.sdk`` at the top; the hook (and with
it ``requests`` and ``tenacity``) is imported when a task runs.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_provider_aidol.hooks.aidol import AidolHook

DEFAULT_CONN_ID = "aidol_default"


class CreateConversationOperator(BaseOperator):
    """Create an AI-DOL conversation with an agent and return its ``conversationId``.

    The id is the task's XCom ``return_value``, so ``operator.output`` feeds it to downstream
    tasks. Map it over agents with ``.partial(...).expand(agent_id=[...])``.

    :param agent_id: the agent to talk to. (templated)
    :param user_id: the end user; defaults to the connection's ``user_id`` extra. (templated)
    :param aidol_conn_id: the ``aidol`` connection to use.
    """

    template_fields: Sequence[str] = ("agent_id", "user_id")
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        agent_id: str,
        user_id: str | None = None,
        aidol_conn_id: str = DEFAULT_CONN_ID,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.agent_id = agent_id
        self.user_id = user_id
        self.aidol_conn_id = aidol_conn_id

    @cached_property
    def hook(self) -> AidolHook:
        """The hook for ``aidol_conn_id``, created when the task runs."""
        from airflow_provider_aidol.hooks.aidol import AidolHook

        return AidolHook(aidol_conn_id=self.aidol_conn_id)

    def execute(self, context: Context) -> str:
        """Create the conversation; the returned id becomes the XCom ``return_value``."""
        try:
            return self.hook.create_conversation(self.agent_id, user_id=self.user_id)
        finally:
            self.hook.close()
