"""A token bucket: the blast-radius limit on revocations per minute."""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    """``rate_per_minute`` tokens refill continuously up to ``burst``; time is passed in.

    >>> bucket = TokenBucket(rate_per_minute=2, burst=2)
    >>> [bucket.take(now=0.0) for _ in range(3)]
    [True, True, False]
    >>> bucket.take(now=30.0)
    True
    """

    def __init__(self, rate_per_minute: float, burst: float | None = None) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.rate_per_minute = rate_per_minute
        self.burst = burst if burst is not None else rate_per_minute
        self._tokens = self.burst
        self._last: float | None = None

    def take(self, now: float, n: float = 1.0) -> bool:
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate_per_minute / 60.0)
        self._last = now if self._last is None else max(self._last, now)
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def give_back(self, n: float = 1.0) -> None:
        """Return tokens taken for an action that then did nothing (a pre-flight check refused)."""
        self._tokens = min(self.burst, self._tokens + n)
