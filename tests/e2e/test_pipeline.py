"""Issue 2, end to end: real Kafka, the real worker process, real OpenSearch.

Planted secrets come back as findings searchable in the index (and nothing
secret-like is found on benign prompts), malformed records land in the dead
letter topic with their reason and original bytes, and every input record is
accounted for. The worker is a separate process, as in production.
"""

from __future__ import annotations

import base64
import json
import random
import string
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from aisoar.events import encode
from aisoar.simulate import BENIGN_PROMPTS, BENIGN_RESPONSES
from tests.e2e.conftest import run
from tests.e2e.kafka_io import produce, read_topic, search_index, wait_for_count

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def planted_secret(rng: random.Random, i: int) -> tuple[str, str]:
    """(rule id, text containing a fresh, well-formed secret of that kind)."""
    alnum = string.ascii_letters + string.digits
    kind = i % 4
    if kind == 0:
        token = "ghp_" + _rand(rng, alnum, 36)
        return "secret.github_token", f"My CI fails with this token, can you see why? GITHUB_TOKEN={token}"
    if kind == 1:
        key = "AKIA" + _rand(rng, string.ascii_uppercase + string.digits, 16)
        return "secret.aws_access_key", f"Deploy script:\nexport AWS_ACCESS_KEY_ID={key}\naws s3 ls"
    if kind == 2:
        body = "\n".join(_rand(rng, alnum + "+/", 64) for _ in range(6))
        return "secret.private_key", f"Fix my ssh config.\n-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
    token = "xoxb-" + _rand(rng, string.digits, 12) + "-" + _rand(rng, string.digits, 13) + "-" + _rand(rng, alnum, 24)
    return "secret.slack_token", f"Why does the bot not post? SLACK_BOT_TOKEN={token}"


def prompt_record(event_id: str, prompt: str, response: str, at: datetime, user: str = "alice@corp.example",
                  session: str | None = None) -> bytes:
    return encode({
        "schema_version": 1, "event.id": event_id, "@timestamp": at.isoformat(), "user.id": user,
        "session.id": session or f"sess-{event_id[-3:]}", "credential.id": f"cred-{user.split('@')[0]}",
        "server.address": "api.openai.com", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": len(prompt) // 4, "gen_ai.usage.output_tokens": 40,
        "prompt": prompt, "response": response,
    })


MALFORMED = [
    (b"{not json", "malformed JSON"),
    (b'{"schema_version": 7, "event.id": "x"}', "unsupported schema_version 7"),
    (b'{"schema_version": 1, "event.id": 5}', "Expected `str`, got `int`"),
    (b"\xff\xfe\x00\x01binary", "malformed JSON"),
    (b"[1, 2, 3]", "Expected `object`, got `array`"),
]


