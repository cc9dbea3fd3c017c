"""Online anomaly scoring of principals (users, agents, service credentials) on their LLM calls."""

# Per-event code: a conditional expression instead of the built-in max/min of two floats (a call
# costs ~0.1 us on CPython 3.11, more than the comparison).
# ruff: noqa: FURB136, PLR1730

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

# A principal's row in the shared store (see the class docstring): 161 bytes. Times and the
# decayed rate stay float64; the EW moments of features that are log1p'd or small, and the
# hour's circular mean, fit float32 (their sd has a floor far above float32's resolution).
_FIELDS = (
    ("n", "I"), ("t", "d"), ("rate", "d"), ("alarm", "d"), ("refuse", "f"), ("hsin", "f"), ("hcos", "f"),
    *((f"mean_{f}", "f") for f in FEATURES), *((f"sq_{f}", "f") for f in FEATURES),
    *((f"model{i}", "I") for i in range(_SLOTS)), *((f"model{i}_seen", "d") for i in range(_SLOTS)),
    ("streak", "B"),  # consecutive events beyond min_z (capped at 255)
)
_INIT = tuple(-math.inf if name == "alarm" else 0 if code in "BI" else 0.0 for name, code in _FIELDS)

_REFUSAL = re.compile(
    r"\s*(?:i'?m sorry|i am sorry|sorry, (?:but )?i can|i can(?:no|')t (?:help|assist|comply|provide)"
    r"|i cannot|i won'?t be able|as an ai\b|i'?m not able to|i am unable|i'?m unable)",
    re.IGNORECASE,
)


# The ASCII characters a refusal can start with (whitespace, or i/s/a in any case: the first
# letters of the phrases above); most answers start with another one and skip the regex.
_REFUSAL_STARTS = frozenset(c for c in map(chr, range(128)) if re.match(r"(?i)[\sisa]", c))


