"""Nothing leaks: secrets and PII planted in telemetry never reach the index, the
topics aisoar writes, nor the worker's log.

Unique canaries (a GitHub token ``ghp_<36 random>``, an e-mail
``canary-<random>@example.com``, a card number that passes Luhn, an AWS key id) are
planted in prompts, responses, tool-call arguments and tool-call outputs, run through
a real worker, and then searched for, raw and in their base64 (every alignment) and
URL-encoded forms, and by a middle fragment (a mask that keeps a few characters at
either end is fine; the middle never appears):

* every index the run created (``GET /<prefix>*/_search``, every document dumped);
* every topic the run wrote except the input topics: findings, incidents, actions,
  dead letters, and the Faust changelog/repartition topics of this worker;
* the worker's log file.

The worker's own credentials are canaries too: the identity server's client secret and
the approver token (from the environment, as deployed), and the tokens in the gateway's
credential vault that the leaked-credential playbook revokes. The playbook really uses
them (a recording identity server checks that the revocations arrived with Basic auth),
and they appear nowhere of the above either: plans and audit records show
``<redacted>`` and token fingerprints.

The dead-letter topic is a quarantine for refused records: by design it keeps the
original bytes (``payload_b64``) so that nothing is lost, exactly like the input
topic it mirrors, and it gets the input topic's access control. So the canaries are
allowed there **only** inside ``payload_b64`` (checked: the decoded payload is the
refused record) and nowhere else in a dead letter (reason, key, topic). The
dead-letter *index* documents must not carry the payload at all.
"""

from __future__ import annotations

import base64
import json
import random
import string
import time
import urllib.parse
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from aisoar.events import encode
from streams.lag import group_lag
from streams.produce import kafka_client_options
from tests.e2e.conftest import run
from tests.e2e.kafka_io import produce, read_topic, wait_for_count

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]


