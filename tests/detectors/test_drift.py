"""DriftDetector: seeded streams with known change points, exact detection indices."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aisoar.events import InferenceEvent
from detectors.models import DriftDetector

T0 = datetime(2026, 11, 25, tzinfo=UTC)


def stream(seed: int, n: int, change_at: int | None = None, change: dict[str, Any] | None = None, *,
           version: str = "1", start: float = 0.0) -> Iterator[tuple[int, InferenceEvent]]:
    """One event per second: score N(0.7, 0.1), lognormal latency, 1% errors, classes a/b/c."""
    rng = random.Random(seed)
    p: dict[str, Any] = {"mean": 0.7, "sd": 0.1, "lat": 40.0, "err": 0.01, "classes": (0.5, 0.3, 0.2)}
    for i in range(n):
        if i == change_at:
            p.update(change or {})
        yield i, InferenceEvent(
            schema_version=1, event_id=f"{version}-{i}", model_name="fraud", model_version=version,
            timestamp=T0 + timedelta(seconds=start + i), score=rng.gauss(p["mean"], p["sd"]),
            latency_ms=p["lat"] * math.exp(rng.gauss(0, 0.3)), error=rng.random() < p["err"],
            predicted_class=rng.choices("abc", p["classes"])[0],
        )


def run(det: DriftDetector, events: Iterator[tuple[int, InferenceEvent]]) -> list[tuple[int, str, str, str]]:
    return [
        (i, f.rule_id, f.evidence[0].detail.split(":")[0], f.severity)
        for i, e in events
        for f in det.check(e)
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"mean": 0.8}, (2067, "score")),  # 1-sigma mean shift: 67 events
        ({"sd": 0.2}, (2163, "score_spread")),  # variance x4
        ({"classes": (0.35, 0.35, 0.3)}, (2707, "predicted_class")),
        ({"lat": 60.0}, (2035, "latency")),  # x1.5 latency
        ({"err": 0.05}, (3251, "error_rate")),  # 1% -> 5%
    ],
)
def test_each_signal_detects_its_change_once(change: dict[str, Any], expected: tuple[int, str]) -> None:
    findings = run(DriftDetector(), stream(11, 4000, 2000, change))
    assert findings == [(*expected[:1], "model.drift", expected[1], "medium")]


def test_one_sigma_shift_within_300_events_for_both_methods() -> None:
    assert run(DriftDetector(), stream(11, 4000, 2000, {"mean": 0.8}))[0][0] - 2000 <= 300
    assert run(DriftDetector(method="page_hinkley"), stream(11, 4000, 2000, {"mean": 0.8})) == [
        (2029, "model.drift", "score", "medium")
    ]


def test_no_alarm_on_a_long_stationary_stream() -> None:
    assert run(DriftDetector(), stream(12, 30000)) == []


def test_no_alarm_during_warmup_even_on_a_change() -> None:
    assert run(DriftDetector(warmup=500), stream(11, 500, 100, {"mean": 2.0})) == []


def test_one_finding_per_signal_per_cooldown() -> None:
    # A drifting stream keeps ADWIN firing; the cooldown (1 h of event time) keeps one finding.
    findings = run(DriftDetector(), stream(11, 3500, 2000, {"mean": 0.8, "lat": 200.0}))
    assert [(i, s) for i, _, s, _ in findings] == [(2035, "latency"), (2067, "score")]
    signals = [s for _, _, s, _ in run(DriftDetector(cooldown=0.0), stream(11, 3500, 2000, {"mean": 1.5}))]
    assert signals.count("score") >= 1


def test_drift_soon_after_a_release_is_suspected_poisoning() -> None:
    det = DriftDetector()  # poisoning window 24 h
    run(det, stream(13, 3000, version="1"))
    findings = run(det, stream(14, 3000, 1500, {"mean": 0.55}, version="2", start=3000))
    assert findings == [(1523, "model.poisoning_suspected", "score", "high")]


def test_a_release_is_ordered_by_event_time_not_by_arrival() -> None:
    """Versions are keyed ``model@version``, so they arrive on different partitions: the new
    version's first events may be processed before the previous version's history."""
    det = DriftDetector()
    new = list(stream(14, 3000, 1500, {"mean": 0.55}, version="2", start=3000))
    assert run(det, iter(new[:100])) == []
    run(det, stream(13, 3000, version="1"))
    findings = run(det, iter(new[100:]))
    assert findings == [(1523, "model.poisoning_suspected", "score", "high")]


def test_drift_after_the_window_is_plain_drift() -> None:
    det = DriftDetector(poisoning_window=600.0)
    run(det, stream(13, 3000, version="1"))
    findings = run(det, stream(14, 3000, 1500, {"mean": 0.55}, version="2", start=3000))
    assert findings == [(1523, "model.drift", "score", "medium")]


def test_new_version_whose_baseline_differs_from_the_previous_is_flagged_at_end_of_warmup() -> None:
    det = DriftDetector()
    run(det, stream(13, 3000, version="1"))
    findings = run(det, stream(15, 1000, 0, {"mean": 0.6, "classes": (0.2, 0.3, 0.5)}, version="2", start=3000))
    assert findings == [
        (499, "model.poisoning_suspected", "score", "high"),
        (499, "model.poisoning_suspected", "predicted_class", "high"),
    ]


def test_first_version_of_a_model_is_not_a_release() -> None:
    findings = run(DriftDetector(), stream(11, 4000, 2000, {"mean": 0.8}))
    assert findings[0][1] == "model.drift"


def test_finding_fields() -> None:
    det = DriftDetector()
    events = list(stream(11, 2100, 2000, {"mean": 0.8}))
    found = [f for _, e in events for f in det.check(e)]
    (f,) = found
    assert f.atlas == ("AML.T0031",) and f.owasp == ()
    assert f.entities.model_name == "fraud" and f.entities.model_version == "1"
    assert f.event_kind == "inference" and f.category == "drift"
    assert f.detector == "model.drift" and f.detector_version == DriftDetector.version
    assert f.evidence[0].field == "inference.score" and "baseline" in f.evidence[0].detail
    assert f.score is not None and f.score > 0.5  # shift measured in baseline sigmas


def test_validates_options() -> None:
    with pytest.raises(ValueError, match=r"method must be one of \('adwin', 'page_hinkley'\)"):
        DriftDetector(method="kswin")
    with pytest.raises(ValueError, match="warmup"):
        DriftDetector(warmup=5)


def test_missing_score_and_class_are_tolerated() -> None:
    det = DriftDetector(warmup=50)
    for i in range(200):
        e = InferenceEvent(schema_version=1, event_id=str(i), model_name="m", model_version="1",
                           timestamp=T0 + timedelta(seconds=i), latency_ms=10.0)
        assert det.check(e) == []


def test_versions_are_bounded() -> None:
    det = DriftDetector(capacity=3, warmup=30)
    for v in range(10):
        for _, e in stream(v, 40, version=str(v), start=v * 100):
            det.check(e)
    assert len(det._versions) == 3


def test_drift_reported_before_the_older_version_was_seen_is_raised_again_as_poisoning() -> None:
    """The new version's whole partition may be processed before the old version's: its
    drift looks like a first version's then, until the older version turns up."""
    det = DriftDetector()
    (drift,) = [f for _, e in stream(14, 3000, 1500, {"mean": 0.55}, version="2", start=3000) for f in det.check(e)]
    assert (drift.rule_id, drift.severity) == ("model.drift", "medium")  # no predecessor known yet
    late = [f for _, e in stream(13, 50, version="1") for f in det.check(e)]
    assert [(f.rule_id, f.severity, f.entities.model_version) for f in late] == [
        ("model.poisoning_suspected", "high", "2")]
    (poisoning,) = late
    assert poisoning.id != drift.id and poisoning.event_id == drift.event_id  # a finding of its own
    assert poisoning.atlas == ("AML.T0020", "AML.T0018") and poisoning.owasp == ("LLM04:2025",)
    assert "replacing 1" in poisoning.description
    # ... once: more of the old version, or of the new, raises nothing new about it
    assert [f for _, e in stream(13, 200, version="1") for f in det.check(e)] == []


def test_drift_of_a_lone_version_outside_the_window_is_not_raised_again() -> None:
    det = DriftDetector(poisoning_window=600.0)
    run(det, stream(14, 3000, 1500, {"mean": 0.55}, version="2", start=3000))
    assert [f for _, e in stream(13, 50, version="1") for f in det.check(e)] == []
