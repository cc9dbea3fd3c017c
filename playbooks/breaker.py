"""A circuit breaker per target endpoint: stop hammering a server that keeps failing.

closed --(``failure_threshold`` consecutive failures)--> open --(``reset_after`` s)-->
half-open: one trial call; success closes, failure re-opens.

A call may carry several actions (alerts batched into one POST): their failures name
that call as their ``cause`` and count once.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from aisoar.errors import CircuitOpen

__all__ = ["Breakers", "CircuitBreaker"]

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(self, endpoint: str, *, failure_threshold: int = 5, reset_after: float = 60.0) -> None:
        self.endpoint = endpoint
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._failures = 0
        self._opened_at: float | None = None
        self._counted: deque[object] = deque(maxlen=64)  # causes already counted (a few batches in flight)

    def state(self, now: float) -> State:
        if self._opened_at is None:
            return "closed"
        return "half_open" if now - self._opened_at >= self.reset_after else "open"

    def before_call(self, now: float, *, action: str | None = None, target: str | None = None) -> None:
        """Raise :class:`CircuitOpen` when calls are not allowed now."""
        if self.state(now) == "open":
            raise CircuitOpen(f"circuit open for {self.endpoint} after {self._failures} failures",
                              action=action, target=target)

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None

    def failure(self, now: float, cause: object | None = None) -> None:
        """Count one failed call; ``cause`` (the failed batch) already counted counts nothing more."""
        if cause is not None:
            if any(c is cause for c in self._counted):
                return
            self._counted.append(cause)
        self._failures += 1
        if self._failures >= self.failure_threshold or self._opened_at is not None:
            self._opened_at = now  # (re-)open; a failed half-open trial re-opens


class Breakers:
    """One :class:`CircuitBreaker` per endpoint, created on first use."""

    def __init__(self, *, failure_threshold: int = 5, reset_after: float = 60.0) -> None:
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._by_endpoint: dict[str, CircuitBreaker] = {}

    def __getitem__(self, endpoint: str) -> CircuitBreaker:
        breaker = self._by_endpoint.get(endpoint)
        if breaker is None:
            breaker = self._by_endpoint[endpoint] = CircuitBreaker(
                endpoint, failure_threshold=self.failure_threshold, reset_after=self.reset_after)
        return breaker
