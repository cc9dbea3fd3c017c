"""Principal behaviour: anomalous principal, model extraction, denial of wallet, and memory bounds."""

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

import detectors.behaviour as behaviour_pkg
from aisoar.events import InferenceEvent, PromptEvent
from detectors.base import Detector
from detectors.behaviour import (
    DenialOfWalletDetector,
    ModelExtractionDetector,
    PrincipalAnomalyDetector,
)
from detectors.behaviour.principal import is_refusal
from detectors.state import SlotStore

T0 = datetime(2026, 11, 25, 9, tzinfo=UTC)


def call(i: int, user: str, seconds: float, tokens: int = 300, model: str = "gpt-4o",
         response: str = "ok", credential: str | None = None) -> PromptEvent:
    return PromptEvent(schema_version=1, event_id=f"e{i}", user_id=user, session_id="s",
                       credential_id=credential, timestamp=T0 + timedelta(seconds=seconds),
                       server_address="api.openai.com", provider="openai", request_model=model,
                       input_tokens=tokens, output_tokens=tokens // 2, prompt="x" * (tokens * 4),
                       response=response)


def infer(i: int, seconds: float, principal: str | None, score: float, cls: str) -> InferenceEvent:
    return InferenceEvent(schema_version=1, event_id=f"e{i}", model_name="fraud", model_version="3",
                          timestamp=T0 + timedelta(seconds=seconds), credential_id=principal,
                          score=score, predicted_class=cls)


# -- anomalous principal -------------------------------------------------------------------------
def population(rng: random.Random, n: int, attacker: Callable[[int], PromptEvent | None] | None = None):
    """20 users, one call every ~2 minutes each, 200-400 tokens; ``attacker(i)`` may replace a call."""
    for i in range(n):
        forged = attacker(i) if attacker else None
        yield i, forged or call(i, f"u{i % 20}", 6 * i + rng.random(), rng.randint(200, 400))


def test_normal_population_never_alarms() -> None:
    det = PrincipalAnomalyDetector()
    rng = random.Random(2)
    assert [i for i, e in population(rng, 10000) for _ in det.check(e)] == []


def test_request_burst_and_model_hopping_alarm_once() -> None:
    det = PrincipalAnomalyDetector()
    rng = random.Random(2)

    def burst(i: int) -> PromptEvent | None:  # from index 5000, u3 fires every 0.5 s across models
        if i >= 5000 and i % 4 == 0:
            return call(i, "u3", 6 * i + 0.5 * (i % 12), 300, model=f"model-{i % 5}")
        return None

    found = [(i, f.entities.user_id, f.evidence[0].field)
             for i, e in population(rng, 6000, burst) for f in det.check(e)]
    # 5008 is the first event beyond min_z; persistence=2 alarms on u3's next one
    assert found == [(5012, "u3", "distinct_models")]


def test_refusal_storm_is_reported_with_its_cause() -> None:
    det = PrincipalAnomalyDetector()
    rng = random.Random(4)

    def prober(i: int) -> PromptEvent | None:
        if i >= 3000 and i % 20 == 9:
            return call(i, "u9", 6 * i, 300, response="I'm sorry, but I can't help with that.")
        return None

    found = [(i, f.evidence[0].field, f.severity) for i, e in population(rng, 4000, prober) for f in det.check(e)]
    assert found == [(3049, "refusal_ratio", "medium")]  # the second refusal beyond min_z (3029) in a row


