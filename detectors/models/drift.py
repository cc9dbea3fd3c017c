"""Drift per model version, and poisoning / compromised-release suspicion after a version change."""

# Per-event code: a conditional expression instead of the built-in max/min of two floats (a call
# costs ~0.1 us on CPython 3.11, more than the comparison).
# ruff: noqa: FURB136

from __future__ import annotations

import math
from typing import Any

import msgspec
from river import drift as river_drift
from river import stats

from aisoar.events import InferenceEvent
from aisoar.findings import Evidence, Finding, finding_id
from detectors.base import InferenceDetector, inference_entities
from detectors.state import EntityStore

__all__ = ["DriftDetector"]

METHODS = ("adwin", "page_hinkley")
SIGNALS = ("score", "score_spread", "latency", "error_rate", "predicted_class")
_OTHER = "\x00other"  # indicator for classes the baseline never saw


class _Continuous:
    """One continuous signal: standardised against the warm-up baseline, clipped, then fed
    to a river detector. Standardising makes one ``delta``/``threshold`` fit every model;
    clipping at ``clip`` sigmas removes the heavy tails (latency, outliers) that make
    ADWIN fire on stationary streams."""

    __slots__ = ("clip", "detector", "mean", "recent", "sd")

    def __init__(self, mean: float, sd: float, clip: float, detector: Any) -> None:
        self.mean = mean
        # A constant warm-up (sd 0) must not turn the first tiny wobble into infinite sigmas.
        self.sd = max(sd, 1e-3 * max(1.0, abs(mean)))
        self.clip = clip
        self.detector = detector
        # ADWIN's estimation still spans the old window when it fires; this says "now": an
        # exponentially weighted mean (fading 0.05, river's EWMean formula, kept inline: this
        # runs for every signal of every inference event). None until the first value.
        self.recent: float | None = None

    def update(self, x: float) -> bool:
        return self.update_z((x - self.mean) / self.sd)

    def update_z(self, z: float) -> bool:
        """Update with an already standardised value; True when the detector fired."""
        clip = self.clip
        z = clip if z > clip else (-clip if -clip > z else z)
        detector = self.detector
        detector.update(z)
        recent = self.recent
        self.recent = z if recent is None else 0.05 * z + (1 - 0.05) * recent
        return bool(detector.drift_detected)


class _Binary:
    """A 0/1 stream (error, one class) on ADWIN, with a recent rate for the evidence."""

    __slots__ = ("detector", "recent", "signal", "stream")

    def __init__(self, signal: str, detector: Any, stream: str) -> None:
        self.signal = signal
        self.stream = stream  # its key in _VersionState.binary
        self.detector = detector
        self.recent: float | None = None  # EW mean, fading 0.02 (as in _Continuous)

    def update(self, x: float) -> bool:
        # (inlined in DriftDetector._monitor's loop over the class indicators: keep them alike)
        detector = self.detector
        detector.update(x)
        recent = self.recent
        self.recent = x if recent is None else 0.02 * x + (1 - 0.02) * recent
        return bool(detector.drift_detected)


class _Baseline:
    """What a version looked like during its warm-up."""

    __slots__ = ("classes", "error_rate", "latency", "n", "score", "spread")

    def __init__(self) -> None:
        self.n = 0
        self.score: tuple[float, float] | None = None  # (mean, sd)
        self.spread: tuple[float, float] | None = None  # (mean, sd) of |z_2k+1 - z_2k| of score (pairs)
        self.latency: tuple[float, float] | None = None  # (mean, sd) of log1p(latency)
        self.error_rate = 0.0
        self.classes: dict[str, float] = {}


