"""Issue 5 through the real worker: the playbook timer (expiry and verify-after-acting).

Real Kafka, OpenSearch, oidc-provider and Alertmanager; the intervals are configured
down to seconds (``playbooks.approval_ttl_s``, ``playbooks.check_interval_s``, and
``verify_after`` in a copy of the shipped playbooks).

(a) A revocation waiting for approval that nobody decides expires: audited ``expired``
    in the index, the token stays active, the approvals queue is empty.
(b) Two leaked credentials are revoked (once each, however many incidents name them).
    One keeps being used after its revocation: its verification records ``unverified``
    and pages on-call (the alert is in Alertmanager); the other goes quiet: ``verified``.
(c) Two models' v3 drift: each is quarantined and rolled back to v2 in the real MLflow
    registry. One model's v2 drifts too after the rollback: ``unverified`` + page; the
    other's v2 serves a stationary stream: ``verified``.
"""

from __future__ import annotations

import json
import random
import secrets
import shutil
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from aisoar.demo import introspect, mint_token
from aisoar.events import encode
from playbooks.loader import DEFAULT_DIR
from tests.e2e.conftest import run
from tests.e2e.kafka_io import produce, search_index, wait_for_count
from tests.e2e.test_pipeline import prompt_record
from tests.e2e.test_response import JAILBREAKS
from tests.playbooks.test_integration import _register

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600),
              pytest.mark.stack_services("oidc", "alertmanager")]

VERIFY_AFTER_S = 25  # long enough for the follow-up activity to be detected and indexed first


def _playbooks_with_verify_after(tmp_path: Path, seconds: int) -> Path:
    """The shipped playbooks, with the leaked-credential and model-rollback verifications due
    after ``seconds``."""
    target = tmp_path / "playbooks"
    shutil.copytree(DEFAULT_DIR, target)
    for name, shipped in (("leaked_credential.yaml", 300), ("model_compromise.yaml", 900)):
        path = target / name
        text = path.read_text()
        assert f"verify_after: {shipped}" in text
        path.write_text(text.replace(f"verify_after: {shipped}", f"verify_after: {seconds}"))
    return target


def _actions(settings: Any, **terms: str) -> list[dict[str, Any]]:
    query = {"bool": {"filter": [{"term": {field: value}} for field, value in terms.items()]}}
    return run(search_index(settings, "action", query))


def _worker_env(oidc: dict[str, Any], vault: Path, **extra: str) -> dict[str, str]:
    return {"AISOAR_CREDENTIAL_VAULT": str(vault),
            "AISOAR_IDENTITY__CLIENT_SECRET": oidc["clients"]["aisoar-responder"]["client_secret"],
            "AISOAR_PLAYBOOKS__CHECK_INTERVAL_S": "1", **extra}


def test_an_approval_nobody_decides_expires_and_is_audited(start_worker, stack, tmp_path) -> None:
    oidc = stack["oidc"]
    token = mint_token(oidc)
    user = f"mallory{uuid.uuid4().hex[:6]}"
    vault = tmp_path / "vault.json"
    vault.write_text(json.dumps({f"cred-{user}": [token]}))
    api_token = secrets.token_urlsafe(24)
    worker = start_worker(**_worker_env(oidc, vault, AISOAR_PLAYBOOKS__APPROVAL_TTL_S="6",
                                        AISOAR_PLAYBOOKS__API_TOKEN=api_token))
    settings = worker.settings
    assert settings.playbooks.approval_ttl_s == 6 and settings.playbooks.check_interval_s == 1
    at = datetime.now(UTC) - timedelta(minutes=3)
    run(produce(settings, [(settings.topics.prompts, b"sess-x", prompt_record(
        f"jb-{i}", text, "I can't help with that.", at + timedelta(seconds=20 * i), user=f"{user}@corp.example",
        session=f"sess-{user}")) for i, text in enumerate(JAILBREAKS)]))

    expired = {"bool": {"filter": [{"term": {"event.action": "identity:revoke_token"}},
                                   {"term": {"aisoar.status": "expired"}}]}}
    run(wait_for_count(settings, "action", expired, 1, timeout=240))
    audit = _actions(settings, **{"event.action": "identity:revoke_token"})
    statuses = Counter(doc["aisoar"]["status"] for doc in audit)
    assert statuses["pending_approval"] == 1 and statuses["expired"] == 1, statuses
    assert not {"approved", "running", "succeeded"} & set(statuses), statuses
    (doc,) = [d for d in audit if d["aisoar"]["status"] == "expired"]
    assert doc["event"]["outcome"] == "failure" and "not given within 6s" in doc["event"]["reason"]
    assert doc["aisoar"]["action"]["target"] == f"cred-{user}"
    assert introspect(oidc, token) is True  # nobody approved: nothing was revoked
    base = f"http://127.0.0.1:{settings.playbooks.approvals_port}"
    pending = httpx.get(f"{base}/api/actions", params={"status": "pending"},
                        headers={"Authorization": f"Bearer {api_token}"}, timeout=10).json()
    assert [p for p in pending if p["action"] == "identity:revoke_token"] == []