def is_refusal(event: PromptEvent) -> bool:
    """A refusal or an empty answer (an error) from the model: what a prober or a broken
    automation produces in bulk."""
    response = event.response
    if not response:
        return event.output_tokens == 0
    first = response[0]
    if first < "\x80" and first not in _REFUSAL_STARTS:
        return False
    return _REFUSAL.match(response, 0, 200) is not None


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
    principal's baseline (which also names the cause in the evidence) on ``persistence``
    consecutive events of that principal; a principal's first ``warmup`` events never alarm;
    one finding per principal per ``cooldown`` seconds.

    Why ``persistence``: one long paste or one long answer is not a change of behaviour. On the
    bench mix (real ShareGPT turns) single events raised this finding on 0.63% of benign
    prompts, 88% of them on output tokens (the model's answer length, not the principal's
    doing); a stolen credential in use keeps deviating (its rate, prompts, models), so the
    second event in a row alarms.

    Why not one HalfSpaceTrees per principal: a 10-tree, height-8 HST pickles to ~170 KB, so a
    million principals would need ~170 GB. The state here is one 161-byte row of a
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
    persistence
        ... on this many consecutive events of the principal (1: on any single event).
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
    behaviour.anomalous_principal u7 at index 3827: output tokens 4500 (baseline 140, z +11.6)
    """

    name = "behaviour.principal"
    version = "1.0.0"

    def __init__(
        self,
        threshold: float = 0.65,
        min_z: float = 5.0,
        persistence: int = 2,
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
        if not 1 <= persistence <= 255:
            raise ValueError(f"persistence must be in [1, 255], got {persistence}")
        self.threshold = threshold
        self.min_z = min_z
        self.persistence = persistence
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
        # A hair under min_z^2: d^2 < gate * var proves |d / sqrt(var)| < min_z despite rounding
        # (-1 when min_z <= 0: every event must then be judged on its z-scores).
        self._gate = self.min_z**2 * (1 - 1e-9) if self.min_z > 0 else -1.0

    def row(self, principal: str) -> dict[str, float] | None:
        """A principal's state by field name (for inspection), or ``None``."""
        slot = self._states.find(principal)
        return None if slot < 0 else self._rows.row(slot)

    def check(self, event: PromptEvent) -> list[Finding]:
        # This runs for every prompt, so it is written for CPython's speed: the row and the six
        # features are spelled out (v0..v5, mean m0..m5, mean square q0..q5, model slots h0..h5
        # last seen s0..s5) rather than looped over, and max/min of two floats are conditional
        # expressions (each built-in call cost more than the arithmetic). Every expression keeps
        # the operands and order of the plain formula, so the results are the same floats.
        now = event.timestamp.timestamp()
        rows = self._rows
        offset = self._states.slot(event.principal, now) * rows.size
        (n, t, rate, alarm, refuse, hsin, hcos, m0, m1, m2, m3, m4, m5, q0, q1, q2, q3, q4, q5,
         h0, h1, h2, h3, h4, h5, s0, s1, s2, s3, s4, s5, streak) = rows.unpack(rows.buffer, offset)
        if n == 0:
            rate, t = 1.0, now
        else:
            # Requests per window: an exponentially decayed count.
            elapsed = now - t
            rate = rate * math.exp(-(elapsed if elapsed > 0.0 else 0.0) / self.rate_window) + 1.0
            if now > t:
                t = now
        # Distinct models: a few (hash, last seen) slots; the least recent slot is recycled.
        h = _model_hash(event.request_model)
        horizon = now - self.models_window
        if 1e-300 > horizon:
            horizon = 1e-300  # empty slots have seen 0
        distinct = 0
        if h == h0:
            s0 = s0 if s0 > now else now
        elif h == h1:
            s1 = s1 if s1 > now else now
        elif h == h2:
            s2 = s2 if s2 > now else now
        elif h == h3:
            s3 = s3 if s3 > now else now
        elif h == h4:
            s4 = s4 if s4 > now else now
        elif h == h5:
            s5 = s5 if s5 > now else now
        else:
            hashes, seen = [h0, h1, h2, h3, h4, h5], [s0, s1, s2, s3, s4, s5]
            i = seen.index(min(seen))
            distinct = 1 if seen[i] >= horizon else 0  # the recycled slot's old model still counts
            hashes[i], seen[i] = h, (now if now > 1e-9 else 1e-9)
            h0, h1, h2, h3, h4, h5 = hashes
            s0, s1, s2, s3, s4, s5 = seen
        distinct += ((s0 >= horizon) + (s1 >= horizon) + (s2 >= horizon) + (s3 >= horizon)
                     + (s4 >= horizon) + (s5 >= horizon))
        if distinct > _SLOTS:
            distinct = _SLOTS
        refused = 1.0 if is_refusal(event) else 0.0
        refuse = refused if n == 0 else 0.8 * refuse + 0.2 * refused
        log1p = math.log1p
        v0, v1, v2 = log1p(rate), log1p(event.input_tokens), log1p(event.output_tokens)
        v3, v4, v5 = log1p(len(event.prompt)), float(distinct), refuse
        hour = (now % 86400.0) / 3600.0
        hs, hc = math.sin(_TAU * hour), math.cos(_TAU * hour)
        findings: list[Finding] = []
        anomalous = False
        if n >= self.warmup:
            f0, f1, f2, f3, f4, f5 = _FLOOR2
            w0, w1, w2 = q0 - m0 * m0, q1 - m1 * m1, q2 - m2 * m2
            w3, w4, w5 = q3 - m3 * m3, q4 - m4 * m4, q5 - m5 * m5
            w0, w1, w2 = (f0 if f0 > w0 else w0), (f1 if f1 > w1 else w1), (f2 if f2 > w2 else w2)
            w3, w4, w5 = (f3 if f3 > w3 else w3), (f4 if f4 > w4 else w4), (f5 if f5 > w5 else w5)
            d0, d1, d2, d3, d4, d5 = v0 - m0, v1 - m1, v2 - m2, v3 - m3, v4 - m4, v5 - m5
            self._seen += 1
            # Score only what the z-gate lets through (scoring walks the trees in Python) and
            # learn the population from one post-warm-up event in `learn_every`.
            learn = self._seen % self.learn_every == 0
            c = self._gate
            # The z-scores are needed to learn, or when the gate may open: d^2 < c w (c a hair
            # under min_z^2) proves every |z| < min_z without the six square roots.
            if learn or not (d0 * d0 < c * w0 and d1 * d1 < c * w1 and d2 * d2 < c * w2
                             and d3 * d3 < c * w3 and d4 * d4 < c * w4 and d5 * d5 < c * w5):
                sqrt = math.sqrt
                zs = (d0 / sqrt(w0), d1 / sqrt(w1), d2 / sqrt(w2), d3 / sqrt(w3), d4 / sqrt(w4),
                      d5 / sqrt(w5))
                anomalous = max(max(zs), -min(zs)) >= self.min_z
                due = anomalous and streak + 1 >= self.persistence and now - alarm >= self.cooldown
                if learn or due:
                    norm = math.hypot(hsin, hcos)
                    # 0 = at the usual hour, 1 = opposite; scaled by how regular the principal's hours are.
                    hour_dev = 0.5 * (norm - (hs * hsin + hc * hcos)) if norm > 0 else 0.0
                    tanh = math.tanh
                    z0, z1, z2, z3, z4, z5 = zs
                    x = [0.5 + 0.5 * tanh(z0 / 4.0), 0.5 + 0.5 * tanh(z1 / 4.0), 0.5 + 0.5 * tanh(z2 / 4.0),
                         0.5 + 0.5 * tanh(z3 / 4.0), 0.5 + 0.5 * tanh(z4 / 4.0), 0.5 + 0.5 * tanh(z5 / 4.0),
                         hour_dev, 0.5 + 0.5 * hs, 0.5 + 0.5 * hc]
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
        if n == 0:
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
        streak = (streak + 1 if streak < 255 else streak) if anomalous else 0
        rows.pack(rows.buffer, offset, n + 1 if n < 0xFFFFFFFF else n, t, rate, alarm, refuse, hsin, hcos,
                  m0, m1, m2, m3, m4, m5, q0, q1, q2, q3, q4, q5, h0, h1, h2, h3, h4, h5, s0, s1, s2, s3, s4, s5,
                  streak)
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