class _VersionState:
    __slots__ = (
        "baseline",
        "binary",
        "class_counts",
        "class_of",
        "classes",
        "errors",
        "last_alarm",
        "last_z",
        "latencies",
        "monitors",
        "n",
        "scores",
    )

    def __init__(self) -> None:
        self.n = 0
        # Warm-up buffers: at most `warmup` floats each, freed when the baseline is built.
        self.scores: list[float] | None = []
        self.latencies: list[float] | None = []
        self.errors = 0
        self.class_counts: dict[str, int] = {}
        self.baseline: _Baseline | None = None
        self.monitors: dict[str, _Continuous] = {}
        self.binary: dict[str, _Binary] = {}  # stream -> indicator monitor
        # The class indicators of `binary` in its order, and by class name (the unseen/rare
        # stream is the last one): per event one lookup instead of a key built and compared.
        self.classes: tuple[_Binary, ...] = ()
        self.class_of: dict[str, _Binary] = {}
        self.last_alarm: dict[str, float] = {}
        self.last_z: float | None = None  # first score of the current pair


class _ModelNameState:
    __slots__ = ("changed_at", "first_seen", "latest", "pending", "previous", "versions")

    def __init__(self) -> None:
        self.versions: dict[str, _Baseline | None] = {}  # last few versions, oldest first
        self.first_seen: dict[str, float] = {}  # version -> event time of the first event seen
        self.latest: str | None = None
        self.changed_at: float | None = None  # event time of the latest version's first event
        self.previous: str | None = None
        # Plain drift of the latest version while no older one is known (at most a few):
        # raised again as suspected poisoning if an older version turns up late.
        self.pending: list[tuple[Finding, str]] = []


