"""Behaviour detectors' false alarms on the realistic mix: ``python -m bench.quality.behaviour``.

The detection-core mix (:mod:`bench.workload`: real ShareGPT turns from 2,000 principals,
inference events of two model versions) plants content attacks only, so every finding of
the behaviour detectors (principal anomaly, denial of wallet, model extraction) on it is a
false alarm. The table prints them per rule, per 100k prompts, and which feature the
principal-anomaly findings name first; ``--persistence 1`` shows the detector alarming on
single odd calls (its behaviour before session 5). Their detection of planted misbehaviour
is pinned by ``tests/detectors/test_behaviour.py``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter

from aisoar.events import decode_inference, decode_prompt
from bench.workload import iter_mix
from detectors.behaviour import (
    DenialOfWalletDetector,
    ModelExtractionDetector,
    PrincipalAnomalyDetector,
)
from detectors.state import SlotStore


def run(events: int, persistence: int) -> dict[str, object]:
    store = SlotStore(capacity=1_000_000, ttl=7 * 24 * 3600.0)
    prompt_detectors = [PrincipalAnomalyDetector(persistence=persistence, store=store), DenialOfWalletDetector(store=store)]
    extraction = ModelExtractionDetector()
    rules: Counter[str] = Counter()
    causes: Counter[str] = Counter()
    prompts = 0
    started = time.process_time()
    for kind, _, raw in iter_mix(events):
        if kind == "prompt":
            prompts += 1
            event = decode_prompt(raw)
            found = [f for d in prompt_detectors for f in d.check(event)]
        else:
            found = extraction.check(decode_inference(raw))
        for finding in found:
            rules[finding.rule_id] += 1
            if finding.rule_id == "behaviour.anomalous_principal":
                causes[finding.evidence[0].field] += 1
    return {"events": events, "prompts": prompts, "rules": dict(rules), "causes": dict(causes),
            "cpu_s": time.process_time() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000, help="records of the mix (default 200k)")
    parser.add_argument("--persistence", type=int, default=2,
                        help="consecutive deviating events before a principal alarms (the detector's default: 2)")
    args = parser.parse_args()
    result = run(args.events, args.persistence)
    prompts = result["prompts"]
    assert isinstance(prompts, int)
    print(f"behaviour detectors on {args.events:,} records of the bench mix ({prompts:,} benign prompts, "
          f"no behaviour attack planted), persistence={args.persistence}:")
    rules = result["rules"]
    assert isinstance(rules, dict)
    for rule in ("behaviour.anomalous_principal", "behaviour.denial_of_wallet", "behaviour.model_extraction"):
        n = rules.get(rule, 0)
        print(f"  {rule:<32} {n:>6} false alarms  ({100 * n / max(1, prompts):.3f}% of prompts)")
    print(f"  principal anomaly, first feature named: {result['causes']}")
    print(f"  ({result['cpu_s']:.1f} CPU s; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
