"""Detection core, no Kafka: events/s on one core through ``Pipeline.default().process``.

The full shipped detector set (decode → DLP, injection, response, behaviour, wallet,
shadow AI; drift, provenance, extraction) over :func:`bench.workload.make_mix`.
Throughput is measured in CPU seconds of this single-threaded process (one core), so
other load on a shared machine does not count against it; wall time is reported too.
Per detector: µs per event it sees, over the same decoded events.

``python -m bench.detect_core [--quick] [--events N] [--json-out FILE]``
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from typing import Any

from bench._common import cli, peak_rss_mb, rss_mb

TARGET_EPS = 50_000


def run(*, quick: bool = False, events: int | None = None, warmup: int | None = None,
        prompts: int | None = None, synthetic_text: bool = False) -> dict[str, Any]:
    from aisoar.events import (
        InferenceEvent,
        PromptEvent,
        decode_inference,
        decode_prompt,
    )
    from aisoar.pipeline import Pipeline
    from bench.workload import make_mix
    from detectors.dlp import data_classes

    n = events or (30_000 if quick else 200_000)
    w = warmup if warmup is not None else min(5_000, n // 5)
    rss_base = rss_mb()
    mix = make_mix(n + w, seed=1, prompts=prompts or (5_000 if quick else 20_000), real_text=not synthetic_text)
    rss_loaded = rss_mb()
    prompt_bytes = [v for k, _, v in mix if k == "prompt"]
    n_prompt = sum(1 for k, _, _ in mix[w:] if k == "prompt")

    pipeline = Pipeline.default()
    process = pipeline.process
    for kind, _, raw in mix[:w]:
        process(kind, raw)  # type: ignore[arg-type]
    body = mix[w:]
    gc.collect()
    gc.freeze()
    findings = dead = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for kind, _, raw in body:
        out = process(kind, raw)  # type: ignore[arg-type]
        findings += len(out.findings)
        dead += out.dead is not None
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    gc.unfreeze()
    rss_after = rss_mb()
    peak = peak_rss_mb()  # before the per-detector pass below holds every decoded event

    # Per detector, on fresh instances over the same decoded events (state evolves as in the pipeline).
    fresh = Pipeline.default()
    decoded_p: list[PromptEvent] = []
    decoded_i: list[InferenceEvent] = []
    t0 = time.process_time()
    for kind, _, raw in body:
        if kind == "prompt":
            decoded_p.append(decode_prompt(raw))
        else:
            decoded_i.append(decode_inference(raw))
    per: dict[str, dict[str, float]] = {
        "decode": {"us_per_event": round(1e6 * (time.process_time() - t0) / max(1, len(body)), 2), "events": len(body)}}
    classes: list[frozenset[str]] = [frozenset()] * len(decoded_p)
    for det in fresh.prompt_detectors:
        t0 = time.process_time()
        results = [det.check(e) for e in decoded_p]
        dt = time.process_time() - t0
        if det.name.startswith("content.dlp"):
            classes = [data_classes(r) for r in results]
        per[det.name] = _per(dt, len(decoded_p), results)
    if fresh.shadow_ai is not None:
        shadow = fresh.shadow_ai
        t0 = time.process_time()
        results = [shadow.check(e, c) for e, c in zip(decoded_p, classes)]
        per[getattr(shadow, "name", "policy.shadow_ai")] = _per(time.process_time() - t0, len(decoded_p), results)
    for det in fresh.inference_detectors:
        t0 = time.process_time()
        results = [det.check(e) for e in decoded_i]
        per[det.name] = _per(time.process_time() - t0, len(decoded_i), results)

    # The content detectors together (issue 3's one-core target: >= 20,000 prompts/s)
    content = [row for name, row in per.items() if name in ("content.dlp", "content.injection", "content.response")]
    content_us = sum(row["us_per_event"] for row in content)
    if len(content) == 3 and content_us > 0:
        per["content together (dlp + injection + response)"] = {
            "us_per_event": round(content_us, 2), "eps": round(1e6 / content_us), "events": content[0]["events"],
            "findings": sum(row["findings"] for row in content)}

    eps = len(body) / cpu
    return {
        "detect_core_eps": round(eps),
        "detect_core_eps_wall": round(len(body) / wall),
        "detect_core_prompt_share": round(n_prompt / len(body), 3),
        "detect_core_events": len(body),
        "detect_core_findings": findings,
        "detect_core_dead_letters": dead,
        "detect_core_mean_prompt_bytes": round(sum(map(len, prompt_bytes)) / max(1, len(prompt_bytes))),
        "detect_core_rss_mb": round(peak, 1),
        "detect_core_input_mb": round(sum(len(v) for _, _, v in mix) / 2**20, 1),
        "detect_core_rss_delta_mb": round(rss_after - rss_loaded, 1),
        "detect_core_rss_base_mb": round(rss_base, 1),
        "detect_core_target_eps": TARGET_EPS,
        "detect_core_content_eps": round(1e6 / content_us) if len(content) == 3 and content_us > 0 else None,
        "detect_core_text": "synthetic" if synthetic_text else "sharegpt",
        "per_detector": per,
    }


def _per(seconds: float, n: int, results: list[list[Any]]) -> dict[str, float]:
    return {"us_per_event": round(1e6 * seconds / max(1, n), 2),
            "eps": round(n / seconds) if seconds > 0 else 0,
            "events": n, "findings": sum(len(r) for r in results)}


def _args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, help="measured events (default 200k, quick 30k)")
    parser.add_argument("--warmup", type=int, help="events before measuring")
    parser.add_argument("--prompts", type=int, help="distinct real prompts to sample from")
    parser.add_argument("--synthetic-text", action="store_true",
                        help="short synthetic prompts instead of ShareGPT (smoke tests only)")


if __name__ == "__main__":
    sys.exit(cli("detect_core", run, _args))
