"""What a batch needs from whoever sends its requests: a pace to start from and one paced create.

``AidolHook`` is the sender in the provider; a test can hand the batch any object with these two
members instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from airflow_provider_aidol.client.validation import MAX_SECONDS

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_aidol.batch.engine import BatchItem
    from airflow_provider_aidol.client.envelope import AidolResponse
    from airflow_provider_aidol.client.ratelimit import RateLimiter
    from airflow_provider_aidol.exceptions import AidolRequestError


@dataclass(frozen=True)
class SenderPacing:
    """The sender's settings a batch paces itself by (an ``aidol`` connection's, for the hook).

    :param requests_per_second: the pace when the batch names none; ``None``: adaptive (it slows
        to the rate the server grants when rate-limited, then probes upward).
    :param rate_limit_seconds: how long one item keeps waiting out rate limits before it fails
        (the connection's ``retry_max_seconds``): no pause that would end later is waited out.
    :param rate_limit_wait_max: the longest pause one ``Retry-After`` causes (the connection's
        ``retry_wait_max``).
    :param sleep: how the batch's limiter waits.
    """

    requests_per_second: float | None
    rate_limit_seconds: float
    rate_limit_wait_max: float = MAX_SECONDS
    sleep: Callable[[float], None] = time.sleep


class ConversationSender(Protocol):
    """Sends a batch's requests: ``AidolHook`` implements it."""

    @property
    def batch_pacing(self) -> SenderPacing:
        """The pace and rate-limit waits a batch over this sender starts from."""
        ...

    def create_batch_item(
        self, item: BatchItem, limiter: RateLimiter, retry_if: Callable[[AidolRequestError], bool]
    ) -> AidolResponse:
        """Create ``item``'s conversation: paced by ``limiter``, retried only as ``retry_if`` allows.

        Return the answer carrying ``data.conversationId``; raise the ``AidolRequestError`` of a failure.
        """
        ...
