"""Client-side pacing of requests, shared by every thread that uses one limiter."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from airflow_provider_aidol.validation import MAX_SECONDS, require_rate

if TYPE_CHECKING:
    from collections.abc import Callable


class RateLimiter:
    """Space requests at least ``1 / rate`` seconds apart, however many threads ask.

    Each caller reserves the next free slot under a lock and sleeps outside it, so waiting
    threads never block each other's bookkeeping. A server's ``Retry-After`` pauses everyone,
    for at most ``max_pause`` seconds.

    :param rate: requests per second; ``None`` means no pacing.
    :param max_pause: the longest pause a ``Retry-After`` can cause (the connection's
        ``retry_wait_max``); the server decides it, so it is capped.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        max_pause: float = MAX_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = None if rate is None else require_rate("rate", rate, unit=" of requests per second")
        if (
            isinstance(max_pause, bool)
            or not isinstance(max_pause, int | float)
            or not 0 <= max_pause <= MAX_SECONDS
        ):
            raise ValueError(
                f"max_pause must be a number of seconds from 0 to {MAX_SECONDS:g}, got {max_pause!r}."
            )
        self._max_pause = max_pause
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = float("-inf")

    @property
    def rate(self) -> float | None:
        """The current pace in requests per second (``None``: unpaced)."""
        return self._rate

    def acquire(self) -> None:
        """Block until this caller's slot comes."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + (1 / self._rate if self._rate else 0.0)
        if slot > now:
            self._sleep(slot - now)

    def on_granted(self) -> None:
        """Note that the server accepted a request (any answer but a rate limit)."""

    def on_rate_limited(self, retry_after: float | None = None) -> float:
        """Note a rate-limit answer; ``retry_after`` seconds (capped) pause every caller.

        Return the pause: seconds from now until the next slot. A ``retry_after`` that is not a
        finite number of seconds >= 0 is no hint.
        """
        with self._lock:
            now = self._clock()
            if isinstance(retry_after, int | float) and 0 < retry_after < math.inf:
                self._next_slot = max(self._next_slot, now + min(retry_after, self._max_pause))
            return max(0.0, self._next_slot - now)


class AdaptiveRateLimiter(RateLimiter):
    """Unpaced until the server says "too many"; then the pace the server grants, probing upward.

    On a rate-limit answer the pace drops to the rate of recent granted requests (measured over
    ``window`` seconds) times ``backoff``. After ``probe_interval`` seconds without one, it
    rises by ``probe_step`` per interval, so a higher server limit is found again.
    """

    #: Shortest span the granted rate is measured over, so a first burst does not read as huge.
    MIN_SPAN = 0.1

    def __init__(
        self,
        *,
        window: float = 1.0,
        probe_interval: float = 0.5,
        probe_step: float = 1.1,
        backoff: float = 0.95,
        min_rate: float = 1.0,
        max_pause: float = MAX_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(None, max_pause=max_pause, clock=clock, sleep=sleep)
        self._window = window
        self._probe_interval = probe_interval
        self._probe_step = probe_step
        self._backoff = backoff
        self._min_rate = min_rate
        self._granted: deque[float] = deque()
        self._started: float | None = None
        self._last_change = float("-inf")

    def acquire(self) -> None:
        """Block until this caller's slot comes (no wait while unpaced)."""
        if self._started is None:
            with self._lock:
                if self._started is None:
                    self._started = self._clock()
        super().acquire()

    def on_granted(self) -> None:
        """Count a granted request; raise the pace if no rate limit was seen for a while."""
        with self._lock:
            now = self._clock()
            self._granted.append(now)
            self._forget_before(now - self._window)
            if self._rate is not None and now - self._last_change >= self._probe_interval:
                self._rate *= self._probe_step
                self._last_change = now

    def on_rate_limited(self, retry_after: float | None = None) -> float:
        """Slow to the rate the server granted recently; return the pause (see ``RateLimiter``)."""
        with self._lock:
            now = self._clock()
            self._forget_before(now - self._window)
            started = now if self._started is None else self._started
            span = max(min(self._window, now - started), self.MIN_SPAN)
            granted = max(len(self._granted) / span * self._backoff, self._min_rate)
            self._rate = granted
            self._last_change = now
        return super().on_rate_limited(retry_after)

    def _forget_before(self, moment: float) -> None:
        while self._granted and self._granted[0] < moment:
            self._granted.popleft()
