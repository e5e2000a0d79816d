"""What one task try sent: requests, retries, rate-limited answers, failures, and the request budget.

The hook counts every request it sends here (``RequestUsage.request()``, around the single
attempt) and reports each one as a metric (``metrics``). An operator pushes the counts as the
XCom ``aidol_usage`` at the end of every try, stamped with the try number, and sets the budget
(``max_requests``): once it is spent, the next request is not sent and raises
``AidolRequestBudgetError``.

A retry is a request sent again after the same operation failed: the hook's own retries, the
resend after a clock correction, and a batch item sent again after a rate limit.

Whoever must know what is in flight (the batch operator's journal) registers once with
``observe_sends()``; the hook reports each attempt's ``X-Request-ID`` to it with ``sending()``.
"""

from __future__ import annotations

import contextvars
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_aidol.client.endpoints import CHAT_IMAGE_PATH
from airflow_provider_aidol.exceptions import AidolDailyCapError, AidolRateLimitError, AidolRequestBudgetError
from airflow_provider_aidol.integration import metrics

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterator

    from airflow_provider_aidol.client.money import Prices
    from airflow_provider_aidol.integration.quota import DailyQuota

    SendObserver = Callable[[Hashable, str], None]

USAGE_XCOM_KEY = "aidol_usage"
"""The XCom key of a try's usage (see ``RequestUsage.as_xcom``)."""


@dataclass
class _Operation:
    """One logical request on one thread: everything after its first attempt is a retry."""

    key: Hashable | None
    sent: int = 0
    failed_before: bool = False