def one_off(i: int, rng: random.Random) -> PromptEvent | None:
    """Now and then a user's single odd call: an error (no output), a huge answer, a long paste."""
    if i < 1000 or i % 97:
        return None
    user, seconds = f"u{i % 20}", 6 * i + rng.random()
    odd = call(i, user, seconds, rng.randint(200, 400))
    kind = (i // 97) % 3
    if kind == 0:
        return msgspec.structs.replace(odd, output_tokens=0, response="")
    if kind == 1:
        return msgspec.structs.replace(odd, output_tokens=30_000)
    return call(i, user, seconds, 20_000)


def test_single_odd_calls_do_not_alarm_but_a_sustained_change_does() -> None:
    """One error, one huge answer or one long paste is not a change of behaviour: with
    ``persistence=1`` each of these one-offs alarms; with the default (2) none does, while a
    principal that keeps sending huge prompts is still reported, on its second one."""
    eager, rng = PrincipalAnomalyDetector(persistence=1), random.Random(9)
    alarms = [f for _, e in population(random.Random(6), 5500, lambda i: one_off(i, rng)) for f in eager.check(e)]
    assert len(alarms) >= 10  # the one-offs do look anomalous alone (else this test proves nothing)

    det, rng = PrincipalAnomalyDetector(), random.Random(9)

    def odd_then_sustained(i: int) -> PromptEvent | None:
        if i >= 5500 and i % 20 == 7:
            return call(i, "u7", 6 * i + 0.5, 9000)
        return one_off(i, rng)

    found = [(i, f.entities.user_id, f.evidence[0].field)
             for i, e in population(random.Random(6), 6000, odd_then_sustained) for f in det.check(e)]
    assert found == [(5527, "u7", "input_tokens")]


def test_no_alarm_during_a_principals_warmup() -> None:
    det = PrincipalAnomalyDetector(warmup=30)
    rng = random.Random(5)
    [det.check(e) for _, e in population(rng, 2000)]
    # a new principal's first 30 calls are learned, however odd they look
    assert [f for i in range(30) for f in det.check(call(10_000 + i, "newbie", 12_000 + i, 50_000))] == []


def test_principal_is_credential_first() -> None:
    det = PrincipalAnomalyDetector()
    det.check(call(1, "alice", 0.0, credential="key-1"))
    assert "key-1" in det._states and "alice" not in det._states


def test_is_refusal() -> None:
    assert is_refusal(call(1, "u", 0, response="I cannot help with that request."))
    assert is_refusal(call(1, "u", 0, response="As an AI language model, I ..."))
    assert not is_refusal(call(1, "u", 0, response="Sure! Here is the code."))
    empty = PromptEvent(schema_version=1, event_id="e", user_id="u", session_id="s", timestamp=T0,
                        server_address="h", provider="p", request_model="m")
    assert is_refusal(empty)  # no answer, no output tokens: an error


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="threshold"):
        PrincipalAnomalyDetector(threshold=0.0)
    with pytest.raises(ValueError, match="alpha"):
        DenialOfWalletDetector(alpha=1.5)
    with pytest.raises(ValueError, match="min_share"):
        ModelExtractionDetector(min_share=0.0)


# -- model extraction ----------------------------------------------------------------------------
def extraction_stream(seed: int, scraper_share: float, n: int = 20000):
    """50 clients at 1 req/s in total; from index 12000 traffic goes to 5 req/s, of which
    ``scraper_share`` comes from svc-x querying uniformly (boundary probes)."""
    rng = random.Random(seed)
    for i in range(n):
        t = min(i, 12000) + 0.2 * max(0, i - 12000)
        scraper = i >= 12000 and rng.random() < scraper_share
        yield i, infer(i, t, "svc-x" if scraper else f"c{rng.randrange(50)}",
                       rng.random() if scraper else rng.betavariate(8, 2), rng.choice("abc"))


def test_extraction_detected_once_with_evidence() -> None:
    det = ModelExtractionDetector()
    found = [(i, f) for i, e in extraction_stream(6, 0.5) for f in det.check(e)]
    assert [(i, f.entities.credential_id, f.severity) for i, f in found] == [(15442, "svc-x", "high")]
    f = found[0][1]
    assert f.atlas == ("AML.T0024.002", "AML.T0040") and f.owasp == ("LLM10:2025",)
    assert "class coverage 100%" in f.evidence[1].detail


def test_heavy_but_minor_share_is_not_extraction() -> None:
    det = ModelExtractionDetector()  # svc-x sends ~1 req/s but only 20% of a busy model's traffic
    assert [i for i, e in extraction_stream(6, 0.2) for _ in det.check(e)] == []


def test_events_without_principal_only_count_for_the_model() -> None:
    det = ModelExtractionDetector(min_requests=5, min_share=0.1)
    assert all(det.check(infer(i, i, None, 0.5, "a")) == [] for i in range(100))
    assert len(det._pairs) == 0


# -- denial of wallet ----------------------------------------------------------------------------
def spend(rng: random.Random, n: int, attack_from: int | None = None, user: str = "bob", step_min: int = 3):
    for i in range(n):
        attack = attack_from is not None and i >= attack_from
        yield i, PromptEvent(schema_version=1, event_id=f"e{i}", user_id=user, session_id="s",
                             timestamp=T0 + timedelta(minutes=step_min * i), server_address="api.openai.com",
                             provider="openai", request_model="gpt-4o",
                             input_tokens=30000 if attack else rng.randint(500, 1500),
                             output_tokens=rng.randint(100, 500))


def test_wallet_spike_alarms_once_per_window() -> None:
    det = DenialOfWalletDetector()
    found = [(i, f.rule_id) for i, e in spend(random.Random(3), 1960, 1900) for f in det.check(e)]
    # the attack spans 3 hourly windows (20 calls each): one finding per window
    assert found == [(1904, "behaviour.denial_of_wallet"), (1932, "behaviour.denial_of_wallet"),
                     (1957, "behaviour.denial_of_wallet")]