def luhn_card(rng: random.Random) -> str:
    digits = [4] + [rng.randrange(10) for _ in range(14)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def canaries(rng: random.Random) -> dict[str, str]:
    alnum = string.ascii_letters + string.digits
    return {
        "github": "ghp_" + "".join(rng.choice(alnum) for _ in range(36)),
        "email": f"canary-{''.join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(12))}@example.com",
        "card": luhn_card(rng),
        "aws": "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16)),
    }


def needles(secret: str) -> dict[str, bytes]:
    """The forms a leak could take: raw, URL-encoded, base64 at each alignment, a middle fragment."""
    forms = {"raw": secret.encode(), "url": urllib.parse.quote(secret, safe="").encode(),
             "middle": secret[len(secret) // 2 - 5: len(secret) // 2 + 5].encode()}
    for shift in range(3):
        encoded = base64.b64encode(b"\x00" * shift + secret.encode())
        forms[f"b64+{shift}"] = encoded[4 if shift else 0:-4]  # drop the chunks mixed with neighbours
    return forms


def hits(blob: bytes, planted: list[dict[str, str]]) -> list[str]:
    found = []
    for i, event in enumerate(planted):
        for kind, secret in event.items():
            for form, needle in needles(secret).items():
                if needle and needle in blob:
                    found.append(f"event {i} {kind} as {form}")
    return found


def test_planted_secrets_and_pii_never_leave_the_input_topic(start_worker, tmp_path) -> None:
    from tests.reliability.test_faults import FakeServer

    rng = random.Random()  # fresh canaries every run: a leak cannot be an old document
    credentials = {"client_secret": f"cs-{rng.getrandbits(128):032x}", "api_token": f"at-{rng.getrandbits(128):032x}",
                   **{f"vault-{i}": f"tok-{rng.getrandbits(128):032x}" for i in range(3)}}
    vault = tmp_path / "vault.json"
    vault.write_text(json.dumps({f"cred-{i}": [credentials[f"vault-{i}"]] for i in range(3)}))
    vault.chmod(0o600)
    identity = FakeServer(200)  # records the revocations; its answers do not matter here
    worker = start_worker(AISOAR_IDENTITY__ISSUER_URL=identity.url, AISOAR_IDENTITY__CLIENT_ID="aisoar",
                          AISOAR_IDENTITY__CLIENT_SECRET=credentials["client_secret"],
                          AISOAR_PLAYBOOKS__API_TOKEN=credentials["api_token"], AISOAR_CREDENTIAL_VAULT=str(vault))
    settings = worker.settings
    at = datetime.now(UTC) - timedelta(minutes=2)
    planted: list[dict[str, str]] = []
    records = []
    for i in range(24):
        c = canaries(rng)
        planted.append(c)
        where = i % 4
        text = (f"my token is {c['github']} and mail {c['email']}, card {c['card']} "
                f"and AWS_ACCESS_KEY_ID={c['aws']}")
        doc = {
            "schema_version": 1, "event.id": f"leak-{i:03d}", "@timestamp": (at + timedelta(seconds=i)).isoformat(),
            "user.id": f"user{i % 3}@corp.example", "session.id": f"sess-{i % 5}", "credential.id": f"cred-{i % 3}",
            "server.address": "api.openai.com", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
            "prompt": text if where == 0 else "Summarise this ticket.",
            "response": text if where == 1 else "Done.",
            "tool_calls": [{"name": "fetch", "arguments": json.dumps({"q": text}) if where == 2 else "{}",
                            "output": text if where == 3 else "ok"}],
        }
        records.append((settings.topics.prompts, f"sess-{i % 5}".encode(), encode(doc)))
    # Refused records holding canaries too: they go to the dead-letter quarantine.
    bad = canaries(rng)
    planted.append(bad)
    refused = [b'{"schema_version": 1, "prompt": "' + f"{bad['github']} {bad['email']}".encode() + b'", "event.id": 5}',
               f"not json {bad['card']} {bad['aws']}".encode()]
    records += [(settings.topics.prompts, b"bad", raw) for raw in refused]
    run(produce(settings, records))
    planted.append(credentials)  # searched for everywhere below, like the telemetry canaries

    # Wait until the worker has consumed everything and the index has settled.
    deadline = time.monotonic() + 300
    while run(group_lag(settings, settings.worker.id, [settings.topics.prompts])) != {settings.topics.prompts: 0}:
        assert time.monotonic() < deadline, "the worker did not consume the input"
        time.sleep(2)
    assert run(wait_for_count(settings, "finding", None, 24, timeout=240, quiet=5)) >= 24  # detection did run
    assert run(wait_for_count(settings, "deadletter", None, len(refused), timeout=120, quiet=3)) == len(refused)
    deadline = time.monotonic() + 180  # the playbook used the credentials: its audit records exist too
    while not any(path == "/token/revocation" for _, _, path, _ in identity.requests):
        assert time.monotonic() < deadline, f"no revocation reached the identity server: {identity.calls[:5]}"
        time.sleep(1)
    time.sleep(5)

    # 1. Every index of this run, every document.
    url, prefix = settings.siem.url, settings.siem.index_prefix
    httpx.post(f"{url}/{prefix}*/_refresh", params={"expand_wildcards": "all"}, timeout=30)
    indices = httpx.get(f"{url}/_cat/indices/{prefix}*", params={"format": "json", "expand_wildcards": "all"}, timeout=30).json()
    assert indices, "the run created no index"
    dumped = httpx.post(f"{url}/{prefix}*/_search", params={"expand_wildcards": "all"},
                        json={"size": 10000, "query": {"match_all": {}}}, timeout=60).json()
    docs = dumped["hits"]["hits"]
    print(f"\nindices: {sorted(i['index'] for i in indices)}; {len(docs)} documents")
    assert len(docs) >= 24 + len(refused)
    index_blob = json.dumps(docs, ensure_ascii=False).encode()
    assert hits(index_blob, planted) == []
    assert b"payload_b64" not in index_blob  # dead letters are indexed without their payload
    # ... and a query_string search for each canary (analysed fields, not only the raw source).
    for event in planted:
        for secret in event.values():
            q = {"query": {"query_string": {"query": f'"{secret}"', "default_field": "*", "lenient": True}}}
            found = httpx.post(f"{url}/{prefix}*/_search", json=q, timeout=30).json()["hits"]["total"]["value"]
            assert found == 0, secret[:4]

    # 2. Every topic this run wrote, except the input topics.
    async def topics() -> list[str]:
        admin = AIOKafkaAdminClient(**kafka_client_options(settings))
        await admin.start()
        try:
            return sorted(await admin.list_topics())
        finally:
            await admin.close()

    tag = prefix
    inputs = {settings.topics.prompts, settings.topics.inference, settings.topics.security}
    written = [t for t in run(topics()) if tag in t and t not in inputs]
    print(f"topics checked: {written}")
    assert settings.topics.findings in written and settings.topics.deadletter in written
    for topic in written:
        messages = run(read_topic(settings, topic, timeout=30))
        if topic == settings.topics.deadletter:
            payloads = []
            for message in messages:
                letter = json.loads(message.value)
                payloads.append(base64.b64decode(letter.pop("payload_b64")))
                assert hits(json.dumps(letter).encode() + (message.key or b""), planted) == [], letter["reason"]
            assert sorted(payloads) == sorted(refused)  # the quarantine keeps the refused bytes, whole
            continue
        blob = b"\n".join((m.key or b"") + b"\t" + (m.value or b"") + b"".join(v for _, v in (m.headers or ())) for m in messages)
        assert hits(blob, planted) == [], topic

    # 3. The worker's log.
    log = worker.log.read_bytes()
    assert log, "no worker log"
    assert hits(log, planted) == []

    # The credentials were used (revocations sent with Basic auth), and never shown.
    revocations = [auth for _, method, path, auth in identity.requests if method == "POST" and path == "/token/revocation"]
    identity.close()
    assert revocations and all(auth.startswith("Basic ") for auth in revocations), revocations[:1]
    assert hits(index_blob + log, [credentials]) == []