def _alerts(am: dict[str, Any], alertname: str, target: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{am['url']}/api/v2/alerts",
                  params=[("filter", f'alertname="{alertname}"'), ("filter", f'target="{target}"')], timeout=10)
    r.raise_for_status()
    return list(r.json())


def test_verify_after_revocation_escalates_a_principal_still_active_and_verifies_a_quiet_one(
        start_worker, stack, tmp_path) -> None:
    oidc, am = stack["oidc"], stack["alertmanager"]
    tag = uuid.uuid4().hex[:6]
    stays, quiet = f"stays{tag}", f"quiet{tag}"
    tokens = {user: mint_token(oidc) for user in (stays, quiet)}
    vault = tmp_path / "vault.json"
    vault.write_text(json.dumps({f"cred-{user}": [token] for user, token in tokens.items()}))
    worker = start_worker(**_worker_env(oidc, vault, AISOAR_PLAYBOOKS__DIR=str(
        _playbooks_with_verify_after(tmp_path, VERIFY_AFTER_S))))
    settings = worker.settings

    now = datetime.now(UTC)
    run(produce(settings, [(settings.topics.prompts, f"sess-{user}".encode(), prompt_record(
        f"leak-{user}", f"My CI fails with this token, can you see why? GITHUB_TOKEN=ghp_{secrets.token_hex(18)}",
        "Rotate it.", now, user=f"{user}@corp.example", session=f"sess-{user}")) for user in (stays, quiet)]))
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and any(introspect(oidc, t) for t in tokens.values()):
        time.sleep(0.5)
    assert not any(introspect(oidc, t) for t in tokens.values()), "the leaked credentials were not revoked"
    revoked_at = datetime.now(UTC)

    # One principal goes on using the AI gateway after its revocation; the other is quiet.
    run(produce(settings, [(settings.topics.prompts, f"sess-{stays}".encode(), prompt_record(
        f"after-{stays}-{i}", text, "No.", revoked_at + timedelta(seconds=1 + i), user=f"{stays}@corp.example",
        session=f"sess-{stays}")) for i, text in enumerate(JAILBREAKS[:2])]))

    outcome = {"bool": {"filter": [{"term": {"event.action": "identity:revoke_token"}},
                                   {"terms": {"aisoar.status": ["verified", "unverified"]}}]}}
    run(wait_for_count(settings, "action", outcome, 2, timeout=VERIFY_AFTER_S + 180))
    by_target: dict[str, Counter[str]] = {}
    docs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for doc in _actions(settings, **{"event.action": "identity:revoke_token"}):
        target, status = doc["aisoar"]["action"]["target"], doc["aisoar"]["status"]
        by_target.setdefault(target, Counter())[status] += 1
        docs.setdefault((target, status), []).append(doc)
    print(f"\nrevoke audit by target: { {t: dict(c) for t, c in by_target.items()} }")
    for user in (stays, quiet):  # one revocation each, however many incidents named the credential
        assert by_target[f"cred-{user}"]["succeeded"] == 1, by_target
        for skipped in docs.get((f"cred-{user}", "skipped"), []):  # a later revision, or another incident
            assert skipped["event"]["reason"].startswith(("already done (idempotency key)",
                                                          "already done for incident")), skipped["event"]

    (unverified,) = docs[(f"cred-{stays}", "unverified")]
    assert "credential_activity did not recover" in unverified["event"]["reason"]
    assert unverified["event"]["outcome"] == "failure"
    assert by_target[f"cred-{stays}"]["escalated"] == 1 and by_target[f"cred-{stays}"]["verified"] == 0
    (verified,) = docs[(f"cred-{quiet}", "verified")]
    assert "0 findings of" in verified["event"]["reason"] and verified["event"]["outcome"] == "success"
    assert by_target[f"cred-{quiet}"]["unverified"] == 0 and by_target[f"cred-{quiet}"]["escalated"] == 0

    (alert,) = _alerts(am, "AisoarVerificationFailed", f"cred-{stays}")
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["action"] == "identity:revoke_token"
    assert "did not recover" in alert["annotations"]["summary"]
    assert _alerts(am, "AisoarVerificationFailed", f"cred-{quiet}") == []


