"""Operators that create AI-DOL conversations.

DAG files import this module, so it imports nothing heavy at the top: the hook (and with it
``requests`` and ``tenacity``) is imported when a task runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.client.validation import require_id
from airflow_provider_aidol.constants import DEFAULT_CONN_ID
from airflow_provider_aidol.exceptions import AidolConfigurationError
from airflow_provider_aidol.operators.base import AidolBaseOperator, Templated, rendered
from airflow_provider_aidol.registry import Origin, Registration
from airflow_provider_aidol.registry.reuse import ConversationReuse, ReuseOutcome, Settled

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context


class CreateConversationOperator(AidolBaseOperator):
    """Create an AI-DOL conversation with an agent and return its ``conversationId``.

    The id is the task's XCom ``return_value``, so ``operator.output`` feeds it to downstream
    tasks. Map it over agents with ``.partial(...).expand(agent_id=[...])``.

    :param agent_id: the agent to talk to. (templated)
    :param user_id: the end user; defaults to the connection's ``user_id`` extra. (templated)
    :param aidol_conn_id: the ``aidol`` connection to use.
    :param reuse_existing: return the conversation the registry keeps for this user and agent
        instead of creating one, and register newly created ones, so scheduled runs continue the
        same conversation. When another task registered the pair first, its conversation is
        returned and the one this task created is reported as orphaned (XCom
        ``orphaned_conversation_id``).
    :param registry_conn_id: an Airflow SQL connection for the conversation registry; default:
        the AI-DOL connection's extra ``registry_conn_id``, else Airflow Variables.
    :param registry_table: the SQL registry's table; default ``aidol_conversations``.
    """

    template_fields: Sequence[str] = ("agent_id", "user_id", "plan_only")

    def __init__(
        self,
        *,
        agent_id: Templated[str],
        user_id: Templated[str] | None = None,
        aidol_conn_id: str = DEFAULT_CONN_ID,
        reuse_existing: bool = False,
        registry_conn_id: str | None = None,
        registry_table: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(aidol_conn_id=aidol_conn_id, **kwargs)
        self.agent_id = rendered(agent_id)
        self.user_id = rendered(user_id)
        self.reuse_existing = reuse_existing
        self.registry_conn_id = registry_conn_id
        self.registry_table = registry_table

    def execute(self, context: Context) -> Any:
        """Create (or reuse) the conversation; the returned id becomes the XCom ``return_value``.

        Each asset in ``outlets`` gets an event whose extra holds ``conversation_id``,
        ``trace_id`` (``None`` when reused) and ``reused``.
        """
        try:
            agent_id, user_id = self._checked_ids()
            self.open_quota(self.registry_conn_id)
            if self.is_dry_run:
                return self._plan(context, agent_id, user_id)
            if not self.reuse_existing:
                settled = Settled(ReuseOutcome.CREATED, *self._create(agent_id, user_id))
            else:
                settled = self._reuse_or_create(agent_id, user_id, context)
        finally:
            self.end_try(context)
        extra = {
            "conversation_id": settled.conversation_id,
            "trace_id": settled.trace_id,
            "reused": settled.reused,
        }
        reused = int(settled.reused)
        self.report_results(context, extra, counts={"created": 1 - reused, "reused": reused})
        return settled.conversation_id

    def _plan(self, context: Context, agent_id: str, user_id: str) -> Any:
        """Return the dry run's plan: one conversation, reused when the registry keeps it."""
        kept = False
        if self.reuse_existing:
            with self.open_registry(self.registry_conn_id, self.registry_table) as registry:
                kept = bool(ConversationReuse(registry).lookup({(user_id, agent_id)}))
        return self.plan(
            context, total=1, new=1 - kept, reused=int(kept), registry_conn_id=self.registry_conn_id
        )

    def _checked_ids(self) -> tuple[str, str]:
        """Return the agent and user ids; raise ``AidolConfigurationError`` (sending nothing) for bad ones."""
        try:
            agent_id = require_id("agent_id", self.agent_id)
            user_id = require_id("user_id", self.hook.resolve_user_id(self.user_id))
        except ValueError as error:
            raise AidolConfigurationError(f"{error} Nothing was sent.") from None
        return agent_id, user_id

    def _create(self, agent_id: str, user_id: str) -> tuple[str, str | None]:
        """Create the conversation; return its id and the answer's traceId."""
        response = self.hook.create_conversation_response(agent_id, user_id=user_id)
        conversation_id: str = response.data["conversationId"]
        self.log.info(
            "Created AI-DOL conversation %s with agent %s (traceId %s)",
            conversation_id,
            agent_id,
            response.trace_id,
        )
        return conversation_id, response.trace_id

    def _reuse_or_create(self, agent_id: str, user_id: str, context: Context) -> Settled:
        origin = Origin.from_context(context)
        created: list[Registration] = []

        def create() -> Registration:
            created.append(origin.registration(user_id, agent_id, *self._create(agent_id, user_id)))
            return created[0]

        with self.open_registry(self.registry_conn_id, self.registry_table) as registry:
            where = registry.description
            try:
                settled = ConversationReuse(registry).reuse_or_create(user_id, agent_id, create)
            except Exception:
                for new in created:  # recorded here, before the error ends the task
                    self.log.warning(
                        "Conversation %s of user %s with agent %s was created (traceId %s) but not "
                        "registered in %s, which failed",
                        new.conversation_id,
                        user_id,
                        agent_id,
                        new.trace_id or "-",
                        where,
                    )
                raise
        self._report_reuse(settled, f"user {user_id} with agent {agent_id}", where, context)
        return settled

    def _report_reuse(self, settled: Settled, pair: str, where: str, context: Context) -> None:
        """Log a reused conversation; warn of an orphaned one, pushed as XCom ``orphaned_conversation_id``."""
        if settled.outcome is ReuseOutcome.REUSED:
            self.log.info("Reusing AI-DOL conversation %s of %s (%s)", settled.conversation_id, pair, where)
        elif settled.outcome is ReuseOutcome.ORPHANED:
            self.log.warning(
                "Another task registered conversation %s for %s first; using it. "
                "The conversation this task created, %s, is orphaned (unused).",
                settled.conversation_id,
                pair,
                settled.orphaned_conversation_id,
            )
            orphaned = settled.orphaned_conversation_id
            with self.best_effort("the XCom orphaned_conversation_id"):
                context["ti"].xcom_push(key="orphaned_conversation_id", value=orphaned)
