"""Per-API-key token bucket behind the embedded server's rate limit."""

from __future__ import annotations


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