def test_steady_and_slowly_growing_spend_is_quiet() -> None:
    det = DenialOfWalletDetector()
    rng = random.Random(8)
    events = (PromptEvent(schema_version=1, event_id=f"e{i}", user_id="carol", session_id="s",
                          timestamp=T0 + timedelta(minutes=3 * i), server_address="h", provider="p",
                          request_model="m", input_tokens=int(rng.randint(500, 1500) * (1 + i / 2000)))
              for i in range(6000))
    assert [f for e in events for f in det.check(e)] == []


def test_absolute_limit_covers_new_credentials() -> None:
    det = DenialOfWalletDetector(absolute_limit=100_000)
    found = [i for i, e in spend(random.Random(1), 10, 0, user="fresh") for _ in det.check(e)]
    assert found == [3]  # 4 x ~30k tokens > 100k in the first window


# -- memory per idle principal ---------------------------------------------------------------------
def bytes_per_entity(det: Detector, make: Callable[[int, str], object], n: int = 1500, per: int = 2) -> float:
    """Retained bytes per entity after ``per`` events each (events are freed: keys count), plus
    the rows filled in the detector's preallocated SlotStore columns (invisible to tracemalloc)."""
    stores = [s for s in vars(det).values() if isinstance(s, SlotStore)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] + sum(s.nbytes for s in stores)
    for i in range(n * per):
        det.check(make(i, f"principal-{i % n:07d}"))  # type: ignore[arg-type]
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] + sum(s.nbytes for s in stores)
    tracemalloc.stop()
    return (after - before) / n


@pytest.mark.parametrize(
    ("factory", "make"),
    [
        (PrincipalAnomalyDetector, lambda i, p: call(i, p, float(i))),
        (DenialOfWalletDetector, lambda i, p: call(i, p, float(i))),
        (ModelExtractionDetector, lambda i, p: infer(i, float(i), p, 0.5, "a")),
    ],
    ids=["principal", "wallet", "extraction"],
)
def test_idle_principal_costs_less_than_1kb(factory: Callable[[], Detector], make) -> None:
    det = factory()
    # the shared HalfSpaceTrees is allocated once, before the measurement
    det.check(make(0, "warm"))
    assert 40 < bytes_per_entity(det, make) < 1024


def test_state_is_bounded_by_capacity() -> None:
    det = PrincipalAnomalyDetector(capacity=100)
    for i in range(1000):
        det.check(call(i, f"p{i}", float(i)))
    assert len(det._states) == 100


def test_exported_members() -> None:
    public = {n for n in dir(behaviour_pkg) if not n.startswith("_")} - {"extraction", "principal", "wallet"}
    assert set(behaviour_pkg.__all__) == public
    assert behaviour_pkg.__all__ == sorted(behaviour_pkg.__all__)


def test_detectors_sharing_one_store_find_what_they_find_alone() -> None:
    """Principal anomaly and denial of wallet keep their rows in one SlotStore (one key per
    principal) and report exactly what they report with stores of their own."""
    shared = SlotStore(capacity=1000, ttl=14 * 24 * 3600.0)
    together = [PrincipalAnomalyDetector(store=shared), DenialOfWalletDetector(store=shared)]
    alone = [PrincipalAnomalyDetector(), DenialOfWalletDetector()]
    rng = random.Random(2)

    def burst(i: int) -> PromptEvent | None:
        if i >= 5000 and i % 4 == 0:
            return call(i, "u3", 6 * i + 0.5 * (i % 12), 300 if i < 5800 else 40_000, model=f"model-{i % 5}")
        return None

    found: dict[str, list[tuple[int, str]]] = {"together": [], "alone": []}
    for i, event in population(rng, 6000, burst):
        for label, dets in (("together", together), ("alone", alone)):
            found[label] += [(i, f.rule_id) for d in dets for f in d.check(event)]
    assert found["together"] == found["alone"]
    assert {rule for _, rule in found["alone"]} == {"behaviour.anomalous_principal", "behaviour.denial_of_wallet"}
    assert len(shared) == 20  # one entry per principal for both detectors


def test_evicted_principal_starts_over_in_a_reused_slot() -> None:
    det = PrincipalAnomalyDetector(capacity=2)
    for i, user in enumerate(["a", "a", "b", "a", "c"]):  # c evicts b, the least recently seen
        det.check(call(i, user, float(i)))
    assert "b" not in det._states and det.row("a")["n"] == 3 and det.row("c")["n"] == 1
    assert det._states._high == 2  # c took b's slot
    det.check(call(9, "b", 9.0))  # b comes back (evicting a): learned from scratch
    assert det.row("b")["n"] == 1 and "a" not in det._states
