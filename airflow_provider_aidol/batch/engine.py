"""The batch engine: many conversations created concurrently under one shared rate limiter.

Everything a batch decides lives here: checking the items, choosing the
limiter, running the items on a bounded thread pool, each item's outcome, how rate limits feed
the shared limiter, and the stop after the credentials are refused or the quota is used up.
The hook hands in the one thing it owns, as a ``ConversationSender``: a single signed, paced
create, and the connection's pace to start from.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.client.ratelimit import AdaptiveRateLimiter, RateLimiter
from airflow_provider_aidol.client.retries import is_retryable
from airflow_provider_aidol.client.validation import require_header_value, require_id
from airflow_provider_aidol.exceptions import (
    AidolAuthError,
    AidolConfigurationError,
    AidolConnectionError,
    AidolDailyCapError,
    AidolError,
    AidolLedgerUnavailableError,
    AidolQuotaExceededError,
    AidolRateLimitError,
    AidolRequestBudgetError,
    AidolRequestError,
    AidolTimeoutError,
)
from airflow_provider_aidol.outcomes import ItemOutcome, ItemStatus, NotSentReason

if TYPE_CHECKING:
    from airflow_provider_aidol.batch.options import BatchOptions
    from airflow_provider_aidol.batch.sender import ConversationSender
    from airflow_provider_aidol.client.envelope import AidolResponse

log = logging.getLogger(__name__)

_MAX_REPORTED = 10
"""How many bad items one error message lists."""
_ITEM_KEYS = frozenset({"agent_id", "user_id"})


@dataclass(frozen=True)
class BatchItem:
    """One conversation to create: its position in the input, the agent and the end user."""

    index: int
    agent_id: str
    user_id: str

    def outcome(self, status: ItemStatus, **details: Any) -> ItemOutcome:
        """Return this item's outcome: ``status`` and the ``ItemOutcome`` fields in ``details``."""
        return ItemOutcome(self.index, self.agent_id, self.user_id, status, **details)

    def created(self, conversation_id: str, trace_id: str | None) -> ItemOutcome:
        """Return the outcome of this item's conversation, created by its request."""
        return self.outcome(ItemStatus.CREATED, conversation_id=conversation_id, trace_id=trace_id)

    def failed(self, error: BaseException, status: ItemStatus = ItemStatus.FAILED) -> ItemOutcome:
        """Return the outcome of this item's request failing with ``error``."""
        # An unexpected error's text alone may not say what it is.
        text = str(error) if isinstance(error, AidolError) else f"{type(error).__name__}: {error}"
        trace_id = error.trace_id if isinstance(error, AidolRequestError) else None
        return self.outcome(status, trace_id=trace_id, error=text, error_class=type(error).__name__)


def parse_items(items: Iterable[object], *, default_user_id: str | None, conn_id: str) -> list[BatchItem]:
    """Check every item before anything is sent; raise ``AidolConfigurationError`` listing the bad ones.

    The error (a ``ValueError`` that Airflow does not retry) names each bad item by its index
    and field. Ids must pass ``require_id``: not blank, no control character or lone surrogate,
    at most ``MAX_ID_LENGTH`` characters; a ``user_id`` must also be sendable as a header.

    An item is an agent-id string or a mapping with ``agent_id`` and optionally ``user_id``
    (defaulting to the connection's ``user_id``), or an already parsed ``BatchItem``, which is
    kept as it is (with its own ``index``).
    """
    if isinstance(items, str | bytes | Mapping) or not isinstance(items, Iterable):
        raise ValueError(
            f"items must be a list of agent ids or {{'agent_id': ..., 'user_id': ...}} dicts, "
            f"got {type(items).__name__}."
        )
    parsed: list[BatchItem] = []
    problems: list[str] = []
    for index, item in enumerate(items):
        try:
            parsed.append(_parse_item(index, item, default_user_id, conn_id))
        except ValueError as problem:
            problems.append(str(problem))
    if problems:
        shown = "; ".join(problems[:_MAX_REPORTED])
        more = f" (and {len(problems) - _MAX_REPORTED} more)" if len(problems) > _MAX_REPORTED else ""
        raise AidolConfigurationError(f"{len(problems)} bad item(s), nothing was sent: {shown}{more}")
    return parsed


