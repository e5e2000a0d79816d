"""Conversation reuse, as both operators do it: look the pairs up, claim new conversations, settle races.

Each pair ends with an explicit outcome: the task created its conversation, reused one the
registry kept, or created one that another task registered first, so the other task's is used
and the one created here is orphaned.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from airflow_provider_aidol.registry import ConversationRegistry, Pair, Registration


class ReuseOutcome(StrEnum):
    """How a task came by the conversation of a (user, agent) pair."""

    CREATED = "created"
    """This task created it (and registered it, with a registry)."""
    REUSED = "reused"
    """The registry kept one already; nothing was sent."""
    ORPHANED = "orphaned"
    """This task created one, but another task registered the pair first: that one is used."""


@dataclass(frozen=True)
class Settled:
    """The conversation a pair ends up with, and how.

    :param outcome: created, reused or orphaned.
    :param conversation_id: the conversation to use.
    :param trace_id: the ``traceId`` of the answer that created ``conversation_id`` in this task;
        ``None`` when it is another task's.
    :param orphaned_conversation_id: the conversation this task created and does not use
        (``ORPHANED`` only).
    """

    outcome: ReuseOutcome
    conversation_id: str
    trace_id: str | None = None
    orphaned_conversation_id: str | None = None

    @property
    def reused(self) -> bool:
        """Whether the conversation to use was not created by this task."""
        return self.outcome is not ReuseOutcome.CREATED


class ConversationReuse:
    """Lookup, claim and orphan handling over one registry, for the conversations one task creates.

    New conversations come as the entries to register
    (``Origin.from_context(context).registration(...)``).

    :param registry: where the conversations are kept; ``None``: no reuse (every new
        conversation is ``CREATED``).
    """

    def __init__(self, registry: ConversationRegistry | None) -> None:
        self.registry = registry

    def lookup(self, pairs: Iterable[Pair]) -> dict[Pair, Registration]:
        """Return the entry the registry keeps for each pair that has one (none without a registry)."""
        return self.registry.lookup(pairs) if self.registry is not None else {}

    def register(self, created: Sequence[Registration]) -> list[Settled]:
        """Claim ``created`` in one round trip; return each one's settlement, in the same order.

        A pair another task claimed first settles ``ORPHANED``, on that task's conversation.
        """
        kept = self._claim(created)
        return [self._settle(new, kept.get(new.pair)) for new in created]

    def reuse_or_create(self, user_id: str, agent_id: str, create: Callable[[], Registration]) -> Settled:
        """Return the conversation the registry keeps for the pair, else ``create()`` and register one."""
        kept = self.lookup([(user_id, agent_id)]).get((user_id, agent_id))
        if kept is not None:
            return Settled(ReuseOutcome.REUSED, kept.conversation_id)
        [settled] = self.register([create()])
        return settled

    def _claim(self, created: Sequence[Registration]) -> dict[Pair, Registration]:
        if self.registry is None or not created:
            return {}
        return self.registry.claim(created)

    @staticmethod
    def _settle(new: Registration, kept: Registration | None) -> Settled:
        if kept is None or kept.conversation_id == new.conversation_id:
            return Settled(ReuseOutcome.CREATED, new.conversation_id, new.trace_id)
        return Settled(
            ReuseOutcome.ORPHANED, kept.conversation_id, orphaned_conversation_id=new.conversation_id
        )
