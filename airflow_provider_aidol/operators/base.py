"""What every AI-DOL operator shares: the connection id, and a hook made when the task runs.

DAG files import the operator modules, so this imports only ``airflow.sdk`` at the top; the hook
(and with it ``requests`` and ``tenacity``) is imported when a task runs.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from airflow.sdk import BaseOperator

from airflow_provider_aidol.get_provider_info import DEFAULT_CONN_ID

if TYPE_CHECKING:
    from airflow_provider_aidol.hooks.aidol import AidolHook


class AidolBaseOperator(BaseOperator):
    """Base class of the AI-DOL operators.

    :param aidol_conn_id: the ``aidol`` connection to use.
    """

    ui_color = "#e8f0fe"

    def __init__(self, *, aidol_conn_id: str = DEFAULT_CONN_ID, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.aidol_conn_id = aidol_conn_id

    @cached_property
    def hook(self) -> AidolHook:
        """The hook for ``aidol_conn_id``, created when the task runs."""
        from airflow_provider_aidol.hooks.aidol import AidolHook

        return AidolHook(aidol_conn_id=self.aidol_conn_id)
