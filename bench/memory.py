"""Memory at scale: RSS with N distinct principals and sessions active.

Each of N principals (own session, own credential) sends one prompt and one inference
request, and gets one low-severity finding, then goes idle. That drives every per-entity
state a worker keeps: the stateful detectors of the shipped set (principal anomaly,
denial of wallet, model extraction per (model, principal)) and the correlation state
(:class:`streams.correlation.Correlator` over an :class:`EncodedStore`, as the worker's
in-memory Faust tables hold it). Content detectors keep no per-entity state.

Each size runs in a fresh process, so ``rss_mb`` is the whole process (interpreter,
libraries, detectors) as a worker would show it; ``bytes_per_principal`` is the growth
over the same process before the first principal, divided by N. The per-component split is
the growth during each component's pass: principal anomaly and denial of wallet share one
:class:`detectors.state.SlotStore`, whose new slots get every table's row, so the wallet's
rows show under the principal detector (``slot_store_bytes_per_principal`` is the stores'
own count of rows, columns and index in use).

``python -m bench.memory [--quick] [--sizes 100000,1000000] [--json-out FILE]``
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from bench._common import ROOT, cli, load_avg, peak_rss_mb, rss_mb

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def measure(n: int) -> dict[str, Any]:
    """In this process: drive ``n`` principals through the stateful detectors and correlation."""
    from aisoar.events import InferenceEvent, PromptEvent
    from aisoar.findings import Entities, Finding
    from detectors.registry import default_detectors
    from streams.correlation import Correlator, EncodedStore

    dets = default_detectors()
    stateful_p = [d for d in dets.prompt if d.name.startswith("behaviour.")]
    stateful_i = [d for d in dets.inference if d.name.startswith("behaviour.")]
    stores: tuple[dict[str, bytes], dict[str, bytes]] = ({}, {})
    correlator = Correlator(EncodedStore(stores[0]), context=EncodedStore(stores[1]))
    gc.collect()
    before = rss_mb()
    started = time.process_time()
    step = timedelta(milliseconds=max(1.0, 3_600_000 / n))  # all within an hour: nothing expires
    findings = 0

    def ids(i: int) -> tuple[datetime, str, str, str]:
        return T0 + step * i, f"user{i:07d}@corp.example", f"sess-{i:07d}", f"cred-{i:07d}"

    # One component after the other over all N principals (same end state as interleaving
    # them), so the growth of each is measured on its own.
    breakdown: dict[str, int] = {}
    last = before
    for d in stateful_p:
        for i in range(n):
            at, user, session, cred = ids(i)
            findings += len(d.check(PromptEvent(
                schema_version=1, event_id=f"p{i}", timestamp=at, user_id=user, session_id=session,
                server_address="api.openai.com", provider="openai", request_model="gpt-4o", credential_id=cred,
                input_tokens=40 + i % 200, output_tokens=120 + i % 300,
                prompt="Summarise the meeting notes in five bullet points.", response="Here is a summary.")))
        gc.collect()
        now = rss_mb()
        breakdown[d.name] = round((now - last) * 2**20 / n)
        last = now
    for d in stateful_i:
        for i in range(n):
            at, user, session, cred = ids(i)
            findings += len(d.check(InferenceEvent(
                schema_version=1, event_id=f"q{i}", timestamp=at, model_name="fraud-scorer", model_version="3",
                score=0.8, predicted_class="legit", credential_id=cred, user_id=user)))
        gc.collect()
        now = rss_mb()
        breakdown[d.name] = round((now - last) * 2**20 / n)
        last = now
    for i in range(n):
        at, user, session, cred = ids(i)
        correlator.process_finding(Finding(
            id=f"f{i:012x}", rule_id="injection.heuristic", rule_name="low", category="prompt_injection",
            severity="low", confidence=0.5, timestamp=at, event_id=f"p{i}", event_kind="prompt",
            entities=Entities(user_id=user, session_id=session, credential_id=cred),
            detector="bench", detector_version="1", score=0.3))
    cpu = time.process_time() - started
    from detectors.state import SlotStore

    slot_stores = {id(v): v for d in (*stateful_p, *stateful_i) for v in vars(d).values() if isinstance(v, SlotStore)}
    gc.collect()
    after = rss_mb()
    breakdown["correlation"] = round((after - last) * 2**20 / n)
    return {
        "principals": n,
        "rss_mb": round(after, 1),
        "rss_base_mb": round(before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "bytes_per_principal": round((after - before) * 2**20 / n),
        "correlation_keys": len(stores[0]) + len(stores[1]),
        "correlation_bytes_per_principal": round(sum(len(v) for v in stores[0].values()) / n),
        "us_per_principal": round(1e6 * cpu / n, 1),
        "findings": findings,
        "bytes_per_principal_by_component": breakdown,
        "slot_store_bytes_per_principal": round(sum(s.nbytes for s in slot_stores.values()) / n),
    }


def run(*, quick: bool = False, sizes: str | None = None, one: int | None = None) -> dict[str, Any]:
    if one:  # child mode
        return measure(one)
    wanted = [int(s) for s in (sizes or ("100000" if quick else "100000,1000000")).split(",")]
    out: dict[str, Any] = {"memory_runs": {}}
    for n in wanted:
        load = load_avg()
        proc = subprocess.run([sys.executable, "-m", "bench.memory", "--one", str(n)], cwd=ROOT,
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            out["memory_runs"][str(n)] = {"error": proc.stderr[-2000:]}
            continue
        result = json.loads(proc.stdout)
        result["load_avg"] = [load, load_avg()]
        out["memory_runs"][str(n)] = result
    runs = {int(k): v for k, v in out["memory_runs"].items() if "rss_mb" in v}
    if 100_000 in runs:
        out["rss_mb_100k_principals"] = runs[100_000]["rss_mb"]
    if 1_000_000 in runs:
        out["rss_mb_1m_principals"] = runs[1_000_000]["rss_mb"]
    elif runs:  # quick: extrapolate from the largest measured size, and say so
        n, r = max(runs.items())
        out["rss_mb_1m_principals"] = round(r["rss_base_mb"] + r["bytes_per_principal"] * 1_000_000 / 2**20, 1)
        out["rss_mb_1m_principals_extrapolated"] = True
    if runs:
        out["bytes_per_idle_principal"] = max(runs.items())[1]["bytes_per_principal"]
    return out


def _args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", help="comma-separated principal counts (default 100000,1000000; quick 100000)")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)


if __name__ == "__main__":
    sys.exit(cli("memory", run, _args))
