"""MTTD and MTTC on the real stack, under rate-limited background load.

One ``aisoar worker`` (fresh topics, group and index prefix; identity = the stack's
oidc-provider; credential vault = a file this benchmark writes). For each background rate
(1,000 and 5,000 events/s of the realistic mix, produced by a token-bucket limiter), M
offending prompts are produced, one every ``--every`` seconds: each pastes a fresh AWS key
pair through its own credential, for which a live access token was minted at the identity
server beforehand. Per offending event, from the wall-clock instant it was handed to the
producer:

* MTTD = until its finding is searchable in the index (polled every 100 ms by
  ``aisoar.event.id``, no forced refresh: the index's own refresh interval counts);
  ``detect_ms`` = the finding's ``event.created`` (``Finding.detected_at``, stamped by the
  worker) minus the same instant;
* MTTC = until RFC 7662 introspection of its token at oidc-provider says ``active: false``
  (polled every 100 ms): the leaked-credential playbook revoked it (RFC 7009).

``hops_ms``: where MTTC went, per stage (:func:`_hops`), from the Kafka timestamps of the
first record naming the offending event on each topic after the run.

``python -m bench.latency [--quick] [--rates 1000,5000] [--offenders M] [--stack-file F]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import string
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._common import cli, load_avg, percentiles

TARGETS = {"mttd_p99_ms": 500, "mttc_p99_ms": 1000}


def _offender(rng: random.Random, tag: str, i: int, rate: int) -> tuple[str, str, bytes]:
    from bench.workload import prompt_record

    key = "AKIA" + "".join(rng.choice(string.ascii_uppercase + "234567") for _ in range(16))
    secret = "".join(rng.choice(string.ascii_letters + string.digits + "/+") for _ in range(40))
    cred = f"cred-{tag}-{rate}-{i}"
    eid = f"{tag}-off-{rate}-{i}"
    text = (f"Why does this deploy script fail?\n\nexport AWS_ACCESS_KEY_ID={key}\n"
            f"export AWS_SECRET_ACCESS_KEY={secret}\naws s3 sync ./build s3://corp-releases")
    raw = prompt_record(eid, datetime.now(UTC), f"dev{i}@corp.example", f"sess-{eid}", text,
                        "The bucket policy denies s3:PutObject.", credential=cred)
    return cred, eid, raw


async def _background(producer: Any, records: list[tuple[str, bytes, bytes]], rate: int, stop: asyncio.Event,
                      sent: list[int]) -> None:
    """Token bucket: every 10 ms, send what the rate allows since the start; acks awaited in the background."""
    began = time.monotonic()
    i = 0
    pending: list[Any] = []
    while not stop.is_set():
        due = int((time.monotonic() - began) * rate)
        while sent[0] < due:
            topic, key, value = records[i % len(records)]
            pending.append(await producer.send(topic, value, key=key))
            i += 1
            sent[0] += 1
        if len(pending) > 2000:
            await asyncio.gather(*pending)
            pending.clear()
        await asyncio.sleep(0.01)
    if pending:
        await asyncio.gather(*pending)


async def _phase(settings: Any, oidc: dict[str, Any], vault: Path, tag: str, rate: int, offenders: int,
                 every: float, background: list[tuple[str, bytes, bytes]], timeout: float) -> dict[str, Any]:
    import httpx
    from aiokafka import AIOKafkaProducer

    from aisoar.demo import mint_token
    from streams.produce import kafka_client_options
    from streams.siem import IndexLayout, SiemSink, make_client

    rng = random.Random(rate)
    plan = [_offender(rng, tag, i, rate) for i in range(offenders)]
    tokens = {cred: await asyncio.to_thread(mint_token, oidc) for cred, _, _ in plan}
    current = json.loads(vault.read_text()) if vault.exists() else {}
    current.update({cred: [tok] for cred, tok in tokens.items()})
    vault.write_text(json.dumps(current))
    vault.chmod(0o600)

    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all", enable_idempotence=True,  # type: ignore[arg-type]
                                linger_ms=5)
    await producer.start()
    sink = SiemSink(make_client(settings.siem.url), layout=IndexLayout(prefix=settings.siem.index_prefix))
    responder = oidc["clients"]["aisoar-responder"]
    http = httpx.AsyncClient(timeout=10.0, auth=(responder["client_id"], responder["client_secret"]))
    produced_at: dict[str, float] = {}
    seen_at: dict[str, float] = {}
    detected: dict[str, float] = {}
    revoked_at: dict[str, float] = {}
    stop = asyncio.Event()
    sent = [0]
    load0 = load_avg()
    bg = asyncio.create_task(_background(producer, background, rate, stop, sent))

    async def offend() -> None:
        await asyncio.sleep(2.0)  # background first
        for cred, eid, raw in plan:
            produced_at[eid] = time.time()
            await (await producer.send(settings.topics.prompts, raw, key=f"sess-{eid}".encode()))
            asyncio.get_running_loop().create_task(watch_token(cred, eid))
            await asyncio.sleep(every)

    async def watch_token(cred: str, eid: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = await http.post(f"{oidc['issuer']}/token/introspection", data={"token": tokens[cred]})
                if r.status_code == 200 and not r.json().get("active"):
                    revoked_at[eid] = time.time()
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)

    async def watch_index() -> None:
        deadline = time.monotonic() + timeout + offenders * every
        while time.monotonic() < deadline and (len(seen_at) < offenders or len(revoked_at) < offenders):
            waiting = [e for e in produced_at if e not in seen_at]
            if waiting:
                try:
                    hits = await sink.search("finding", {"terms": {"aisoar.event.id": waiting}}, size=100)
                except Exception:
                    hits = []
                now = time.time()
                for hit in hits:
                    src = hit["_source"]
                    eid = src.get("aisoar", {}).get("event", {}).get("id")
                    if eid in produced_at and eid not in seen_at:
                        seen_at[eid] = now
                        created = src.get("event", {}).get("created")
                        if created:
                            detected[eid] = datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
            elif len(produced_at) == offenders and len(revoked_at) >= offenders:
                break
            await asyncio.sleep(0.1)

    began = time.monotonic()
    try:
        await asyncio.gather(offend(), watch_index())
        # the last revocations may still be in flight
        end = time.monotonic() + min(timeout, 30.0)
        while len(revoked_at) < offenders and time.monotonic() < end:
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await bg
        await producer.stop()
        await sink.aclose()
        await http.aclose()
    elapsed = time.monotonic() - began
    # Not seen within the timeout counts as infinitely late (censored): a percentile that
    # falls on one is reported as None ("> timeout"), never as the figure of the ones that made it.
    inf = float("inf")
    mttd = [1000 * (seen_at[e] - produced_at[e]) if e in seen_at else inf for e in produced_at]
    mttc = [1000 * (revoked_at[e] - produced_at[e]) if e in revoked_at else inf for e in produced_at]
    det = [1000 * (detected[e] - produced_at[e]) for e in detected]
    return {
        "rate": rate, "background_sent": sent[0], "background_eps_achieved": round(sent[0] / elapsed),
        "offenders": offenders, "found": len(seen_at), "revoked": len(revoked_at),
        "mttd_ms": _finite(percentiles(mttd)), "detect_ms": percentiles(det), "mttc_ms": _finite(percentiles(mttc)),
        "mttd_max_ms": _finite_one(max(mttd, default=None)), "mttc_max_ms": _finite_one(max(mttc, default=None)),
        "timeout_ms": 1000 * timeout,
        "seconds": round(elapsed, 1), "load_avg": [load0, load_avg()],
        "hops_ms": await _hops(settings, plan, produced_at, revoked_at),
    }


#: The hops of an offending event on its way to containment, each ending at the Kafka
#: CreateTime of the first record of the next topic that names it (``{findings}`` ... ).
_HOPS = (("detect", "{findings}"), ("fan_out", "{findings}.by-key"), ("correlate", "{incidents}"),
         ("respond", "{actions}"))


async def _hops(settings: Any, plan: list[tuple[str, str, bytes]], produced_at: dict[str, float],
                revoked_at: dict[str, float]) -> dict[str, dict[str, float | None]]:
    """Where the time of each offending event went: per hop, ms from the previous topic's
    record naming it (its credential or event id) to the first record of the next; ``act``
    = first audit record → introspection inactive. Read back from the run's own topics."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from streams.produce import kafka_client_options

    t = settings.topics
    names = [fmt.format(findings=t.findings, incidents=t.incidents, actions=t.actions) for _, fmt in _HOPS]
    needles = {eid: (f'"{cred}"'.encode(), f'"{eid}"'.encode()) for cred, eid, _ in plan}
    first: dict[tuple[str, str], float] = {}
    consumer = AIOKafkaConsumer(**kafka_client_options(settings), enable_auto_commit=False)  # type: ignore[arg-type]
    await consumer.start()
    try:
        tps = [TopicPartition(name, p) for name in names for p in range(t.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            for tp, records in (await consumer.getmany(timeout_ms=1000, max_records=5000)).items():
                for record in records:
                    for eid, (cred, event) in needles.items():
                        if record.value and (cred in record.value or event in record.value):
                            key = (eid, tp.topic)
                            first[key] = min(first.get(key, float("inf")), record.timestamp / 1000)
    finally:
        await consumer.stop()
    out: dict[str, dict[str, float | None]] = {}
    for i, (hop, _) in enumerate(_HOPS):
        spans = []
        for eid, at in produced_at.items():
            start = at if i == 0 else first.get((eid, names[i - 1]))
            end = first.get((eid, names[i]))
            if start is not None and end is not None:
                spans.append(1000 * (end - start))
        out[hop] = percentiles(spans)
    out["act"] = percentiles([1000 * (revoked_at[e] - first[(e, names[-1])]) for e in revoked_at
                              if (e, names[-1]) in first])
    return out


def _finite_one(v: float | None) -> float | None:
    return None if v is None or v == float("inf") else round(v, 1)


def _finite(ps: dict[str, float | None]) -> dict[str, float | None]:
    return {k: _finite_one(v) for k, v in ps.items()}


def run(*, quick: bool = False, rates: str | None = None, offenders: int | None = None, every: float | None = None,
        stack_file: str | None = None, timeout: float | None = None, extra_env: str | None = None) -> dict[str, Any]:
    from bench._stackrun import (
        Worker,
        running_stack,
        settings_of,
        wait_assigned,
        worker_env,
    )
    from bench.workload import make_mix
    from streams.admin import ensure_topics

    rates = rates or ("1000,5000" if quick else "100,1000,5000")
    m = offenders or (8 if quick else 25)
    every = every or (0.7 if quick else 1.0)
    timeout = timeout or (30.0 if quick else 90.0)
    out: dict[str, Any] = {"latency_runs": {}, "latency_targets": TARGETS}
    workdir = Path(tempfile.mkdtemp(prefix="aisoar-bench-lat-"))
    vault = workdir / "credentials.json"
    vault.write_text("{}")
    vault.chmod(0o600)
    try:
        with running_stack(["kafka", "opensearch", "oidc"], stack_file) as (state, state_file):
            oidc = state["services"]["oidc"]
            mix = make_mix(20_000 if quick else 60_000, seed=3, attack_rate=0.0, step_ms=1.0,
                           start=datetime.now(UTC))
            # Each rate on its own worker and fresh topics: no backlog (nor revocation budget,
            # 30 per minute per worker) is inherited from the previous rate.
            for rate in [int(r) for r in rates.split(",")]:
                env = worker_env(state_file, workdir, partitions=2, extra={
                    "AISOAR_CREDENTIAL_VAULT": str(vault),
                    "AISOAR_IDENTITY__CLIENT_SECRET": oidc["clients"]["aisoar-responder"]["client_secret"],
                    "AISOAR_SIEM__FLUSH_INTERVAL_S": "0.05",
                    **(dict(e.split("=", 1) for e in extra_env.split(",")) if extra_env else {}),
                })
                settings = settings_of(env)
                t = settings.topics
                asyncio.run(ensure_topics(settings))
                topic_of = {"prompt": t.prompts, "inference": t.inference}
                background = [(topic_of[k], key, v) for k, key, v in mix]
                worker = Worker(env, workdir / f"{env['BENCH_TAG']}-worker.log")
                worker.start()
                try:
                    started = worker.wait_ready()
                    asyncio.run(wait_assigned(settings, [t.prompts, t.inference]))
                    r = asyncio.run(_phase(settings, oidc, vault, env["BENCH_TAG"], rate, m, every, background, timeout))
                    r["worker_start_s"] = round(started, 1)
                except Exception as exc:
                    r = {"rate": rate, "error": f"{type(exc).__name__}: {exc}"[:2000]}
                finally:
                    worker.stop()
                out["latency_runs"][str(rate)] = r
    finally:
        logs = Path(tempfile.gettempdir()) / "aisoar-bench-logs"
        logs.mkdir(exist_ok=True)
        for log in workdir.glob("*.log"):
            shutil.copy(log, logs / log.name)
        shutil.rmtree(workdir, ignore_errors=True)
    runs = out["latency_runs"]
    for rate, r in runs.items():
        for key in ("mttd", "mttc"):
            for p in ("p50", "p95", "p99"):
                out[f"{key}_{p}_ms_at_{rate}"] = (r.get(f"{key}_ms") or {}).get(p)
            out[f"{key}_done_at_{rate}"] = f"{r.get('found' if key == 'mttd' else 'revoked')}/{r.get('offenders')}"
    top = runs.get("5000") or (list(runs.values())[-1] if runs else {})
    for key in ("mttd", "mttc"):
        for p in ("p50", "p95", "p99"):
            out[f"{key}_{p}_ms"] = (top.get(f"{key}_ms") or {}).get(p)
    out["latency_headline_rate"] = top.get("rate")
    return out


def _args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rates", help="background events/s, comma-separated (default 100,1000,5000; quick 1000,5000)")
    parser.add_argument("--extra-env", help="K=V,K=V worker environment overrides (experiments)")
    parser.add_argument("--offenders", type=int, help="offending events per rate (default 25, quick 8)")
    parser.add_argument("--every", type=float, help="seconds between offending events (default 1.0, quick 0.7)")
    parser.add_argument("--stack-file", help="state.json of a running stack to reuse (else one is started)")
    parser.add_argument("--timeout", type=float, help="seconds to wait for one finding / revocation")


if __name__ == "__main__":
    sys.exit(cli("latency", run, _args))