def _inference(model: str, version: str, i: int, at: datetime, mean: float, rng: random.Random) -> bytes:
    return encode({
        "schema_version": 1, "event.id": f"{model}-{version}-{i}", "@timestamp": at.isoformat(),
        "model.name": model, "model.version": version, "inference.latency_ms": round(rng.gauss(12.0, 1.0), 2),
        "inference.score": round(min(1.0, max(0.0, rng.gauss(mean, 0.08))), 4),
        "inference.predicted_class": "legit", "inference.error": False,
    })


async def _champion(url: str, name: str) -> str | None:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(f"{url}/api/2.0/mlflow/registered-models/alias", params={"name": name, "alias": "champion"})
        return r.json()["model_version"]["version"] if r.status_code == 200 else None


@pytest.mark.stack_services("mlflow")
def test_verify_after_rollback_escalates_when_the_restored_version_drifts_too(start_worker, stack, tmp_path) -> None:
    mlflow, am = stack["mlflow"]["url"], stack["alertmanager"]
    tag = uuid.uuid4().hex[:6]
    relapsing, recovering = f"relapse-{tag}", f"recover-{tag}"

    async def register() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            for name in (relapsing, recovering):
                await _register(client, mlflow, name, 3)  # v1, v2, v3; champion -> v3

    run(register())
    worker = start_worker(AISOAR_PLAYBOOKS__CHECK_INTERVAL_S="1",
                          AISOAR_PLAYBOOKS__DIR=str(_playbooks_with_verify_after(tmp_path, VERIFY_AFTER_S)))
    settings = worker.settings
    assert settings.registry.mlflow_url == mlflow
    rng = random.Random(11)
    start = datetime.now(UTC) - timedelta(minutes=40)
    history = []  # backdated: v2 served normally (its baseline), then v3 released and drifted
    for name in (relapsing, recovering):
        history += [(settings.topics.inference, f"{name}@2".encode(),
                     _inference(name, "2", i, start + timedelta(milliseconds=500 * i), 0.80, rng)) for i in range(1200)]
        history += [(settings.topics.inference, f"{name}@3".encode(), _inference(
            name, "3", i, start + timedelta(minutes=12, milliseconds=500 * i), 0.80 if i < 1200 else 0.70, rng))
            for i in range(2400)]
    run(produce(settings, history))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and any(run(_champion(mlflow, n)) != "2" for n in (relapsing, recovering)):
        time.sleep(1.0)
    assert [run(_champion(mlflow, n)) for n in (relapsing, recovering)] == ["2", "2"], "v3 was not rolled back"

    # After the rollback, v2 of one model drifts too; the other's v2 serves as before.
    now = datetime.now(UTC)
    after = []
    for name, mean in ((relapsing, 0.70), (recovering, 0.80)):
        after += [(settings.topics.inference, f"{name}@2".encode(),
                   _inference(name, "2", 1200 + i, now + timedelta(milliseconds=10 * i), mean, rng))
                  for i in range(1200)]
    run(produce(settings, after))

    outcome = {"bool": {"filter": [{"term": {"event.action": "registry:rollback"}},
                                   {"terms": {"aisoar.status": ["verified", "unverified"]}},
                                   {"terms": {"aisoar.action.target": [f"{relapsing}:champion",
                                                                        f"{recovering}:champion"]}}]}}
    run(wait_for_count(settings, "action", outcome, 2, timeout=VERIFY_AFTER_S + 240))
    first_outcome: dict[str, dict[str, Any]] = {}
    for doc in sorted(run(search_index(settings, "action", outcome)), key=lambda d: d["@timestamp"]):
        first_outcome.setdefault(doc["aisoar"]["action"]["target"], doc)  # v3's rollback verifies first
    relapse, recover = first_outcome[f"{relapsing}:champion"], first_outcome[f"{recovering}:champion"]
    print(f"\nrelapsing: {relapse['event']['reason']}\nrecovering: {recover['event']['reason']}")
    assert relapse["aisoar"]["status"] == "unverified" and f"drift findings of {relapsing} v2" in relapse["event"][
        "reason"]
    assert recover["aisoar"]["status"] == "verified" and f"0 drift findings of {recovering} v2" in recover["event"][
        "reason"]
    (alert, *_) = _alerts(am, "AisoarVerificationFailed", f"{relapsing}:champion")
    assert alert["labels"]["action"] == "registry:rollback" and "did not recover" in alert["annotations"]["summary"]
    assert _alerts(am, "AisoarVerificationFailed", f"{recovering}:champion") == []
