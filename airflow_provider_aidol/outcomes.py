"""What became of one batch item, as one typed value, and how it reads as a JSON record.

The batch engine makes them; the batch operator counts, records and returns them; the hook hands
them out as records; ``AidolBatchError`` carries the failed ones and ``AidolRetryPolicy`` reads
their reasons. It sits at the base, beside ``exceptions``, so the error and the policy can hold
it without importing the batch engine.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ItemOutcome", "ItemStatus", "NotSentReason"]


class ItemStatus(StrEnum):
    """How a batch item ended: exactly one of these per item."""

    CREATED = "created"
    """This task created the conversation."""
    REUSED = "reused"
    """The conversation was there already (the registry kept it, or an earlier item of the pair)."""
    ORPHANED = "orphaned"
    """This task created one, but another task registered the pair first: that one is used."""
    FAILED = "failed"
    """The server refused or failed the request; no conversation."""
    NOT_SENT = "not_sent"
    """Never sent: the batch had stopped (see ``NotSentReason``)."""
    IN_DOUBT = "in_doubt"
    """Sent, but no answer said what happened (a read timeout, a connection dropped after
    sending): the server may have created a conversation."""

    @property
    def succeeded(self) -> bool:
        """Whether the item has a conversation to use."""
        return self in _SUCCEEDED


_SUCCEEDED = frozenset({ItemStatus.CREATED, ItemStatus.REUSED, ItemStatus.ORPHANED})


class NotSentReason(StrEnum):
    """Why a batch stopped sending (each one dooms every later request of the batch)."""

    REQUEST_BUDGET = "request_budget"
    """The task's request budget (``max_requests``) was spent."""
    CREDENTIALS_REFUSED = "credentials_refused"
    """The server refused the credentials."""
    QUOTA_USED_UP = "quota_used_up"
    """The API key's call quota is used up."""
    DAILY_CAP = "daily_cap"
    """The API key's daily cap (``max_requests_per_day``, ``max_images_per_day``) is reached."""
    LEDGER_UNAVAILABLE = "ledger_unavailable"
    """The usage ledger of the daily caps could not be reached to reserve a request."""


@dataclass(frozen=True)
class ItemOutcome:
    """One batch item's outcome.

    :param index: the item's position in the input.
    :param agent_id: the item's agent.
    :param user_id: the item's end user.
    :param status: how it ended.
    :param conversation_id: the conversation to use (``None`` unless ``status.succeeded``).
    :param trace_id: the ``traceId`` of the answer, when there was one.
    :param error: what went wrong, as text for people (never matched by code).
    :param error_class: the error's class name (for ``NOT_SENT``: the error that stopped the batch).
    :param not_sent_reason: why it was not sent (``NOT_SENT`` only).
    :param orphaned_conversation_id: the conversation created here and not used (``ORPHANED``).
    :param in_doubt_request_ids: the ``X-Request-ID`` of every send of this item whose outcome
        was never recorded (an earlier try's, or this try's attempt that got no answer): the
        server may have created a conversation for each.
    :param unregistered: the conversation was created, but the registry failed before it took
        it: a retry claims it in the registry before sending anything.
    """

    index: int
    agent_id: str
    user_id: str
    status: ItemStatus
    conversation_id: str | None = None
    trace_id: str | None = None
    error: str | None = None
    error_class: str | None = None
    not_sent_reason: NotSentReason | None = None
    orphaned_conversation_id: str | None = None
    in_doubt_request_ids: tuple[str, ...] = ()
    unregistered: bool = False

    @property
    def reused(self) -> bool:
        """Whether the conversation to use was not created by this item's request."""
        return self.status in (ItemStatus.REUSED, ItemStatus.ORPHANED)

    def as_record(self) -> dict[str, Any]:
        """Return the JSON record (XCom, JSON lines): the fields always there, the rest when set."""
        record: dict[str, Any] = {
            "index": self.index,
            "agent_id": self.agent_id,
            "user_id": self.user_id,
            "status": str(self.status),
            "conversation_id": self.conversation_id,
            "trace_id": self.trace_id,
            "error": self.error,
            "reused": self.reused,
        }
        for name in _OPTIONAL_KEYS:
            value = getattr(self, name)
            if value is not None:
                record[name] = str(value)
        if self.in_doubt_request_ids:
            record["in_doubt_request_ids"] = list(self.in_doubt_request_ids)
        if self.unregistered:
            record["unregistered"] = True
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ItemOutcome:
        """Rebuild an outcome from ``as_record()``'s record, or from an older one without ``status``."""
        known = {field.name for field in fields(cls)} - {
            "status",
            "not_sent_reason",
            "in_doubt_request_ids",
            "unregistered",
        }
        reason = record.get("not_sent_reason")
        return cls(
            **{name: record[name] for name in known if name in record},
            status=ItemStatus(record["status"]) if "status" in record else _status_of_older(record),
            not_sent_reason=NotSentReason(reason) if reason is not None else None,
            in_doubt_request_ids=_in_doubt_request_ids(record),
            unregistered=record.get("unregistered") is True,
        )


_OPTIONAL_KEYS = ("error_class", "not_sent_reason", "orphaned_conversation_id")


def _in_doubt_request_ids(record: Mapping[str, Any]) -> tuple[str, ...]:
    """Return the record's in-doubt X-Request-IDs (older records named one: ``in_doubt_request_id``)."""
    if "in_doubt_request_ids" in record:
        return tuple(str(request_id) for request_id in record["in_doubt_request_ids"])
    older = record.get("in_doubt_request_id")
    return (str(older),) if older is not None else ()


def _status_of_older(record: Mapping[str, Any]) -> ItemStatus:
    """Return the status of a record written before records had one: from its fields, not its text."""
    if not record.get("conversation_id"):
        return ItemStatus.FAILED
    if record.get("orphaned_conversation_id"):
        return ItemStatus.ORPHANED
    return ItemStatus.REUSED if record.get("reused") else ItemStatus.CREATED