class RequestUsage:
    """Thread-safe request counts of one task try, and its request budget.

    :param max_requests: the most requests that may be sent (``None``: no budget).
    """

    def __init__(self, max_requests: int | None = None) -> None:
        self.max_requests = max_requests
        self.requests = 0
        self.retries = 0
        self.rate_limited = 0
        self.failed = 0
        self.refused_by_budget = 0
        self.images = 0
        self.quota: DailyQuota | None = None
        """The try's share of the key's daily caps, when the connection sets one (the operators set it)."""
        self.prices: Prices | None = None
        """What requests and images cost, when the connection says (the operators set it)."""
        self._lock = threading.Lock()
        # The operation in progress: per thread, and per asyncio task (a batch trigger's items).
        self._operation: contextvars.ContextVar[_Operation | None] = contextvars.ContextVar(
            f"aidol_usage_operation_{id(self)}", default=None
        )
        self._failed_keys: set[Hashable] = set()
        self._send_observers: list[SendObserver] = []

    @property
    def budget_reached(self) -> bool:
        """Whether a request was refused because the budget was spent."""
        return self.refused_by_budget > 0

    @property
    def remaining(self) -> int | None:
        """How many more requests the budget allows (``None``: no budget)."""
        if self.max_requests is None:
            return None
        return max(self.max_requests - self.requests, 0)

    @contextmanager
    def operation(self, key: Hashable | None = None) -> Iterator[None]:
        """Group the attempts of one logical request; nested groups join the outer one.

        :param key: names an operation that may be started again after it failed (a batch
            item resent after a rate limit), so its first attempt then counts as a retry.
        """
        if self._operation.get() is not None:
            yield
            return
        with self._lock:
            operation = _Operation(key, failed_before=key is not None and key in self._failed_keys)
        token = self._operation.set(operation)
        try:
            yield
        except BaseException:
            if key is not None:
                with self._lock:
                    self._failed_keys.add(key)
            raise
        else:
            if key is not None:
                with self._lock:
                    self._failed_keys.discard(key)
        finally:
            self._operation.reset(token)

    def observe_sends(self, observer: SendObserver) -> None:
        """Call ``observer(key, request_id)`` just before each attempt of a keyed operation is sent.

        ``key`` is the one given to ``operation()`` (a batch's ``BatchItem``); it is called from
        the sending thread, with the attempt's ``X-Request-ID``.
        """
        self._send_observers.append(observer)

    def sending(self, request_id: str) -> None:
        """Tell the observers that the current operation's attempt ``request_id`` is about to be sent."""
        operation = self._operation.get()
        if operation is None or operation.key is None:
            return
        for observer in self._send_observers:
            observer(operation.key, request_id)

    @contextmanager
    def request(self, path: str, *, rate: float | None = None) -> Iterator[None]:
        """Count one request to ``path`` sent inside the block; refuse it when the budget is spent.

        :param rate: the pace (requests/s) of the limiter that let it go, sent as a gauge.
        :raises AidolRequestBudgetError: before sending, when ``max_requests`` were sent already.
        :raises AidolDailyCapError: before sending, when the key's daily cap is reached.
        """
        endpoint = metrics.endpoint_name(path)
        operation = self._operation.get()
        retry = False
        capped: AidolDailyCapError | None = None
        with self._lock:
            if self.max_requests is not None and self.requests >= self.max_requests:
                self.refused_by_budget += 1
                refused = True
            else:
                refused = False
                try:
                    if self.quota is not None:
                        self.quota.take(path, method="POST")
                except AidolDailyCapError as refusal:
                    capped = refusal
            if not refused and capped is None:
                self.requests += 1
                self.images += path.split("?", 1)[0].endswith(CHAT_IMAGE_PATH)
                retry = operation is not None and (operation.sent > 0 or operation.failed_before)
                self.retries += retry
        if refused:
            metrics.incr(f"budget_reached.{endpoint}", endpoint=endpoint)
            raise AidolRequestBudgetError(max_requests=self.max_requests or 0, path=path)
        if capped is not None:
            metrics.incr(f"daily_cap_reached.{endpoint}", endpoint=endpoint)
            raise capped
        if operation is not None:
            operation.sent += 1
        if retry:
            metrics.incr(f"retries.{endpoint}", endpoint=endpoint)
        if rate:
            metrics.gauge("limiter.rate", rate)
        started = time.monotonic()
        error: BaseException | None = None
        try:
            yield
        except BaseException as raised:
            error = raised
            raise
        finally:
            self._record(endpoint, error, (time.monotonic() - started) * 1000)

    def _record(self, endpoint: str, error: BaseException | None, milliseconds: float) -> None:
        outcome = metrics.outcome_name(error)
        with self._lock:
            self.failed += error is not None
            self.rate_limited += isinstance(error, AidolRateLimitError)
        metrics.incr(f"request.{endpoint}.{outcome}", endpoint=endpoint, outcome=outcome)
        metrics.timing(f"request_duration.{endpoint}", milliseconds, endpoint=endpoint)
        if isinstance(error, AidolRateLimitError):
            metrics.incr(f"rate_limited.{endpoint}", endpoint=endpoint)

    def add(self, counts: dict[str, Any]) -> None:
        """Add counts made elsewhere (the image trigger's, sent back in its event)."""
        with self._lock:
            self.requests += int(counts.get("requests", 0))
            self.retries += int(counts.get("retries", 0))
            self.rate_limited += int(counts.get("rate_limited", 0))
            self.failed += int(counts.get("failed", 0))
            self.images += int(counts.get("images", 0))

    def counts(self) -> dict[str, int]:
        """Return the counts: ``requests``, ``retries``, ``rate_limited``, ``failed``."""
        with self._lock:
            return {
                "requests": self.requests,
                "retries": self.retries,
                "rate_limited": self.rate_limited,
                "failed": self.failed,
            }

    def event_counts(self) -> dict[str, int]:
        """Return what a trigger hands back in its event for ``add()``: ``counts()`` and ``images``.

        The images are what the cost at ``price_per_image`` is made of.
        """
        with self._lock:
            images = self.images
        return {**self.counts(), "images": images}

    def cost(self) -> dict[str, Any]:
        """Return what this try cost at the connection's prices: ``{cost, currency}`` (``{}`` without)."""
        if self.prices is None:
            return {}
        with self._lock:
            requests, images = self.requests, self.images
        return {"cost": self.prices.cost(requests, images), "currency": self.prices.currency}

    def as_xcom(self, try_number: int | None) -> dict[str, Any]:
        """Return the XCom ``aidol_usage`` of this try: the counts, the budget, the try number."""
        usage: dict[str, Any] = {
            "try_number": try_number,
            **self.counts(),
            "max_requests": self.max_requests,
            "budget_reached": self.budget_reached,
            **self.cost(),
        }
        if self.quota is not None:
            usage.update(self.quota.report())
        return usage