def _parse_item(index: int, item: object, default_user_id: str | None, conn_id: str) -> BatchItem:
    agent_id: object
    user_id: object
    if isinstance(item, BatchItem):
        require_id(f"items[{index}].agent_id", item.agent_id)
        require_header_value(f"items[{index}].user_id", require_id(f"items[{index}].user_id", item.user_id))
        return item
    if isinstance(item, str):
        agent_id, user_id = item, None
    elif isinstance(item, Mapping):
        unknown = sorted(str(key) for key in set(item) - _ITEM_KEYS)
        if unknown:
            raise ValueError(f"items[{index}] has unknown keys {unknown} (allowed: agent_id, user_id)")
        agent_id, user_id = item.get("agent_id"), item.get("user_id")
    else:
        raise ValueError(f"items[{index}] must be an agent id or a dict, got {type(item).__name__}")
    agent_id = require_id(f"items[{index}].agent_id", agent_id)
    if user_id is None:
        user_id = default_user_id
        if user_id is None:
            raise ValueError(
                f"items[{index}] has no user_id and connection {conn_id!r} has no 'user_id' extra"
            )
    name = f"items[{index}].user_id"
    return BatchItem(index, agent_id, require_header_value(name, require_id(name, user_id)))


def _first_finished(futures: Iterable[Future[Any]], count: int, *, timeout: float) -> set[Future[Any]]:
    """Wait until ``count`` of ``futures`` have finished (or all of them, or ``timeout`` s passed)."""
    deadline = time.monotonic() + timeout
    finished: set[Future[Any]] = set()
    running = set(futures)
    while running and len(finished) < count:
        left = max(deadline - time.monotonic(), 0.0)
        done, running = wait(running, timeout=left, return_when=FIRST_COMPLETED)
        finished |= done
        if not left:  # past the deadline: what has finished so far, without waiting again
            break
    return finished


