"""The per-event fast paths of the behaviour and drift detectors change no finding.

``test_findings_equal_the_plain_implementation`` pins what the detectors found on a seeded
stream (principals misbehaving in five ways, a model release, drift, a scraper) with the code
before the fast paths (commit e1d8111: plain max/min, comprehensions, every z-score computed,
the regex on every response). The same comparison on 400k events (the bench mix and a longer
such stream), findings and final state, is described in bench/README.md.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from aisoar.events import InferenceEvent, PromptEvent
from detectors.behaviour import (
    DenialOfWalletDetector,
    ModelExtractionDetector,
    PrincipalAnomalyDetector,
)
from detectors.behaviour.principal import _REFUSAL, is_refusal
from detectors.models import DriftDetector
from detectors.state import SlotStore

T0 = datetime(2026, 11, 25, 9, tzinfo=UTC)
MODELS = ("gpt-4o", "gpt-4o-mini", "claude-3-5-sonnet", "llama-3-70b", "mistral-large", "gemini-1.5", "o1")
ATTACKS = ("burst", "tokens", "refusals", "hopping", "wallet")


def mixed_stream(seed: int, n: int) -> Iterator[PromptEvent | InferenceEvent]:
    """Prompts of 40 principals (one at a time misbehaving for a while: a request burst, huge
    prompts, a refusal storm, model hopping, a token flood) and inferences of a model whose
    version changes at n/3 and whose scores drift at 2n/3, with a scraper in between."""
    rng = random.Random(seed)
    t, attack = 0.0, None
    for i in range(n):
        t += rng.expovariate(1 / 4.0) * (0.02 if attack and attack[0] == "burst" else 1.0)
        at = T0 + timedelta(seconds=t)
        if rng.random() < 0.3:
            version = "3" if i < n // 3 else "4"
            mean = 0.6 if i > 2 * n // 3 else 0.7
            scraper = n // 2 < i < n // 2 + n // 10 and rng.random() < 0.7
            yield InferenceEvent(
                schema_version=1, event_id=f"i{i}", model_name="fraud", model_version=version, timestamp=at,
                score=rng.gauss(mean, 0.1), latency_ms=30 * math.exp(rng.gauss(0, 0.3)), error=rng.random() < 0.01,
                predicted_class=rng.choices("abcd", (0.5, 0.3, 0.15, 0.05))[0],
                credential_id="scraper" if scraper else f"svc{rng.randrange(20)}")
            continue
        if attack is None and rng.random() < 0.004:
            attack = [rng.choice(ATTACKS), f"p{rng.randrange(40)}", rng.randrange(20, 120)]
        user, tokens, model = f"p{rng.randrange(40)}", int(300 * math.exp(rng.gauss(0, 0.4))), MODELS[rng.randrange(2)]
        response = "I'm sorry, I can't help with that." if rng.random() < 0.02 else " Sure: here it is."
        chars = tokens * 4
        if attack is not None and rng.random() < 0.6:
            kind, user = attack[0], attack[1]
            if kind == "tokens":
                tokens, chars = tokens * 30, chars * 30
            elif kind == "wallet":
                tokens = 40000
            elif kind == "refusals":
                response = "\\n I cannot assist with that request."
            elif kind == "hopping":
                model = rng.choice(MODELS)
            attack[2] -= 1
            if attack[2] <= 0:
                attack = None
        yield PromptEvent(
            schema_version=1, event_id=f"p{i}", user_id=user, session_id="s", timestamp=at,
            credential_id=None if rng.random() < 0.3 else f"cred-{user}", server_address="api.openai.com",
            provider="openai", request_model=model, input_tokens=tokens,
            output_tokens=0 if rng.random() < 0.01 else tokens // 3, prompt="x" * chars,
            response="" if rng.random() < 0.01 else response)


def test_findings_equal_the_plain_implementation() -> None:
    store = SlotStore(capacity=100_000)
    # persistence=1: the plain implementation alarmed on single events (the default is 2 since)
    prompt = [PrincipalAnomalyDetector(warmup=10, persistence=1, store=store),
              DenialOfWalletDetector(window=600.0, store=store)]
    inference = [DriftDetector(warmup=200, cooldown=600.0),
                 ModelExtractionDetector(min_requests=20.0, window=600.0, cooldown=600.0)]
    found = [
        (f.event_id, f.rule_id, f.severity, f.score, f.evidence[0].detail)
        for e in mixed_stream(3, 8000)
        for det in (prompt if isinstance(e, PromptEvent) else inference)
        for f in det.check(e)  # type: ignore[attr-defined]
    ]
    assert Counter(rule for _, rule, *_ in found) == {
        "behaviour.anomalous_principal": 40, "behaviour.denial_of_wallet": 25,
        "behaviour.model_extraction": 5, "model.poisoning_suspected": 1}
    assert found[:2] == [
        ("p1227", "behaviour.denial_of_wallet", "high", 90.961,
         "61360 tokens this window (baseline 675 +- 425, limit 50000)"),
        ("p1229", "behaviour.denial_of_wallet", "high", 51.062,
         "65800 tokens this window (baseline 1289 +- 284, limit 50000)")]
    # Every field of all 71 findings, as the code before the fast paths produced them.
    assert hashlib.sha256(repr(found).encode()).hexdigest() == (
        "ef768b4aec56bd31e80a8d0d921f9cf707d81aa9b7f989847f7c95fb045d596c")


def test_refusal_prefilter_agrees_with_the_regex() -> None:
    """Only an ASCII first character that cannot start the pattern skips the regex."""
    phrases = ("I'm sorry", "i am sorry", "Sorry, but I can", "I can't help", "As an AI", "I am unable",
               "Here you go", "", "\u00a0I'm sorry", "\u0130'm sorry")
    for code in range(0x180):
        for phrase in phrases:
            text = chr(code) + phrase
            event = PromptEvent(schema_version=1, event_id="e", user_id="u", session_id="s", timestamp=T0,
                                server_address="h", provider="p", request_model="m", response=text, output_tokens=5)
            assert is_refusal(event) == (_REFUSAL.match(text, 0, 200) is not None), repr(text)
            assert is_refusal(event) == (re.match(_REFUSAL.pattern, text[:200], re.IGNORECASE) is not None)


def test_z_gate_never_hides_an_anomalous_feature() -> None:
    """d^2 < gate * var (no square root) implies |d / sqrt(var)| < min_z, right at the edge too."""
    rng = random.Random(5)
    for min_z in (5.0, 3.0, 0.7):
        gate = PrincipalAnomalyDetector(min_z=min_z)._gate
        for _ in range(20000):
            var = rng.uniform(0.0025, 50.0)
            d = min_z * math.sqrt(var) * (1 + rng.choice((-1, 1)) * 10 ** rng.uniform(-17, -8))
            if d * d < gate * var:
                assert abs(d / math.sqrt(var)) < min_z
    assert PrincipalAnomalyDetector(min_z=0.0)._gate < 0  # min_z <= 0: every event is judged on its z


def test_wallet_with_an_absolute_limit_below_min_tokens_still_alarms() -> None:
    det = DenialOfWalletDetector(absolute_limit=1000.0, min_tokens=50_000.0)
    event = PromptEvent(schema_version=1, event_id="e", user_id="new", session_id="s", timestamp=T0,
                        server_address="h", provider="p", request_model="m", input_tokens=900, output_tokens=200)
    assert [f.rule_id for f in det.check(event)] == ["behaviour.denial_of_wallet"]
