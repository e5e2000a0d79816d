"""The embedded server's limits: the per-API-key token bucket behind its rate limit, the body size bound."""

from __future__ import annotations

MAX_BODY_BYTES = 1024 * 1024
"""The largest request body the server reads (1 MiB): every AI-DOL request body is a small JSON object."""


class TokenBucket:
    """Holds up to ``capacity`` tokens, refilled at ``rate`` tokens per second; starts full."""

    def __init__(self, rate: float, capacity: int, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self._tokens = float(capacity)
        self._updated = now

    def take(self, now: float) -> float | None:
        """Take a token at monotonic time ``now``; return None, or the seconds until one is available."""
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        return (1 - self._tokens) / self.rate
