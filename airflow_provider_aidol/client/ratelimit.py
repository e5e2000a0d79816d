"""Client-side pacing of requests, shared by every thread that uses one limiter."""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from airflow_provider_aidol.client.validation import MAX_SECONDS, require_rate

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
        wait = self._reserve()
        if wait > 0:
            self._sleep(wait)

    async def acquire_async(self) -> None:
        """Wait (without blocking the event loop) until this caller's slot comes."""
        wait = self._reserve()
        if wait > 0:
            await asyncio.sleep(wait)

    def _reserve(self) -> float:
        """Reserve the next free slot; return the seconds until it comes."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next_slot)
            self._next_slot = slot + (1 / self._rate if self._rate else 0.0)
        return slot - now

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
    """Unpaced until the server says "too many"; then additive increase, multiplicative decrease.

    Several tasks sharing one API key each run their own limiter and see nothing but their own
    answers, so the controller is AIMD, the rule that makes independent senders converge to
    equal shares of a common limit (Chiu and Jain, 1989):

    - **Start**: unpaced. The first rate-limit answer sets the pace to the rate granted over the
      last ``window`` seconds times ``decrease``, then the pace grows by a factor of *e* every
      ``probe_time`` seconds until the next rate-limit answer (a quick search from a rough
      first estimate).
    - **Steady**: every second without a rate-limit answer adds ``increase`` requests per second
      (the same step for every sharer, which is what evens out their shares; at most the pace
      itself per second, so a tiny limit is not overrun); a rate-limit answer multiplies the pace
      by ``decrease``.
    - Only answers to requests sent at the current pace count: rate-limit answers to requests
      that were already on their way when the pace dropped say nothing new, so one overshoot
      slows the pace once, not once per request in flight.

    The wait for the next request is measured from the previous one when a caller asks, so a
    faster pace takes effect for callers already waiting, after at most one old interval.
    Constants and measurements: docs/batches.md, section "Rate limits".
    """

    MIN_SPAN = 0.1
    """Shortest span the first granted rate is measured over, so a first burst does not read as huge."""
    MAX_WAITS = 1000
    """Bound on one caller's waits (it loses the race for a slot to another caller at most this often)."""
    MAX_STEP_SECONDS = 1.0
    """Longest gap between answers that counts towards one increase, so a pause does not jump the pace."""

    def __init__(
        self,
        *,
        decrease: float = 0.8,
        increase: float = 1.0,
        probe_time: float = 0.25,
        window: float = 1.0,
        min_rate: float = 1.0,
        max_pause: float = MAX_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(None, max_pause=max_pause, clock=clock, sleep=sleep)
        self._decrease = decrease
        self._increase = increase
        self._probe_time = probe_time
        self._window = window
        self._min_rate = min_rate
        self._granted: deque[float] = deque()
        self._started: float | None = None
        self._probing = False
        self._last_step = float("-inf")
        self._epoch = 0
        # The epoch each caller's last slot was claimed in: per thread, and per asyncio task.
        self._caller_epoch: contextvars.ContextVar[int] = contextvars.ContextVar(
            f"aidol_limiter_epoch_{id(self)}"
        )

    def acquire(self) -> None:
        """Block until the next request may go (no wait while unpaced)."""
        for _ in range(self.MAX_WAITS):
            wait = self._claim()
            if wait <= 0:
                return
            self._sleep(wait)

    async def acquire_async(self) -> None:
        """Wait (without blocking the event loop) until the next request may go."""
        for _ in range(self.MAX_WAITS):
            wait = self._claim()
            if wait <= 0:
                return
            await asyncio.sleep(wait)

    def _claim(self) -> float:
        """Take the next slot if it is due and return 0; else return the seconds until it is."""
        with self._lock:
            now = self._clock()
            if self._started is None:
                self._started = now
            self._grow(now)
            due = self._next_slot
            if due > now:
                return due - now
            interval = 1 / self._rate if self._rate else 0.0
            # Keep the pace through a late wake-up, but bank no idle time as a burst.
            self._next_slot = max(due, now - interval) + interval
            self._caller_epoch.set(self._epoch)
            return 0.0

    def on_granted(self) -> None:
        """Count a granted request; raise the pace for the time since the last step."""
        with self._lock:
            now = self._clock()
            if self._rate is None:
                self._granted.append(now)
                self._forget_before(now - self._window)
                return
            self._grow(now)

    def _grow(self, now: float) -> None:
        """Raise the pace for the time since the last step: exponentially while probing, else additively."""
        if self._rate is None:
            return
        seconds = min(now - self._last_step, self.MAX_STEP_SECONDS)
        self._last_step = now
        if self._probing:
            self._rate *= math.exp(seconds / self._probe_time)
        else:
            self._rate += min(self._increase, self._rate) * seconds

    def on_rate_limited(self, retry_after: float | None = None) -> float:
        """Slow down: to the granted rate on the first one, by ``decrease`` after that.

        Return the pause (see ``RateLimiter.on_rate_limited``).
        """
        with self._lock:
            now = self._clock()
            if self._rate is None:
                self._forget_before(now - self._window)
                started = now if self._started is None else self._started
                span = max(min(self._window, now - started), self.MIN_SPAN)
                self._rate = max(len(self._granted) / span * self._decrease, self._min_rate)
                self._granted.clear()
                self._probing = True
                self._slowed_down(now)
            elif self._caller_epoch.get(self._epoch) == self._epoch:
                self._rate = max(self._rate * self._decrease, self._min_rate)
                self._probing = False
                self._slowed_down(now)
        return super().on_rate_limited(retry_after)

    def _slowed_down(self, now: float) -> None:
        """Start a new epoch; the next request waits one interval at the new pace."""
        assert self._rate is not None
        self._epoch += 1
        self._last_step = now
        self._next_slot = max(self._next_slot, now + 1 / self._rate)

    def _forget_before(self, moment: float) -> None:
        while self._granted and self._granted[0] < moment:
            self._granted.popleft()
