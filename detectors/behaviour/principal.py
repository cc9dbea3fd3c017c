"""Online anomaly scoring of principals (users, agents, service credentials) on their LLM calls."""

from __future__ import annotations

import functools
import math
import re

from aisoar.events import PromptEvent
from aisoar.findings import Evidence, Finding, finding_id
from detectors.base import PromptDetector, prompt_entities
from detectors.behaviour._hst import HalfSpaceTrees
from detectors.state import SlotStore

__all__ = ["FEATURES", "PrincipalAnomalyDetector", "is_refusal"]

#: Features judged against each principal's own baseline (log1p for the heavy-tailed ones).
FEATURES = ("requests_per_min", "input_tokens", "output_tokens", "prompt_chars", "distinct_models",
            "refusal_ratio")
_LABELS = ("requests/min", "input tokens", "output tokens", "prompt chars", "distinct models",
           "refusal/error ratio")
_LOG = (True, True, True, True, False, False)
_FLOOR = (0.25, 0.25, 0.25, 0.25, 0.5, 0.05)  # minimum sd, in feature units: no z of 50 on a constant
_NF = len(FEATURES)
_FLOOR2 = tuple(f**2 for f in _FLOOR)
_SLOTS = 6  # recent distinct models remembered per principal
_HST_FEATURES = (*FEATURES, "hour_deviation", "hour_sin", "hour_cos")
_TAU = 2 * math.pi / 24

# A principal's row in the shared store (see the class docstring): 160 bytes. Times and the
# decayed rate stay float64; the EW moments of features that are log1p'd or small, and the
# hour's circular mean, fit float32 (their sd has a floor far above float32's resolution).
_FIELDS = (
    ("n", "I"), ("t", "d"), ("rate", "d"), ("alarm", "d"), ("refuse", "f"), ("hsin", "f"), ("hcos", "f"),
    *((f"mean_{f}", "f") for f in FEATURES), *((f"sq_{f}", "f") for f in FEATURES),
    *(field for i in range(_SLOTS) for field in ((f"model{i}", "I"), (f"model{i}_seen", "d"))),
)
_INIT = tuple(-math.inf if name == "alarm" else 0 if code == "I" else 0.0 for name, code in _FIELDS)

_REFUSAL = re.compile(
    r"\s*(?:i'?m sorry|i am sorry|sorry, (?:but )?i can|i can(?:no|')t (?:help|assist|comply|provide)"
    r"|i cannot|i won'?t be able|as an ai\b|i'?m not able to|i am unable|i'?m unable)",
    re.IGNORECASE,
)


def is_refusal(event: PromptEvent) -> bool:
    """A refusal or an empty answer (an error) from the model: what a prober or a broken
    automation produces in bulk."""
    if not event.response:
        return event.output_tokens == 0
    return _REFUSAL.match(event.response, 0, 200) is not None


@functools.lru_cache(maxsize=4096)  # a pure function of the few model names
def _model_hash(model: str) -> int:
    """FNV-1a, 32 bits, never 0 (0 marks an empty slot); collisions only merge two models."""
    h = 2166136261
    for ch in model.encode():
        h = ((h ^ ch) * 16777619) & 0xFFFFFFFF
    return h or 1