def test_secrets_are_found_malformed_records_dead_lettered_nothing_lost(start_worker) -> None:
    worker = start_worker()
    settings = worker.settings
    rng = random.Random(2026)
    now = datetime.now(timezone.utc) - timedelta(minutes=5)
    planted: dict[str, str] = {}
    records: list[tuple[str, bytes | None, bytes]] = []
    for i in range(200):
        event_id = f"e2e-{i:04d}"
        at = now + timedelta(milliseconds=100 * i)
        if i % 10 == 3:
            rule, prompt = planted_secret(rng, len(planted))
            planted[event_id] = rule
        else:
            prompt = rng.choice(BENIGN_PROMPTS)
        records.append((settings.topics.prompts, f"sess-{i % 7}".encode(),
                        prompt_record(event_id, prompt, rng.choice(BENIGN_RESPONSES), at)))
    for raw, _ in MALFORMED:
        records.insert(rng.randrange(len(records)), (settings.topics.prompts, b"bad", raw))
    run(produce(settings, records))

    # Every planted secret is searchable as a finding on its event, with the value redacted.
    query = {"term": {"rule.category": "secret"}}
    assert run(wait_for_count(settings, "finding", query, len(planted), timeout=300)) >= len(planted)
    secret_docs = run(search_index(settings, "finding", query))
    found = {(doc["aisoar"]["event"]["id"], doc["rule"]["id"]) for doc in secret_docs}
    assert {event_id for event_id, _ in found} == set(planted)  # none on benign prompts
    for event_id, rule in planted.items():
        assert (event_id, rule) in found
    indexed_text = json.dumps(secret_docs)
    for _, _, raw in records:
        for token in ("ghp_", "xoxb-", "BEGIN RSA PRIVATE KEY"):
            if token in raw.decode("utf-8", "replace"):
                value = raw.decode().split(token, 1)[1][:20]
                assert value not in indexed_text  # evidence is masked, never the secret

    # Malformed records: each one in the dead-letter topic, with its reason and exact bytes.
    dead = run(read_topic(settings, settings.topics.deadletter, expect=len(MALFORMED)))
    assert len(dead) == len(MALFORMED)
    letters = [json.loads(message.value) for message in dead]
    by_payload = {base64.b64decode(letter["payload_b64"]): letter for letter in letters}
    for raw, reason in MALFORMED:
        assert raw in by_payload
        assert reason in by_payload[raw]["reason"]
        assert by_payload[raw]["topic"] == settings.topics.prompts
    # ... and visible to analysts in the index, without the payload.
    assert run(wait_for_count(settings, "deadletter", None, len(MALFORMED))) == len(MALFORMED)

    # Nothing lost: the consumer group has read every input record.
    from streams.lag import group_lag

    assert run(group_lag(settings, settings.worker.id, [settings.topics.prompts])) == {settings.topics.prompts: 0}

    # The worker's Prometheus metrics count the same things.
    metrics = httpx.get(f"http://127.0.0.1:{settings.worker.web_port}/metrics", timeout=10).text
    assert f'aisoar_events_in_total{{topic="{settings.topics.prompts}"}} {len(records)}.0' in metrics
    dead = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("aisoar_dead_letters_total{"))
    assert dead == len(MALFORMED)
    assert 'aisoar_findings_total{rule="secret.github_token",severity="high"}' in metrics
    # Containment first (streams/detect.py): the backlog the detect stage waits on is readable
    # from Faust's agents in a real worker (-1 would mean it is not, and detection never pauses).
    backlog = [line for line in metrics.splitlines() if line.startswith("aisoar_containment_backlog ")]
    assert backlog and float(backlog[0].split()[1]) >= 0, backlog


def test_drift_after_a_mean_shift_and_none_on_a_stationary_stream(start_worker) -> None:
    worker = start_worker()
    settings = worker.settings
    rng = random.Random(7)
    start = datetime.now(timezone.utc) - timedelta(minutes=30)
    records = []
    for i in range(2400):
        at = start + timedelta(milliseconds=500 * i)
        for model, mean in (("shifting", 0.80 if i < 1200 else 0.72), ("steady", 0.80)):
            records.append((settings.topics.inference, f"{model}@1".encode(), encode({
                "schema_version": 1, "event.id": f"{model}-{i}", "@timestamp": at.isoformat(),
                "model.name": model, "model.version": "1",
                "inference.latency_ms": round(rng.gauss(12.0, 1.0), 2),
                "inference.score": round(min(1.0, max(0.0, rng.gauss(mean, 0.08))), 4),
                "inference.predicted_class": "legit", "inference.error": False,
            })))
    run(produce(settings, records))
    drift = {"terms": {"rule.id": ["model.drift", "model.poisoning_suspected"]}}
    assert run(wait_for_count(settings, "finding", drift, 1, timeout=180)) >= 1
    docs = run(search_index(settings, "finding", drift))
    models = {(doc["aisoar"]["entities"]["model_name"], doc["aisoar"]["entities"]["model_version"]) for doc in docs}
    assert models == {("shifting", "1")}  # the shift is found; the stationary model stays quiet
    first = min(int(doc["aisoar"]["event"]["id"].split("-")[1]) for doc in docs)
    assert 1200 <= first <= 1200 + 300  # a 1-sigma shift is detected within 300 events
