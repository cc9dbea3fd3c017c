"""Faults injected into a real worker and real servers; each test asserts what was
indexed, what reached the topics, and what the target servers saw.

(a) the worker SIGKILLed mid-stream and restarted, three times (shared stack: nothing
    of it is stopped);
(b) the search index hung (SIGSTOP of a PRIVATE OpenSearch) for 45 s under load;
(c) an action target (a local "identity server" we control) answering 503;
(d) the Kafka broker hung (SIGSTOP of a PRIVATE Kafka) under load.

(b) and (d) start their own servers (a minute or more each on a busy machine) and are
marked ``soak``; run them with ``-m soak``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import string
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import pytest

from aisoar.events import encode
from streams.lag import group_lag
from tests.e2e.conftest import run
from tests.e2e.kafka_io import produce, read_topic, search_index, wait_for_count

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

ALNUM = string.ascii_letters + string.digits


def prompt(event_id: str, text: str, at: datetime, credential: str) -> bytes:
    return encode({
        "schema_version": 1, "event.id": event_id, "@timestamp": at.isoformat(), "user.id": f"{credential}@corp.example",
        "session.id": f"sess-{event_id}", "credential.id": credential, "server.address": "api.openai.com",
        "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o", "prompt": text, "response": "ok",
    })


def workload(settings: Any, n: int, *, seed: int = 1, secret_every: int = 5, bad_every: int = 50,
             credentials: int = 7) -> tuple[list[tuple[str, bytes, bytes]], set[str], set[bytes]]:
    """``n`` prompt records: a GitHub token every ``secret_every``, a malformed record every ``bad_every``."""
    rng = random.Random(seed)
    at = datetime.now(UTC) - timedelta(minutes=10)
    records: list[tuple[str, bytes, bytes]] = []
    planted: set[str] = set()
    bad: set[bytes] = set()
    for i in range(n):
        event_id = f"ev-{seed}-{i:05d}"
        if i % bad_every == bad_every - 1:
            raw = f'{{"schema_version": 1, "event.id": {i}}}'.encode()
            bad.add(raw)
        elif i % secret_every == 0:
            planted.add(event_id)
            raw = prompt(event_id, "CI token: ghp_" + "".join(rng.choice(ALNUM) for _ in range(36)),
                         at + timedelta(milliseconds=i), f"cred-{i % credentials}")
        else:
            raw = prompt(event_id, "Summarise the weekly report, please.", at + timedelta(milliseconds=i), f"cred-{i % credentials}")
        records.append((settings.topics.prompts, f"s{i % 11}".encode(), raw))
    return records, planted, bad


def wait_consumed(settings: Any, timeout: float = 240.0) -> None:
    """Until the worker's group has committed all of the input, and all of the findings and
    their fanned-out records: the incidents topic is complete only once correlation is done
    (under load it finishes after the findings are indexed, and an early read of the
    incidents topic came up short: 120 or 185 of the 408 incident ids the index then held)."""
    topics = [settings.topics.prompts, settings.topics.findings, f"{settings.topics.findings}.by-key"]
    deadline = time.monotonic() + timeout
    while True:
        lag = run(group_lag(settings, settings.worker.id, topics))
        if lag == dict.fromkeys(topics, 0):
            return
        assert time.monotonic() < deadline, f"input, findings or correlation not consumed: {lag}"
        time.sleep(2)


def assert_accounted(settings: Any, planted: set[str], bad: set[bytes]) -> dict[str, Any]:
    """Every input event: a finding (the planted ones, exactly), clean, or a dead letter;
    no duplicate finding documents, no duplicate incident records."""
    wait_consumed(settings)
    secret = {"term": {"rule.category": "secret"}}
    count = run(wait_for_count(settings, "finding", secret, len(planted), timeout=600, quiet=8))
    docs = run(search_index(settings, "finding", secret))
    ids = Counter((d["aisoar"]["event"]["id"], d["rule"]["id"]) for d in docs)
    if not count == len(docs) == len(ids) == len(planted):
        raise AssertionError(f"{(count, len(docs), len(ids), len(planted))}: {where_lost(settings, planted, ids)}")
    assert {event_id for event_id, _ in ids} == planted
    # Topics: at-least-once processing means a crash replays records, so a record may appear
    # twice there; what analysts and playbooks see may not (checked below).
    findings = [json.loads(m.value) for m in run(read_topic(settings, settings.topics.findings, timeout=30))]
    dup_findings = [k for k, v in Counter(f["id"] for f in findings).items() if v > 1]
    dead = [json.loads(m.value) for m in run(read_topic(settings, settings.topics.deadletter, timeout=30))]
    import base64

    dead_payloads = Counter(base64.b64decode(d["payload_b64"]) for d in dead if d["topic"] == settings.topics.prompts)
    assert set(dead_payloads) == bad
    incidents = [json.loads(m.value) for m in run(read_topic(settings, settings.topics.incidents, timeout=30))]
    incidents = [i for i in incidents if "correlation_key" in i]  # not the approval decisions on that topic
    dup_incidents = [k for k, v in Counter((i["id"], i.get("revision", 1)) for i in incidents).items() if v > 1]
    incident_ids = {i["id"] for i in incidents}
    run(wait_for_count(settings, "incident", None, len(incident_ids), timeout=300, quiet=8))
    incident_docs = run(search_index(settings, "incident"))
    finding_ids = {f["id"] for f in findings}
    extra = [d for d in incident_docs if not (set(json.dumps(d).split('"')) & incident_ids)]
    if extra:
        print(f"{len(extra)} indexed incidents are not in the committed topic, e.g. {json.dumps(extra[0])[:1500]}")
        print("their findings committed:", sum(1 for d in extra for f in finding_ids if f in json.dumps(d)))
    assert len(incident_docs) == len(incident_ids), f"one index document per incident id ({len(extra)} unknown ids)"
    print(f"\nfindings: {len(findings)} records ({len(dup_findings)} duplicated ids), {len(docs)} secret docs; "
          f"dead letters: {sum(dead_payloads.values())} for {len(bad)} bad records; "
          f"incidents: {len({i['id'] for i in incidents})} ids, {len(incidents)} records, {len(dup_incidents)} duplicated revisions")
    # No finding counted twice by correlation, replays included (the incident keeps its latest
    # 50 finding ids; below that bound the count must equal the distinct ids it holds).
    for doc in incident_docs:
        incident = doc["aisoar"]["incident"]
        if incident["finding_count"] <= 50:
            assert incident["finding_count"] == len(set(incident["finding_ids"])), incident
    return {"findings": findings, "incidents": incidents}


def where_lost(settings: Any, planted: set[str], indexed: Counter[tuple[str, str]]) -> str:
    """For a failed accounting: which planted events have no indexed finding, and how far
    each got (in the input topic? a finding on the findings topic? at which offsets?)."""
    missing = planted - {event_id for event_id, _ in indexed}
    if not missing:
        return "no planted event is missing (duplicates or extras)"
    inputs = {json.loads(m.value).get("event.id"): (m.partition, m.offset)
              for m in run(read_topic(settings, settings.topics.prompts, timeout=30)) if m.value.startswith(b"{")}
    found: dict[str, list[tuple[int, int]]] = {}
    for m in run(read_topic(settings, settings.topics.findings, timeout=30)):
        event_id = json.loads(m.value).get("event_id") or ""
        if event_id in missing:
            found.setdefault(event_id, []).append((m.partition, m.offset))
    return "; ".join(f"{e}: input partition/offset {inputs.get(e)}, findings topic {found.get(e, 'NONE')}"
                     for e in sorted(missing)[:10])


# ---------------------------------------------------------------------- (a) SIGKILL


def test_worker_sigkilled_three_times_mid_stream(start_worker) -> None:
    worker = start_worker(AISOAR_PLAYBOOKS__APPROVALS_PORT="0")
    settings = worker.settings
    records, planted, bad = workload(settings, 2000)
    chunks = [records[i:i + 500] for i in range(0, len(records), 500)]
    rng = random.Random()
    for round_, chunk in enumerate(chunks[:3]):
        # A fresh chunk arrives; crash the worker while it is working on it (no shutdown hook).
        run(produce(settings, chunk))
        time.sleep(rng.uniform(0.3, 1.5))
        lag = run(group_lag(settings, settings.worker.id, [settings.topics.prompts]))
        worker.kill()
        print(f"round {round_ + 1}: SIGKILL with input lag {lag}")
        worker.start()
    run(produce(settings, chunks[3]))
    try:
        assert_accounted(settings, planted, bad)
    except AssertionError as exc:
        recovery = [line for line in worker.log.read_text(errors="replace").splitlines() if "Error in recovery" in line]
        raise AssertionError(f"{exc}\nworker log, table recovery errors: {recovery[:5]}") from None


# ---------------------------------------------------------------------- (c) action target failing


class _Recorder(BaseHTTPRequestHandler):
    calls: list[tuple[float, str, str]]
    requests: list[tuple[float, str, str, str]]  # with the Authorization header
    tokens: list[tuple[float, str, str]]  # (time, method, the form's token)
    status: int
    delay: float

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body_in = self.rfile.read(length) if length else b""
        self.calls.append((time.monotonic(), self.command, self.path))
        # which token a revocation is about: concurrent revocations interleave their retries
        token = urllib.parse.parse_qs(body_in.decode(errors="replace")).get("token", [""])[0]
        self.tokens.append((time.monotonic(), self.command, token))
        self.requests.append((time.monotonic(), self.command, self.path, self.headers.get("authorization") or ""))
        if self.command == "POST" and self.delay:
            time.sleep(self.delay)  # slower than the engine's HTTP timeout (10 s)
        body = b"[]" if self.command == "GET" else b'{"error": "server_error"}'
        code = 200 if self.command == "GET" else self.status
        try:
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


class FakeServer:
    """A tiny HTTP server on 127.0.0.1 that answers every POST with ``status`` (after
    ``delay`` seconds) and records calls. Mocks a target on purpose: the real identity
    server cannot be made to fail this way."""

    def __init__(self, status: int, delay: float = 0.0) -> None:
        handler = type("Handler", (_Recorder,), {"calls": [], "requests": [], "tokens": [], "status": status,
                                                 "delay": delay})
        self.handler = handler
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.closed = False

    @property
    def calls(self) -> list[tuple[float, str, str]]:
        return list(self.handler.calls)

    @property
    def requests(self) -> list[tuple[float, str, str, str]]:
        return list(self.handler.requests)

    def close(self) -> None:
        """Stop answering; the port then refuses connections (a target that is down)."""
        if not self.closed:
            self.closed = True
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def fake_servers(request: pytest.FixtureRequest) -> Iterator[tuple[FakeServer, FakeServer]]:
    fault = getattr(request, "param", "answering-503")
    identity = FakeServer(503, delay=15.0 if fault == "answering-after-15s" else 0.0)
    alertmanager = FakeServer(200)
    if fault == "refusing-connections":
        identity.close()
    yield identity, alertmanager
    identity.close()
    alertmanager.close()


@pytest.mark.parametrize("fake_servers", ["answering-503", "refusing-connections",
                                          pytest.param("answering-after-15s", marks=pytest.mark.soak)],
                         indirect=True)
def test_identity_server_failing(stack, worker_env, start_worker, tmp_path: Path, request: pytest.FixtureRequest,
                                 fake_servers: tuple[FakeServer, FakeServer]) -> None:
    """The identity server answers 503, is down, or answers after 15 s (past the engine's
    10 s timeout): revocations are retried with backoff, the circuit opens, on-call is paged,
    and detection never waits for any of it."""
    identity, alertmanager = fake_servers
    vault = tmp_path / "vault.json"  # the gateway's token vault: one live token per credential
    vault.write_text(json.dumps({f"cred-{i}": [f"tok-{i}-{os.urandom(8).hex()}"] for i in range(0, 300, 30)}))
    vault.chmod(0o600)
    # A stack file with Kafka and OpenSearch only: the stack's own oidc/alertmanager would
    # otherwise override the fake targets (apply_stack_state wins over AISOAR_* variables).
    env = _private_env(stack, tmp_path, worker_env, only=("kafka", "opensearch"))
    # One incident at a time (playbooks.concurrency=1): the first revocation's whole retry
    # schedule is then observable before the breaker opens. With concurrent incidents the
    # first attempts of five tokens may open it before any token is retried at all.
    worker = start_worker(**env, AISOAR_PLAYBOOKS__CONCURRENCY="1", AISOAR_IDENTITY__ISSUER_URL=identity.url,
                          AISOAR_IDENTITY__CLIENT_ID="aisoar", AISOAR_IDENTITY__CLIENT_SECRET="test-only-secret",
                          AISOAR_ONCALL__ALERTMANAGER_URL=alertmanager.url, AISOAR_CREDENTIAL_VAULT=str(vault))
    assert worker.settings.identity.issuer_url == identity.url
    assert worker.settings.oncall.alertmanager_url == alertmanager.url
    settings = worker.settings
    # 10 leaked tokens of 10 credentials (10 revocations), in a stream of clean prompts.
    records, planted, bad = workload(settings, 300, seed=3, secret_every=30, bad_every=10_000, credentials=10_000)
    run(produce(settings, records))
    assert_accounted(settings, planted, bad)  # detection keeps flowing while actions fail

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        actions = [json.loads(m.value) for m in run(read_topic(settings, settings.topics.actions, timeout=10))]
        revokes = [a for a in actions if a["action"] == "identity:revoke_token"]
        done = {a["idempotency_key"] for a in revokes if a["status"] in ("failed", "escalated", "succeeded", "skipped")}
        if len(done) >= len(planted):
            break
        time.sleep(3)
    statuses = Counter((a["action"], a["status"]) for a in actions)
    print(f"\naction records: {dict(statuses)}")
    posts = [(t, path) for t, method, path in identity.calls if method == "POST"]
    print(f"identity server saw {len(posts)} POSTs; alertmanager saw {len(alertmanager.calls)} calls")
    assert not [a for a in revokes if a["status"] == "succeeded"]
    assert statuses[("identity:revoke_token", "failed")] >= len(planted) - 1
    fault = request.node.callspec.params["fake_servers"]
    if fault == "answering-503":
        # Retries with exponential backoff: the first revocation was tried 4 times, at least
        # 0.2, 0.4, 0.8 s apart (policy backoff_s doubling; a busy machine only adds to them,
        # so lower bounds, not ratios). With the slow server the 10 s timeout dominates.
        # Attempts are grouped by token all the same, so the check reads one revocation's schedule.
        by_token: dict[str, list[float]] = {}
        for t, method, token in identity.handler.tokens:
            if method == "POST" and token:
                by_token.setdefault(token, []).append(t)
        first = min((ts for ts in by_token.values() if len(ts) >= 4), key=lambda ts: ts[0], default=[])[:4]
        gaps = [b - a for a, b in itertools.pairwise(first)]
        assert len(gaps) == 3 and all(gap >= 0.2 * 2**i for i, gap in enumerate(gaps)), gaps
    if fault != "refusing-connections":
        # The circuit opened: far fewer calls than 10 revocations x 4 attempts.
        assert 4 <= len(posts) < 4 * len(planted), len(posts)
    assert any("circuit" in (a.get("error") or "").lower() for a in revokes)
    # Escalation: on-call paged (Alertmanager received alerts) and recorded as such.
    assert any(a["status"] == "escalated" for a in actions)
    assert [c for c in alertmanager.calls if c[1] == "POST"], "on-call was never paged"


# ---------------------------------------------------------------------- private servers for (b), (d)


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Any]:
    """``private("opensearch")``: a server of our own (never the session's), stopped after the test."""
    from stack import cache_dir, start_service

    started: list[Any] = []

    def start(name: str) -> tuple[Any, dict[str, Any]]:
        service, entry = start_service(name, root=tmp_path / "private", cache=cache_dir())
        started.append(service)
        return service, entry

    yield start
    for service in started:
        with_group(service.proc.pid, signal.SIGCONT)  # never leave a stopped process behind
        service.stop()


def with_group(pid: int, sig: int) -> None:
    try:
        os.killpg(os.getpgid(pid), sig)
    except ProcessLookupError:
        pass


def rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 1e6


def _private_env(stack: Any, tmp_path: Path, worker_env: dict[str, str], only: tuple[str, ...] = ("kafka", "opensearch"),
                 **services: dict[str, Any]) -> dict[str, str]:
    """A stack file for the worker: the session's Kafka and OpenSearch (or private ones)."""
    state = stack.state()
    state["services"] = {name: entry for name, entry in {**state["services"], **services}.items() if name in only}
    path = tmp_path / "private-state.json"
    path.write_text(json.dumps(state))
    return {"AISOAR_STACK_FILE": str(path), "AISOAR_PLAYBOOKS__APPROVALS_PORT": "0"}


@pytest.mark.soak
def test_search_index_down_60s_under_load_buffered_durably(stack, worker_env, start_worker, private,
                                                           tmp_path: Path) -> None:
    """A private OpenSearch hangs (SIGSTOP) for 60 s while 2,000 more events arrive. The
    worker stays up with bounded memory; then, still during the outage, it is SIGKILLed: what
    it had not indexed was never only in its memory (the index stage commits offsets only after
    `_bulk` acknowledged them, so Kafka holds it). Playbooks go on acting during the outage.
    Restarted after the index is back, it indexes everything exactly once."""
    service, entry = private("opensearch")
    worker = start_worker(**_private_env(stack, tmp_path, worker_env, opensearch=entry))
    settings = worker.settings
    assert settings.siem.url == entry["url"]
    records, planted, bad = workload(settings, 3000, seed=5)
    run(produce(settings, records[:1000]))
    run(wait_for_count(settings, "finding", None, 1, timeout=120, quiet=0.0))
    rss_before = rss_mb(worker.proc.pid)
    actions_before = len(run(read_topic(settings, settings.topics.actions, timeout=10)))
    with_group(service.proc.pid, signal.SIGSTOP)  # hung, like a server that stopped answering
    try:
        samples = []
        for i in range(1, 3):
            run(produce(settings, records[1000 * i: 1000 * (i + 1)]))
            for _ in range(5):
                time.sleep(5)
                assert worker.proc.poll() is None, "the worker died while the index was down"
                samples.append(rss_mb(worker.proc.pid))
        time.sleep(5)
        # Every input record is processed (findings are on their topic), none of the last 2,000
        # indexed: the crash below loses the worker's memory with all of that in it.
        lag = run(group_lag(settings, settings.worker.id, [settings.topics.prompts]))
        # Containment does not wait for the SIEM: the playbooks acted on the outage's leaks
        # (the index stage reads in a consumer group of its own, streams/index.py).
        actions_during = len(run(read_topic(settings, settings.topics.actions, timeout=10))) - actions_before
        assert actions_during > 0, "no playbook acted while the SIEM was down"
        worker.kill()
        print(f"\nSIGKILL after ~55 s of outage, input lag {lag}")
        time.sleep(5)  # 60 s down in all
    finally:
        with_group(service.proc.pid, signal.SIGCONT)
    print(f"worker RSS: {rss_before:.0f} MB before, max {max(samples):.0f} MB while the index was hung; "
          f"{actions_during} action records during the outage")
    assert max(samples) < rss_before + 300, "memory grew without bound while the SIEM was down"
    worker.start()
    assert_accounted(settings, planted, bad)


def events_in(worker: Any, topic: str) -> float:
    """The worker's own count of input records it processed (``aisoar_events_in_total``)."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{worker.env['AISOAR_WORKER__WEB_PORT']}/metrics", timeout=10).text
    label = f'aisoar_events_in_total{{topic="{topic}"}} '
    return sum(float(line[len(label):]) for line in text.splitlines() if line.startswith(label))


def restart_broker(service: Any, down_s: float) -> None:
    """SIGKILL the private broker (a crash: no clean shutdown) and start it again after
    ``down_s`` on the same port, config and data directory (committed offsets survive)."""
    from stack.services.base import spawn, wait_until
    from stack.services.kafka import broker_answers

    cmd = service.proc.args
    with_group(service.proc.pid, signal.SIGKILL)
    service.proc.wait(timeout=30)
    time.sleep(down_s)
    service.proc = spawn(cmd, log=service.log, cwd=service.home)
    bootstrap = service.info()["bootstrap_servers"]
    wait_until(lambda: broker_answers(bootstrap), timeout=180, what=f"restarted kafka at {bootstrap}",
               log=service.log, proc=service.proc)


@pytest.mark.soak
@pytest.mark.parametrize("fault", ["hung-70s", "killed-and-restarted"])
def test_kafka_broker_fault_under_load(fault: str, stack, worker_env, start_worker, private, tmp_path: Path) -> None:
    """The broker hangs (SIGSTOP) for 70 s, longer than every client timeout (aiokafka's
    40 s request timeout, the 10 s group session), or crashes (SIGKILL) and comes back
    20 s later. The worker process survives either, reconnects, and resumes from its
    committed offsets: it re-processes at most the records that were not yet committed
    when the fault began (its own counter says so), and every input is accounted for."""
    service, entry = private("kafka")
    worker = start_worker(**_private_env(stack, tmp_path, worker_env, kafka=entry))
    settings = worker.settings
    topic = settings.topics.prompts
    assert settings.kafka.bootstrap_servers == entry["bootstrap_servers"]
    records, planted, bad = workload(settings, 3000, seed=7)
    # 1,500 records processed and committed; then 500 more arrive and the fault hits while
    # the worker works on them; the last 1,000 arrive after it.
    run(produce(settings, records[:1500]))
    wait_consumed(settings)
    run(produce(settings, records[1500:2000]))
    uncommitted = run(group_lag(settings, settings.worker.id, [topic]))[topic]  # at most these are processed twice
    print(f"\n{fault}: fault begins with {uncommitted} of 2000 records not committed")
    if fault == "killed-and-restarted":
        restart_broker(service, down_s=20)
    else:
        with_group(service.proc.pid, signal.SIGSTOP)
        try:
            for _ in range(14):
                time.sleep(5)
                assert worker.proc.poll() is None, f"the worker died while the broker was down:\n{tail(worker.log)}"
        finally:
            with_group(service.proc.pid, signal.SIGCONT)
        # A broker frozen past its KRaft session is fenced by its own controller for a few
        # seconds after it wakes (metadata lists no broker): the test's producer waits for
        # that; the worker has to cope on its own.
        from stack.services.base import wait_until
        from stack.services.kafka import broker_answers

        wait_until(lambda: broker_answers(entry["bootstrap_servers"]), timeout=120, what="kafka after SIGCONT")
    assert worker.proc.poll() is None, f"the worker died at the broker's fault:\n{tail(worker.log)}"
    run(produce(settings, records[2000:]))
    outcome = assert_accounted(settings, planted, bad)
    assert worker.proc.poll() is None, "the worker exited during recovery"
    processed = events_in(worker, topic)
    print(f"{fault}: the worker processed {processed:.0f} input records for {len(records)} "
          f"({processed - len(records):.0f} re-processed; {uncommitted} were uncommitted at the fault)")
    assert processed >= len(records)
    # Resumed from the committed offsets: no record committed before the fault was processed
    # again (its findings are on the topic once); only the uncommitted ones may repeat.
    committed_before = {f"ev-7-{i:05d}" for i in range(1500)}
    earlier = [f for f in outcome["findings"] if f["event_id"] in committed_before]
    assert planted & committed_before <= {f["event_id"] for f in earlier}, "findings of committed records missing"
    again = Counter(f["id"] for f in earlier)
    assert max(again.values()) == 1, f"re-processed records committed before the fault: {again.most_common(3)}"


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