class PrincipalAnomalyDetector(PromptDetector):
    """``behaviour.anomalous_principal``: a principal suddenly behaving unlike itself.

    Per principal (credential, else user) the detector keeps exponentially weighted means and
    variances (river's ``stats.EWMean``/``EWVar`` formulas) of six features: requests per
    minute in an event-time window (an exponentially decayed count with time constant
    ``rate_window``, O(1) memory instead of a deque of timestamps), input and output tokens,
    prompt length, distinct models in the last ``models_window`` seconds and the refusal/error
    ratio; plus the principal's usual hour of day (circular mean of sin/cos).

    Each event becomes a vector in [0, 1]: the six features as z-scores against the principal's
    own baseline squashed by ``0.5 + 0.5 tanh(z / 4)``, the hour's distance from the principal's
    habit, and the hour of day as sin/cos. One **shared** river ``HalfSpaceTrees`` scores that
    vector (so "unlike itself" is learned across the population) and learns from every
    ``learn_every``-th vector; only events that pass the z-gate below are scored. A finding
    needs both the HST score >= ``threshold`` and one feature at least ``min_z`` sigmas from the
    principal's baseline (which also names the cause in the evidence); a principal's first
    ``warmup`` events never alarm; one finding per principal per ``cooldown`` seconds.

    Why not one HalfSpaceTrees per principal: a 10-tree, height-8 HST pickles to ~170 KB, so a
    million principals would need ~170 GB. The state here is one 160-byte row of a
    :class:`~detectors.state.SlotStore` (shared with the other per-principal detectors, bounded
    by capacity and an event-time TTL), and the shared trees learn a window at a time in numpy
    (:class:`~detectors.behaviour._hst.HalfSpaceTrees`, same trees and scores as river's).

    ATLAS AML.T0012 Valid Accounts: a sudden change of a principal's behaviour is the classic
    sign of a stolen credential. No OWASP LLM id applies to the behaviour itself.

    Parameters
    ----------
    threshold
        HalfSpaceTrees score (0..1) at or above which an event may alarm.
    min_z
        At least one feature must be this many sigmas from the principal's baseline.
    warmup
        Events per principal before it may alarm (its baseline is being learned).
    alpha
        Fading factor of the per-principal EW mean/variance.
    rate_window, models_window
        Time constants (seconds) of the request-rate and distinct-model windows.
    cooldown
        Seconds between two findings for the same principal.
    n_trees, height, window_size, seed
        The shared HalfSpaceTrees.
    learn_every
        The HST learns from one post-warm-up event in this many (it is the costly part; the
        population's distribution is learned as well from a regular subsample).
    capacity, ttl
        Bounds of the per-principal store (ttl in event-time seconds) when no ``store`` is given.
    store
        A per-principal store shared with other detectors (its capacity and ttl apply).

    Examples
    --------
    >>> import random
    >>> from datetime import datetime, timedelta, timezone
    >>> from aisoar.events import PromptEvent
    >>> rng = random.Random(1)
    >>> t0 = datetime(2026, 11, 25, 9, tzinfo=timezone.utc)
    >>> detector = PrincipalAnomalyDetector()
    >>> def call(i, user, seconds, tokens):
    ...     return PromptEvent(schema_version=1, event_id=f"e{i}", user_id=user, session_id="s",
    ...         timestamp=t0 + timedelta(seconds=seconds), server_address="api.openai.com",
    ...         provider="openai", request_model="gpt-4o", input_tokens=tokens,
    ...         output_tokens=tokens // 2, prompt="x" * (tokens * 4), response="ok")
    >>> for i in range(4000):  # 20 users, one call every ~2 minutes each
    ...     user = f"u{i % 20}"
    ...     tokens = 9000 if (user == "u7" and i >= 3800) else rng.randint(200, 400)
    ...     for f in detector.check(call(i, user, 6 * i + rng.random(), tokens)):
    ...         print(f"{f.rule_id} {f.entities.user_id} at index {i}: {f.evidence[0].detail}")
    behaviour.anomalous_principal u7 at index 3807: prompt chars 36000 (baseline 1101, z +13.9)
    """

    name = "behaviour.principal"
    version = "1.0.0"

    def __init__(
        self,
        threshold: float = 0.65,
        min_z: float = 5.0,
        warmup: int = 30,
        alpha: float = 0.05,
        rate_window: float = 60.0,
        models_window: float = 3600.0,
        cooldown: float = 3600.0,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        seed: int = 42,
        learn_every: int = 4,
        capacity: int = 1_000_000,
        ttl: float = 7 * 24 * 3600.0,
        store: SlotStore | None = None,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if learn_every < 1:
            raise ValueError(f"learn_every must be >= 1, got {learn_every}")
        self.threshold = threshold
        self.min_z = min_z
        self.warmup = warmup
        self.alpha = alpha
        self.rate_window = rate_window
        self.models_window = models_window
        self.cooldown = cooldown
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed
        self.learn_every = learn_every
        self.capacity = capacity
        self.ttl = ttl
        self.store = store
        self._reset()

    def _reset(self) -> None:
        self._states = self.store if self.store is not None else SlotStore(self.capacity, self.ttl)
        self._rows = self._states.table(_FIELDS, _INIT)
        self._hst = HalfSpaceTrees(_HST_FEATURES, n_trees=self.n_trees, height=self.height,
                                   window_size=self.window_size, seed=self.seed)
        self._seen = 0  # post-warm-up events, for the HST's learning subsample

    def row(self, principal: str) -> dict[str, float] | None:
        """A principal's state by field name (for inspection), or ``None``."""
        slot = self._states.find(principal)
        return None if slot < 0 else self._rows.row(slot)

    def check(self, event: PromptEvent) -> list[Finding]:
        # The six features are spelled out (v0..v5, mean m0..m5, mean square q0..q5) rather than
        # looped over: this runs for every prompt, and on Python 3.11 a comprehension per vector
        # cost more than the arithmetic.
        now = event.timestamp.timestamp()
        rows = self._rows
        offset = self._states.slot(event.principal, now) * rows.size
        (n, t, rate, alarm, refuse, hsin, hcos, m0, m1, m2, m3, m4, m5, q0, q1, q2, q3, q4, q5,
         *models) = rows.unpack(rows.buffer, offset)
        first = n == 0
        # Requests per window: an exponentially decayed count.
        rate = rate * math.exp(-(0.0 if first else max(0.0, now - t)) / self.rate_window) + 1.0
        t = now if first else max(now, t)
        # Distinct models: a few (hash, last seen) slots; the least recent slot is recycled.
        hashes, seen = models[::2], models[1::2]
        h = _model_hash(event.request_model)
        horizon = max(now - self.models_window, 1e-300)  # empty slots have seen 0
        if h in hashes:
            i = hashes.index(h)
            seen[i] = max(now, seen[i])
            distinct = 0
        else:
            i = seen.index(min(seen))
            distinct = 1 if seen[i] >= horizon else 0  # the recycled slot's old model still counts
            hashes[i], seen[i] = h, max(now, 1e-9)
        for x in seen:
            if x >= horizon:
                distinct += 1
        distinct = min(distinct, _SLOTS)
        refused = 1.0 if is_refusal(event) else 0.0
        refuse = refused if first else 0.8 * refuse + 0.2 * refused
        v0, v1, v2 = math.log1p(rate), math.log1p(event.input_tokens), math.log1p(event.output_tokens)
        v3, v4, v5 = math.log1p(len(event.prompt)), float(distinct), refuse
        hour = (now % 86400.0) / 3600.0
        hs, hc = math.sin(_TAU * hour), math.cos(_TAU * hour)
        findings: list[Finding] = []
        anomalous = False
        if n >= self.warmup:
            f0, f1, f2, f3, f4, f5 = _FLOOR2
            sqrt = math.sqrt
            zs = ((v0 - m0) / sqrt(max(q0 - m0 * m0, f0)), (v1 - m1) / sqrt(max(q1 - m1 * m1, f1)),
                  (v2 - m2) / sqrt(max(q2 - m2 * m2, f2)), (v3 - m3) / sqrt(max(q3 - m3 * m3, f3)),
                  (v4 - m4) / sqrt(max(q4 - m4 * m4, f4)), (v5 - m5) / sqrt(max(q5 - m5 * m5, f5)))
            anomalous = max(max(zs), -min(zs)) >= self.min_z
            self._seen += 1
            # Score only what the z-gate lets through (scoring walks the trees in Python) and
            # learn the population from one post-warm-up event in `learn_every`.
            learn = self._seen % self.learn_every == 0
            due = anomalous and now - alarm >= self.cooldown
            if learn or due:
                norm = math.hypot(hsin, hcos)
                # 0 = at the usual hour, 1 = opposite; scaled by how regular the principal's hours are.
                hour_dev = 0.5 * (norm - (hs * hsin + hc * hcos)) if norm > 0 else 0.0
                x = [0.5 + 0.5 * math.tanh(z / 4.0) for z in zs]
                x += (hour_dev, 0.5 + 0.5 * hs, 0.5 + 0.5 * hc)
                if due:
                    score = self._hst.score_one(x)
                    if score >= self.threshold:
                        alarm = now
                        findings.append(self._finding(event, (m0, m1, m2, m3, m4, m5),
                                                      (v0, v1, v2, v3, v4, v5), zs, score))
                if learn:
                    self._hst.learn_one(x)
        # Learn the principal's baseline (slower while it looks anomalous, so a burst does not
        # instantly become its own normal).
        if first:
            m0, m1, m2, m3, m4, m5 = v0, v1, v2, v3, v4, v5
            q0, q1, q2, q3, q4, q5 = v0 * v0, v1 * v1, v2 * v2, v3 * v3, v4 * v4, v5 * v5
            hsin, hcos = hs, hc
        else:
            a = self.alpha / 10 if anomalous else self.alpha
            b = 1 - a
            m0, m1, m2, m3, m4, m5 = (b * m0 + a * v0, b * m1 + a * v1, b * m2 + a * v2, b * m3 + a * v3,
                                      b * m4 + a * v4, b * m5 + a * v5)
            q0, q1, q2, q3, q4, q5 = (b * q0 + a * v0 * v0, b * q1 + a * v1 * v1, b * q2 + a * v2 * v2,
                                      b * q3 + a * v3 * v3, b * q4 + a * v4 * v4, b * q5 + a * v5 * v5)
            hsin, hcos = b * hsin + a * hs, b * hcos + a * hc
        models[::2], models[1::2] = hashes, seen
        rows.pack(rows.buffer, offset, min(n + 1, 0xFFFFFFFF), t, rate, alarm, refuse, hsin, hcos,
                  m0, m1, m2, m3, m4, m5, q0, q1, q2, q3, q4, q5, *models)
        return findings

    def _finding(self, event: PromptEvent, means: tuple[float, ...], values: tuple[float, ...],
                 zs: tuple[float, ...], score: float) -> Finding:
        order = sorted(range(_NF), key=lambda f: -abs(zs[f]))
        evidence: list[Evidence] = []
        for f in order[:3]:
            if abs(zs[f]) < 2.0 and evidence:
                break
            value, base = values[f], means[f]
            if _LOG[f]:
                value, base = math.expm1(value), math.expm1(base)
            fmt = ".2f" if f >= 4 or f == 0 else ".0f"
            evidence.append(Evidence(
                field=FEATURES[f],
                detail=f"{_LABELS[f]} {value:{fmt}} (baseline {base:{fmt}}, z {zs[f]:+.1f})",
            ))
        top = abs(zs[order[0]])
        return Finding(
            id=finding_id(event.event_id, "behaviour.anomalous_principal"),
            rule_id="behaviour.anomalous_principal",
            rule_name="Principal behaves unlike its own baseline",
            category="behaviour",
            severity="high" if top >= 2 * self.min_z and score >= 0.9 else "medium",
            confidence=round(min(0.99, score), 3),
            timestamp=event.timestamp,
            event_id=event.event_id,
            event_kind="prompt",
            entities=prompt_entities(event),
            detector=self.name,
            detector_version=self.version,
            evidence=tuple(evidence),
            atlas=("AML.T0012",),
            description=f"{event.principal} deviates from its baseline "
                        f"(HalfSpaceTrees score {score:.2f}, max |z| {top:.1f})",
            score=round(score, 4),
        )