class _Progress:
    """Counts outcomes and logs done / failed / rate at a steady interval, not per item."""

    def __init__(self, total: int, interval: float) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self._interval = interval
        self._started = self._last_log = time.monotonic()

    def count(self, outcome: ItemOutcome) -> None:
        self.done += 1
        self.failed += not outcome.status.succeeded

    def maybe_log(self, *, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self._last_log >= self._interval:
            self._last_log = now
            rate = self.done / max(now - self._started, 1e-9)
            log.info(
                "AI-DOL batch: %d/%d done, %d failed, %.1f conversations/s",
                self.done,
                self.total,
                self.failed,
                rate,
            )


def is_retryable_in_batch(error: AidolRequestError) -> bool:
    """Retry like the hook, except rate limits: in a batch those slow the shared limiter instead."""
    return is_retryable(error) and not isinstance(error, AidolRateLimitError)


# The errors that doom every later request of a batch, and how the items left unsent say why.
_STOPPING: tuple[tuple[type[AidolRequestError], NotSentReason], ...] = (
    (AidolRequestBudgetError, NotSentReason.REQUEST_BUDGET),
    (AidolAuthError, NotSentReason.CREDENTIALS_REFUSED),
    (AidolQuotaExceededError, NotSentReason.QUOTA_USED_UP),
    (AidolDailyCapError, NotSentReason.DAILY_CAP),
    (AidolLedgerUnavailableError, NotSentReason.LEDGER_UNAVAILABLE),
)
# Refused before they left: the item that met one is not sent either.
_REFUSED_BEFORE_SENDING = frozenset(
    {NotSentReason.REQUEST_BUDGET, NotSentReason.DAILY_CAP, NotSentReason.LEDGER_UNAVAILABLE}
)


def stop_reason(error: AidolRequestError) -> NotSentReason | None:
    """Return why ``error`` stops the batch, or ``None`` if the other items go on."""
    return next((reason for kind, reason in _STOPPING if isinstance(error, kind)), None)


def is_in_doubt(error: AidolRequestError) -> bool:
    """Return whether the server may have acted on the request although no answer said so."""
    if isinstance(error, AidolConnectionError):
        return error.request_sent
    return isinstance(error, AidolTimeoutError)


@dataclass(frozen=True)
class _Stop:
    """Why a batch stopped sending: the reason, and the error that said so."""

    reason: NotSentReason
    error: AidolRequestError

    def not_sent(self, item: BatchItem) -> ItemOutcome:
        """Return the outcome of ``item``, not sent because of this stop."""
        return item.outcome(
            ItemStatus.NOT_SENT,
            error=f"not sent: {self.error}",
            error_class=type(self.error).__name__,
            not_sent_reason=self.reason,
        )


class FatalErrorLatch:
    """Holds the first stop of a batch (bad credentials, quota used up, request budget spent)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stop: _Stop | None = None

    def record(self, reason: NotSentReason, error: AidolRequestError) -> None:
        """Keep the stop if it is the first."""
        with self._lock:
            if self.stop is None:
                self.stop = _Stop(reason, error)


class ConversationBatch:
    """One batch: its limiter chosen; ``run()`` yields every item's outcome.

    :param sender: sends each item's request (the hook), and gives the pace to start from.
    :param options: the batch's threads and fixed pace (checked when they were built); a pace of
        ``None`` is the sender's.
    """

    def __init__(self, sender: ConversationSender, options: BatchOptions) -> None:
        pacing = sender.batch_pacing
        rate = options.requests_per_second or pacing.requests_per_second
        wait_max, sleep = pacing.rate_limit_wait_max, pacing.sleep
        self.max_workers = options.max_workers
        self.limiter: RateLimiter = (
            RateLimiter(rate, max_pause=wait_max, sleep=sleep)
            if rate
            else AdaptiveRateLimiter(max_pause=wait_max, sleep=sleep)
        )
        self._sender = sender
        self._rate_limit_seconds = pacing.rate_limit_seconds
        self._fatal = FatalErrorLatch()
        self._stopped = threading.Event()

    def stop(self) -> None:
        """Send nothing more: the waves still yield the requests in flight, and no other item.

        The caller calls it when it cannot record what comes next (its registry failed): it
        drains the waves to record the requests already sent, and the items never sent are left
        for a retry.
        """
        self._stopped.set()

    def run(
        self, items: list[BatchItem], *, progress_interval: float = 10.0
    ) -> Iterator[tuple[int, ItemOutcome]]:
        """Yield ``(item.index, outcome)`` as items finish; at most ``2 * max_workers`` are in flight.

        Results come in waves (see ``run_in_waves()``).

        Memory does not grow with the batch; progress is logged every ``progress_interval`` s.
        """
        for wave in self.run_in_waves(items, progress_interval=progress_interval):
            yield from wave

    def run_in_waves(
        self, items: list[BatchItem], *, progress_interval: float = 10.0
    ) -> Iterator[list[tuple[int, ItemOutcome]]]:
        """Like ``run()``, but yield every outcome that finished since the last wave, as one list.

        No new item is handed to the pool while the caller handles a wave, so a caller that
        records each wave before asking for the next has, at any moment, at most
        ``2 * max_workers`` items whose outcome is unrecorded: if its process dies, only those can
        be in doubt. While items are left to send, a wave holds at least ``max_workers`` results
        (or what finished within ``progress_interval``), so recording each wave in one round
        trip costs at most one round trip per ``max_workers`` items.
        """
        progress = _Progress(len(items), progress_interval)
        pending: dict[Future[ItemOutcome | None], int] = {}
        queue = iter(items)
        bound = 2 * self.max_workers
        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="aidol-batch") as pool:
            try:
                left = len(items)
                while True:
                    while left and len(pending) < bound and not self._stopped.is_set():
                        item = next(queue)
                        pending[pool.submit(self._outcome, item)] = item.index
                        left -= 1
                    if not pending:
                        break
                    # While items are left to send, wait for a wave of max_workers results: the
                    # other max_workers in flight keep every worker busy meanwhile, and a caller
                    # recording each wave in one round trip makes fewer of them.
                    enough = self.max_workers if left and not self._stopped.is_set() else 1
                    finished = _first_finished(pending, enough, timeout=progress_interval)
                    results = [(pending.pop(future), future.result()) for future in finished]
                    wave = [(index, outcome) for index, outcome in results if outcome is not None]
                    for _, outcome in wave:
                        progress.count(outcome)
                    if wave:
                        yield wave
                    progress.maybe_log()
            finally:
                for future in pending:
                    future.cancel()
        progress.maybe_log(final=True)

    def _outcome(self, item: BatchItem) -> ItemOutcome | None:
        """Create one item and report its outcome; never raises. ``None``: the batch was stopped first."""
        if self._stopped.is_set():
            return None
        if self._fatal.stop is not None:
            return self._fatal.stop.not_sent(item)
        try:
            response = self._create_within_rate_limits(item)
        except AidolRequestError as error:
            return self._failed(item, error)
        except Exception as error:  # a batch reports every item's outcome, whatever went wrong
            return item.failed(error)
        return item.created(response.data["conversationId"], response.trace_id)

    def _failed(self, item: BatchItem, error: AidolRequestError) -> ItemOutcome:
        """Return the outcome of ``item``'s request failing; stop the batch if the error dooms it."""
        reason = stop_reason(error)
        if reason is not None:
            self._fatal.record(reason, error)
        if reason in _REFUSED_BEFORE_SENDING:
            return _Stop(reason, error).not_sent(item)
        return item.failed(error, ItemStatus.IN_DOUBT if is_in_doubt(error) else ItemStatus.FAILED)

    def _create_within_rate_limits(self, item: BatchItem) -> AidolResponse:
        """Create one item; rate limits feed the shared limiter instead of a private backoff.

        The item gives up once the pause before its next try would end after its time budget.
        """
        deadline = time.monotonic() + self._rate_limit_seconds
        while True:
            try:
                response = self._sender.create_batch_item(item, self.limiter, is_retryable_in_batch)
            except AidolRateLimitError as error:
                pause = self.limiter.on_rate_limited(error.retry_after)
                if time.monotonic() + pause >= deadline:
                    raise
                continue
            except AidolRequestError as error:
                if error.http_status is not None:
                    self.limiter.on_granted()
                raise
            self.limiter.on_granted()
            return response