class DriftDetector(InferenceDetector):
    """Online drift per ``model@version`` on score, score spread, latency, error rate and the
    predicted-class distribution, against a warm-up baseline of that version.

    The first ``warmup`` events of a version build its baseline (mean and standard deviation of
    the score, of ``|difference|`` of non-overlapping pairs of scores (spread) and of ``log1p(latency)``; error rate; class shares).
    Afterwards each continuous signal is standardised against it and fed to river's ``ADWIN``
    (or ``PageHinkley``); the error indicator and one indicator per baseline class (plus one
    for unseen classes) always go to ``ADWIN``, whose Hoeffding-style bound suits bounded
    0/1 streams where a fixed Page-Hinkley allowance would miss a rare-event rate rising.
    A finding is emitted once per (model version, signal) per ``cooldown`` seconds.

    Tuning (``python -m bench.quality.drift``): with ADWIN's default ``delta=0.002`` a 1-sigma
    mean shift is found after a median 47 events (p90 47) and stationary streams give ~0.2
    false alarms per 100k events, so no "two consecutive detections" confirmation is used: in
    river 0.26 ADWIN clears its whole window on the update after a detection, so a second,
    confirming detection would need a second change and only add delay.

    Poisoning / compromised release: per model name the detector remembers when the latest
    version first appeared. Drift of that version within ``poisoning_window`` seconds of its
    first event, or a baseline that already differs from the previous version's (score mean
    moved by ``release_shift`` previous-version sigmas, or class PSI >= ``release_psi``),
    gives ``model.poisoning_suspected`` (high) instead of ``model.drift`` (medium).

    Mappings: ``model.poisoning_suspected`` is ATLAS AML.T0020 Poison Training Data and
    AML.T0018 Manipulate (formerly Backdoor) AI Model, OWASP LLM04:2025 Data and Model
    Poisoning. Plain ``model.drift`` is most often benign data shift, so it carries no OWASP
    id; its adversarial reading is ATLAS AML.T0031 Erode AI Model Integrity (degrading a
    model's performance through its inputs over time), which fits better than AML.T0015
    Evade AI Model (single crafted inputs, not a distribution change).

    Parameters
    ----------
    method
        Detector for continuous signals: ``"adwin"`` or ``"page_hinkley"``.
    delta
        ADWIN significance (smaller = fewer false alarms, slower detection).
    warmup
        Events per version that build the baseline; no alarm before.
    clip
        Standardised values are clipped to ``[-clip, clip]``.
    ph_delta, ph_threshold
        Page-Hinkley allowance and threshold, in baseline sigmas.
    max_classes
        Most frequent baseline classes monitored one by one; rarer and unseen ones share a stream.
    cooldown
        Seconds (event time) between two findings for the same version and signal.
    poisoning_window
        Seconds after a version's first event during which its drift means suspected poisoning.
    release_shift, release_psi
        Baseline-vs-previous-version differences that count as drift starting at the release.
    capacity, ttl
        Bounds of the per-version store (ttl in event-time seconds).

    Examples
    --------
    >>> import random
    >>> from datetime import datetime, timedelta, timezone
    >>> from aisoar.events import InferenceEvent
    >>> rng = random.Random(7)
    >>> t0 = datetime(2026, 11, 25, tzinfo=timezone.utc)
    >>> detector = DriftDetector()
    >>> for i in range(3000):
    ...     mean = 0.7 if i < 2000 else 0.6  # a 1-sigma drop at index 2000
    ...     event = InferenceEvent(schema_version=1, event_id=f"e{i}", model_name="fraud",
    ...         model_version="3", timestamp=t0 + timedelta(seconds=i),
    ...         score=rng.gauss(mean, 0.1), latency_ms=20.0)
    ...     for finding in detector.check(event):
    ...         print(f"{finding.rule_id} at index {i}:", finding.evidence[0].detail.split(";")[0])
    model.drift at index 2035: score: ADWIN score baseline 0.7010, now 0.6273 (-0.72 sigma)
    """

    name = "model.drift"
    version = "1.0.0"

    def __init__(
        self,
        method: str = "adwin",
        delta: float = 0.002,
        warmup: int = 500,
        clip: float = 4.0,
        ph_delta: float = 0.5,
        ph_threshold: float = 12.0,
        max_classes: int = 8,
        cooldown: float = 3600.0,
        poisoning_window: float = 24 * 3600.0,
        release_shift: float = 0.5,
        release_psi: float = 0.2,
        capacity: int = 10_000,
        ttl: float = 7 * 24 * 3600.0,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if warmup < 30:
            raise ValueError(f"warmup must be >= 30 events, got {warmup}")
        self.method = method
        self.delta = delta
        self.warmup = warmup
        self.clip = clip
        self.ph_delta = ph_delta
        self.ph_threshold = ph_threshold
        self.max_classes = max_classes
        self.cooldown = cooldown
        self.poisoning_window = poisoning_window
        self.release_shift = release_shift
        self.release_psi = release_psi
        self.capacity = capacity
        self.ttl = ttl
        self._reset()

    def _reset(self) -> None:
        self._versions: EntityStore[str, _VersionState] = EntityStore(self.capacity, self.ttl)
        self._names: EntityStore[str, _ModelNameState] = EntityStore(self.capacity, self.ttl)

    # -- detectors ---------------------------------------------------------------------------
    def _continuous(self) -> Any:
        if self.method == "adwin":
            return river_drift.ADWIN(delta=self.delta)  # type: ignore[no-untyped-call]
        # alpha=1: a plain CUSUM; the baseline already centres the stream.
        return river_drift.PageHinkley(
            min_instances=30, delta=self.ph_delta, threshold=self.ph_threshold, alpha=1.0
        )

    def _binary(self) -> Any:
        return river_drift.ADWIN(delta=self.delta)  # type: ignore[no-untyped-call]

    # -- main --------------------------------------------------------------------------------
    def check(self, event: InferenceEvent) -> list[Finding]:
        now = event.timestamp.timestamp()
        key = event.model_key
        state = self._versions.get(key, now)
        late: list[Finding] = []
        if state is None:
            state = self._versions.setdefault(key, _VersionState, now)
            late = self._note_version(event, now)
        state.n += 1
        found = self._learn_warmup(state, event, now) if state.baseline is None else self._monitor(state, event, now)
        return late + found if late else found

    def _note_version(self, event: InferenceEvent, now: float) -> list[Finding]:
        """Track the model's versions by event time; returns the latest version's earlier
        drift, raised again as suspected poisoning, when this event reveals the older
        version it was released after."""
        names = self._names.setdefault(event.model_name, _ModelNameState, now)
        version = event.model_version
        if version in names.versions:
            return []
        late: list[Finding] = []
        names.versions[version] = None
        names.first_seen[version] = now
        latest_at = names.first_seen.get(names.latest) if names.latest is not None else None
        if names.latest is None:
            names.latest = version
        elif latest_at is None or now >= latest_at:  # a new version of a known model: a release
            names.previous, names.changed_at, names.latest = names.latest, now, version
        elif names.previous is None or names.first_seen.get(names.previous, float("-inf")) < now:
            # An older version seen late (versions arrive on different partitions, so event
            # order is not processing order): it is the one the latest was released after.
            names.previous, names.changed_at = version, latest_at
            # The latest version may have drifted before this was known (its whole partition
            # processed first): that drift started within the window of a release after all.
            assert latest_at is not None
            late = [self._as_poisoning(finding, signal, names, latest_at) for finding, signal in names.pending
                    if finding.timestamp.timestamp() - latest_at <= self.poisoning_window]
        names.pending.clear()  # a predecessor is known now (or a newer version took over)
        while len(names.versions) > 8:  # keep the last few releases only
            oldest = next(iter(names.versions))
            del names.versions[oldest]
            names.first_seen.pop(oldest, None)
        return late

    def _learn_warmup(self, state: _VersionState, event: InferenceEvent, now: float) -> list[Finding]:
        assert state.scores is not None and state.latencies is not None
        if event.score is not None and math.isfinite(event.score):
            state.scores.append(event.score)
        state.latencies.append(math.log1p(event.latency_ms))
        state.errors += event.error
        if event.predicted_class is not None:
            counts = state.class_counts
            if event.predicted_class in counts or len(counts) < 256:
                counts[event.predicted_class] = counts.get(event.predicted_class, 0) + 1
        if state.n < self.warmup:
            return []
        self._build_baseline(state)
        return self._release_check(state, event, now)

    def _build_baseline(self, state: _VersionState) -> None:
        base = _Baseline()
        base.n = state.n
        scores, latencies = state.scores or [], state.latencies or []
        if len(scores) >= 30:
            m, s = _mean_sd(scores)
            base.score = (m, s)
            # Spread as |difference| of non-overlapping pairs: unlike |x - mean| it does not
            # move when only the mean shifts (no double report), and unlike successive
            # differences its values are independent (overlapping ones made ADWIN false-alarm).
            base.spread = _mean_sd([abs(b - a) / (s or 1e-12) for a, b in zip(scores[::2], scores[1::2])])
            state.monitors["score"] = _Continuous(m, s, self.clip, self._continuous())
            state.monitors["score_spread"] = _Continuous(*base.spread, self.clip, self._continuous())
        base.latency = _mean_sd(latencies)
        state.monitors["latency"] = _Continuous(*base.latency, self.clip, self._continuous())
        base.error_rate = state.errors / state.n
        state.binary["error"] = _Binary("error_rate", self._binary(), "error")
        total = sum(state.class_counts.values())
        if total >= 30:
            ranked = sorted(state.class_counts.items(), key=lambda kv: (-kv[1], kv[0]))
            base.classes = {c: n / total for c, n in ranked}
            for c, _ in ranked[: self.max_classes]:
                state.binary["class:" + c] = _Binary("predicted_class", self._binary(), "class:" + c)
            state.binary["class:" + _OTHER] = _Binary("predicted_class", self._binary(), "class:" + _OTHER)
            state.classes = tuple(state.binary.values())[1:]
            state.class_of = {b.stream[len("class:"):]: b for b in state.classes}
        state.baseline = base
        state.scores = state.latencies = None
        state.class_counts = {}

    # -- after warm-up -----------------------------------------------------------------------
    def _monitor(self, state: _VersionState, event: InferenceEvent, now: float) -> list[Finding]:
        fired: list[tuple[str, str, Any]] = []  # (signal, stream, detector)
        monitors = state.monitors
        score = event.score
        if score is not None and math.isfinite(score) and "score" in monitors:
            mon = monitors["score"]
            z = (score - mon.mean) / mon.sd
            if mon.update_z(z):
                fired.append(("score", "score", mon))
            if state.last_z is None:
                state.last_z = z
            else:
                step, state.last_z = abs(z - state.last_z), None
                spread = monitors["score_spread"]
                if spread.update(step):
                    fired.append(("score_spread", "score_spread", spread))
        lat = monitors["latency"]
        if lat.update(math.log1p(event.latency_ms)):
            fired.append(("latency", "latency", lat))
        err = state.binary["error"]
        if err.update(1.0 if event.error else 0.0):
            fired.append((err.signal, "error", err))
        if event.predicted_class is not None and state.classes:
            classes = state.classes
            hit = state.class_of.get(event.predicted_class, classes[-1])
            for indicator in classes:  # _Binary.update, inlined: one to nine per event
                x = 1.0 if indicator is hit else 0.0
                detector = indicator.detector
                detector.update(x)
                recent = indicator.recent
                indicator.recent = x if recent is None else 0.02 * x + (1 - 0.02) * recent
                if detector.drift_detected:
                    fired.append((indicator.signal, indicator.stream, indicator))
        if not fired:
            return []
        findings: list[Finding] = []
        seen: set[str] = set()
        for signal, stream, det in fired:
            if signal in seen:
                continue
            last = state.last_alarm.get(signal)
            if last is not None and now - last < self.cooldown:
                continue
            seen.add(signal)
            state.last_alarm[signal] = now
            findings.append(self._drift_finding(state, event, now, signal, stream, det))
        return findings

    def _describe(self, state: _VersionState, signal: str, stream: str, det: Any) -> tuple[str, float]:
        """A human-readable before -> after, and the shift in baseline sigmas (or rate units)."""
        base = state.baseline
        assert base is not None
        if isinstance(det, _Continuous):
            after_z = det.recent if det.recent is not None else 0.0
            before, after = det.mean, det.mean + det.sd * after_z
            method = type(det.detector).__name__
            if signal == "latency":
                text = f"latency baseline {math.expm1(before):.1f} ms, now {math.expm1(after):.1f} ms"
            elif signal == "score_spread":
                text = f"score spread x{after / (before or 1e-12):.2f} of baseline"
            else:
                text = f"{signal} baseline {before:.4f}, now {after:.4f}"
            return f"{method} {text} ({after_z:+.2f} sigma)", after_z
        now_rate = det.recent if det.recent is not None else 0.0
        if stream == "error":
            return f"ADWIN error rate baseline {base.error_rate:.4f}, now {now_rate:.4f}", now_rate - base.error_rate
        cls = stream[len("class:"):]
        before = (
            base.classes.get(cls, 0.0) if cls != _OTHER
            else sum(v for c, v in base.classes.items() if "class:" + c not in state.binary)
        )
        label = "unseen/rare classes" if cls == _OTHER else f"class {cls!r}"
        return f"ADWIN share of {label} baseline {before:.4f}, now {now_rate:.4f}", now_rate - before

    def _drift_finding(self, state: _VersionState, event: InferenceEvent, now: float,
                       signal: str, stream: str, det: Any) -> Finding:
        detail, shift = self._describe(state, signal, stream, det)
        detail += f"; version event #{state.n}, baseline n={state.baseline.n if state.baseline else 0}"
        return self._finding(event, now, signal, detail, shift, field=_FIELDS[signal])

    def _release_check(self, state: _VersionState, event: InferenceEvent, now: float) -> list[Finding]:
        """At the end of a new version's warm-up: does its baseline differ from the previous one?"""
        names = self._names.get(event.model_name, now)
        base = state.baseline
        if names is None or base is None:
            return []
        names.versions[event.model_version] = base
        if names.latest != event.model_version or names.previous is None:
            return []
        prev = names.versions.get(names.previous)
        if prev is None:
            return []
        findings, signals = [], []
        if base.score and prev.score:
            shift = (base.score[0] - prev.score[0]) / (prev.score[1] or 1e-12)
            if abs(shift) >= self.release_shift:
                detail = (f"release {names.previous} -> {event.model_version}: score mean "
                          f"{prev.score[0]:.4f} -> {base.score[0]:.4f} ({shift:+.2f} sigma)")
                findings.append(self._finding(event, now, "score", detail, shift,
                                              field="inference.score", release=True))
                signals.append("score")
        if base.classes and prev.classes:
            psi = _psi(prev.classes, base.classes)
            if psi >= self.release_psi:
                detail = (f"release {names.previous} -> {event.model_version}: "
                          f"class distribution PSI {psi:.3f}")
                findings.append(self._finding(event, now, "predicted_class", detail, psi,
                                              field="inference.predicted_class", release=True))
                signals.append("predicted_class")
        for signal in signals:
            state.last_alarm[signal] = now
        return findings

    def _finding(self, event: InferenceEvent, now: float, signal: str, detail: str, shift: float,
                 *, field: str, release: bool = False) -> Finding:
        names = self._names.peek(event.model_name)
        poisoning = release or (
            names is not None
            and names.changed_at is not None
            and names.latest == event.model_version
            and now - names.changed_at <= self.poisoning_window
        )
        atlas: tuple[str, ...]
        owasp: tuple[str, ...]
        if poisoning:
            since = now - names.changed_at if names and names.changed_at is not None else 0.0
            rule, rule_name, category, severity = (
                "model.poisoning_suspected", "Drift right after a model release", "poisoning", "high")
            atlas, owasp = ("AML.T0020", "AML.T0018"), ("LLM04:2025",)
            description = (f"{signal} of {event.model_key} drifted {since / 3600:.1f} h after "
                           f"version {event.model_version} first served: possible poisoned or "
                           "compromised release")
        else:
            rule, rule_name, category, severity = ("model.drift", "Model drift", "drift", "medium")
            atlas, owasp = ("AML.T0031",), ()
            description = f"{signal} of {event.model_key} drifted from its version baseline"
        confidence = 0.9 if math.isnan(shift) else min(0.99, 0.6 + 0.2 * min(abs(shift), 2.0))
        finding = Finding(
            id=finding_id(event.event_id, rule, signal),
            rule_id=rule,
            rule_name=rule_name,
            category=category,  # type: ignore[arg-type]
            severity=severity,  # type: ignore[arg-type]
            confidence=round(confidence, 3),
            timestamp=event.timestamp,
            event_id=event.event_id,
            event_kind="inference",
            entities=inference_entities(event),
            detector=self.name,
            detector_version=self.version,
            evidence=(Evidence(field=field, detail=f"{signal}: {detail}"),),
            atlas=atlas,
            owasp=owasp,
            description=description,
            score=None if math.isnan(shift) else round(shift, 4),
        )
        if (not poisoning and names is not None and names.previous is None
                and names.latest == event.model_version and len(names.pending) < 4):
            names.pending.append((finding, signal))
        return finding

    def _as_poisoning(self, finding: Finding, signal: str, names: _ModelNameState, released_at: float) -> Finding:
        since = finding.timestamp.timestamp() - released_at
        return msgspec.structs.replace(
            finding,
            id=finding_id(finding.event_id, "model.poisoning_suspected", signal),
            rule_id="model.poisoning_suspected",
            rule_name="Drift right after a model release",
            category="poisoning",
            severity="high",
            atlas=("AML.T0020", "AML.T0018"),
            owasp=("LLM04:2025",),
            description=(f"{signal} of {finding.entities.model_name}@{names.latest} drifted {since / 3600:.1f} h "
                         f"after version {names.latest} first served, replacing {names.previous} (seen after "
                         "the drift was reported): possible poisoned or compromised release"),
        )


_FIELDS = {
    "score": "inference.score",
    "score_spread": "inference.score",
    "latency": "inference.latency_ms",
    "error_rate": "inference.error",
    "predicted_class": "inference.predicted_class",
}


def _mean_sd(xs: list[float]) -> tuple[float, float]:
    var = stats.Var()
    for x in xs:
        var.update(x)
    return var.mean.get(), math.sqrt(max(var.get(), 0.0))


def _psi(p: dict[str, float], q: dict[str, float], eps: float = 1e-4) -> float:
    """Population stability index between two class distributions."""
    total = 0.0
    for c in set(p) | set(q):
        a, b = max(p.get(c, 0.0), eps), max(q.get(c, 0.0), eps)
        total += (b - a) * math.log(b / a)
    return total
