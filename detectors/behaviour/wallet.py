"""Denial of wallet: a principal's token spend spiking against its own baseline."""

from __future__ import annotations

import math

from aisoar.events import PromptEvent
from aisoar.findings import Evidence, Finding, finding_id
from detectors.base import PromptDetector, prompt_entities
from detectors.state import SlotStore

__all__ = ["DenialOfWalletDetector"]

# A principal's row in the shared store: 44 bytes.
_FIELDS = (("start", "d"), ("tokens", "d"), ("n", "I"), ("mean", "d"), ("sq", "d"), ("alarm", "d"))
_INIT = (-math.inf, 0.0, 0, 0.0, 0.0, -math.inf)


class DenialOfWalletDetector(PromptDetector):
    """``behaviour.denial_of_wallet``: tokens (input + output) spent by one principal in the
    current event-time window far above what that principal usually spends per window.

    Windows are tumbling, ``window`` seconds of event time. When a window closes its total
    updates the principal's exponentially weighted mean and variance (river's ``EWMean`` /
    ``EWVar`` formulas, fading factor ``alpha``; windows in which the principal was idle are not
    counted, so the baseline is "a typical active window"). While a window is open its running
    total is compared with ``max(mean + k * sd, ratio * mean, min_tokens)`` and alarms as soon
    as it crosses, not when the window ends. A principal needs ``min_windows`` closed windows
    before it is judged; ``absolute_limit`` (optional) alarms whatever the baseline, which also
    covers brand-new credentials. One finding per principal per window. A window that alarmed
    updates the baseline with a tenth of the weight, so an attack does not become the norm.

    State: a 44-byte row per principal in a :class:`~detectors.state.SlotStore` (shared with
    the other per-principal detectors). Mapped to OWASP LLM10:2025 Unbounded Consumption and ATLAS
    AML.T0034 Cost Harvesting.

    Parameters
    ----------
    window
        Window length in seconds.
    alpha
        Fading factor of the baseline.
    k, ratio, min_tokens
        Alarm when the window's total exceeds all three of ``mean + k sd``, ``ratio * mean`` and
        ``min_tokens``.
    min_windows
        Closed active windows needed before a principal can alarm on its baseline.
    absolute_limit
        Tokens per window that always alarm (``None``: off).
    capacity, ttl
        Bounds of the per-principal store (ttl in event-time seconds) when no ``store`` is given.
    store
        A per-principal store shared with other detectors (its capacity and ttl apply).

    Examples
    --------
    >>> import random
    >>> from datetime import datetime, timedelta, timezone
    >>> from aisoar.events import PromptEvent
    >>> rng = random.Random(3)
    >>> t0 = datetime(2026, 11, 25, tzinfo=timezone.utc)
    >>> detector = DenialOfWalletDetector()
    >>> for i in range(1920):  # one call every 3 minutes for 95 hours, then an hour of huge calls
    ...     attack = i >= 1900
    ...     event = PromptEvent(schema_version=1, event_id=f"e{i}", user_id="bob", session_id="s",
    ...         timestamp=t0 + timedelta(minutes=3 * i), server_address="api.openai.com",
    ...         provider="openai", request_model="gpt-4o",
    ...         input_tokens=30000 if attack else rng.randint(500, 1500), output_tokens=rng.randint(100, 500))
    ...     for f in detector.check(event):
    ...         print(f"{f.rule_id} at index {i}: {f.evidence[0].detail}")
    behaviour.denial_of_wallet at index 1904: 151538 tokens this window (baseline 25529 +- 1685, limit 127643)
    """

    name = "behaviour.wallet"
    version = "1.0.0"

    def __init__(
        self,
        window: float = 3600.0,
        alpha: float = 0.1,
        k: float = 6.0,
        ratio: float = 5.0,
        min_tokens: float = 50_000.0,
        min_windows: int = 5,
        absolute_limit: float | None = None,
        capacity: int = 1_000_000,
        ttl: float = 14 * 24 * 3600.0,
        store: SlotStore | None = None,
    ) -> None:
        if window <= 0:
            raise ValueError(f"window must be > 0, got {window}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        self.window = window
        self.alpha = alpha
        self.k = k
        self.ratio = ratio
        self.min_tokens = min_tokens
        self.min_windows = min_windows
        self.absolute_limit = absolute_limit
        self.capacity = capacity
        self.ttl = ttl
        self.store = store
        self._reset()

    def _reset(self) -> None:
        self._states = self.store if self.store is not None else SlotStore(self.capacity, self.ttl)
        self._rows = self._states.table(_FIELDS, _INIT)
        # The lowest alarm level `limit` can return (it is at least min_tokens once learned, and
        # absolute_limit while learning or as a cap; no limit at all when both are off).
        self._floor = (self.min_tokens if self.absolute_limit is None
                       else min(self.min_tokens, self.absolute_limit))

    def limit(self, n: int, mean: float, sq: float) -> float | None:
        """The alarm level of a principal with ``n`` closed windows and these moments, or
        ``None`` while it is learning."""
        if n < self.min_windows:
            return self.absolute_limit
        sd = math.sqrt(max(sq - mean * mean, (0.1 * mean) ** 2))
        level = max(mean + self.k * sd, self.ratio * mean, self.min_tokens)
        return level if self.absolute_limit is None else min(level, self.absolute_limit)

    def check(self, event: PromptEvent) -> list[Finding]:
        now = event.timestamp.timestamp()
        rows = self._rows
        offset = self._states.slot(event.principal, now) * rows.size
        start, tokens, n, mean, sq, alarm = rows.unpack(rows.buffer, offset)
        window_start = now - now % self.window
        if window_start > start:
            if start != -math.inf:  # close the previous window into the baseline
                if n == 0:
                    mean, sq = tokens, tokens * tokens
                else:
                    a = self.alpha / 10 if alarm >= start else self.alpha
                    mean = (1 - a) * mean + a * tokens
                    sq = (1 - a) * sq + a * tokens * tokens
                n = min(n + 1, 0xFFFFFFFF)
            start, tokens = window_start, 0.0
        # (a late event for an older window counts in the current one: spend is spend)
        tokens += event.input_tokens + event.output_tokens
        findings: list[Finding] = []
        # No limit is below `_floor`, so most events skip computing theirs.
        if tokens > self._floor and alarm < start:
            level = self.limit(n, mean, sq)
            if level is not None and tokens > level:
                alarm = now
                findings.append(self._finding(event, tokens, n, mean, sq, level))
        rows.pack(rows.buffer, offset, start, tokens, n, mean, sq, alarm)
        return findings

    def _finding(self, event: PromptEvent, spent: float, n: int, mean: float, sq: float,
                 level: float) -> Finding:
        sd = math.sqrt(max(sq - mean * mean, 0.0))
        learned = n >= self.min_windows
        detail = (f"{spent:.0f} tokens this window (baseline {mean:.0f} +- {sd:.0f}, limit {level:.0f})"
                  if learned else f"{spent:.0f} tokens this window (absolute limit {level:.0f})")
        times = spent / mean if learned and mean > 0 else float("inf")
        return Finding(
            id=finding_id(event.event_id, "behaviour.denial_of_wallet"),
            rule_id="behaviour.denial_of_wallet",
            rule_name="Token spend spike against the principal's baseline",
            category="denial_of_wallet",
            severity="high" if times >= 10 * self.ratio or not learned else "medium",
            confidence=round(min(0.99, 0.6 + 0.04 * min(times, 10.0)), 3),
            timestamp=event.timestamp,
            event_id=event.event_id,
            event_kind="prompt",
            entities=prompt_entities(event),
            detector=self.name,
            detector_version=self.version,
            evidence=(Evidence(field="gen_ai.usage", detail=detail),),
            atlas=("AML.T0034",),
            owasp=("LLM10:2025",),
            description=f"{event.principal} spent {spent:.0f} tokens in the current "
                        f"{self.window / 60:.0f}-minute window",
            score=round(times, 3) if math.isfinite(times) else None,
        )
