"""The engine against REAL servers: oidc-provider (RFC 7009/7662), MLflow registry, Alertmanager."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest

from aisoar.findings import Entities
from aisoar.incidents import Incident
from playbooks import (
    AlertmanagerSettings,
    Connections,
    Engine,
    InMemoryCredentialStore,
    MlflowSettings,
    OAuthSettings,
    load_playbooks,
)
from playbooks.approvals_api import make_app, serve
from playbooks.ledger import decode, encode
from playbooks.policy import Policy

pytestmark = [pytest.mark.integration, pytest.mark.stack_services("oidc", "mlflow", "alertmanager")]

RESPONDER, WORKLOAD = "aisoar-responder", "workload"
API = "/api/2.0/mlflow"


def _now() -> datetime:
    return datetime.now(UTC)


def _incident(**kw: Any) -> Incident:
    now = _now()
    base: dict[str, Any] = {"id": f"inc-{uuid.uuid4().hex[:8]}", "rule_id": "incident.single_finding",
                                "rule_name": "Leaked secret", "status": "open", "severity": "high", "risk_score": 90.0,
                                "first_seen": now, "last_seen": now, "correlation_key": "x", "categories": ("secret",),
                                "finding_ids": ("f1",), "finding_count": 1, "summary": "integration test"}
    base.update(kw)
    return Incident(**base)


@pytest.fixture
def servers(playbook_servers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return playbook_servers


@pytest.fixture
def connections(servers: dict[str, dict[str, Any]]) -> Connections:
    oidc = servers["oidc"]
    responder = oidc["clients"][RESPONDER]
    return Connections(
        oauth=OAuthSettings.from_issuer(oidc["issuer"], responder["client_id"], responder["client_secret"]),
        mlflow=MlflowSettings(url=servers["mlflow"]["url"]),
        alertmanager=AlertmanagerSettings(url=servers["alertmanager"]["url"]))


class Counting(httpx.AsyncBaseTransport):
    """The real transport, counting the requests that reach each server path: what the servers saw."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.sent: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path))
        return await self.inner.handle_async_request(request)

    def count(self, path: str, method: str = "POST") -> int:
        return sum(1 for m, p in self.sent if m == method and p.endswith(path))

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
async def transport():
    return Counting()


@pytest.fixture
async def client(transport):
    async with httpx.AsyncClient(timeout=10.0, transport=transport) as c:
        yield c


def _engine(client: httpx.AsyncClient, connections: Connections, creds: InMemoryCredentialStore | None = None,
            store: dict[str, bytes] | None = None, records: list | None = None, **kw: Any) -> Engine:
    """An engine on the real servers; a new one on the same ``store`` is a restarted worker."""
    async def emit(record):
        if records is not None:
            records.append(record)

    return Engine(load_playbooks(), client=client, connections=connections, credentials=creds, emit=emit,
                  ledger_store=store, **kw)


async def _mint(client: httpx.AsyncClient, oidc: dict[str, Any]) -> str:
    workload = oidc["clients"][WORKLOAD]
    r = await client.post(f"{oidc['url']}/token", data={"grant_type": "client_credentials", "scope": "api:read"},
                          auth=(workload["client_id"], workload["client_secret"]))
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


async def _active(client: httpx.AsyncClient, oidc: dict[str, Any], token: str) -> bool:
    responder = oidc["clients"][RESPONDER]
    r = await client.post(f"{oidc['url']}/token/introspection", data={"token": token},
                          auth=(responder["client_id"], responder["client_secret"]))
    assert r.status_code == 200, r.text
    return bool(r.json()["active"])


async def _alerts(client: httpx.AsyncClient, am: dict[str, Any], incident_id: str) -> list[dict[str, Any]]:
    r = await client.get(f"{am['url']}/api/v2/alerts", params={"filter": f'incident_id="{incident_id}"'})
    assert r.status_code == 200
    return [a for a in r.json() if a["status"]["state"] != "resolved"]


async def test_leaked_credential_is_revoked_and_on_call_paged(client, servers, connections):
    oidc, am = servers["oidc"], servers["alertmanager"]
    tokens = [await _mint(client, oidc) for _ in range(2)]
    bystander = await _mint(client, oidc)
    creds = InMemoryCredentialStore()
    cred = f"cred-{uuid.uuid4().hex[:6]}"
    for t in tokens:
        creds.register(cred, t)
    records: list = []
    engine = _engine(client, connections, creds, records=records)
    incident = _incident(entities=Entities(credential_id=cred))
    assert all([await _active(client, oidc, t) for t in tokens])

    out = await engine.handle_incident(incident)
    assert [(r.action, r.status) for r in out if r.status != "running"] == [
        ("identity:revoke_token", "succeeded"), ("oncall:alertmanager", "succeeded")]
    assert not any([await _active(client, oidc, t) for t in tokens])
    assert await _active(client, oidc, bystander)  # only the credential's tokens
    for t in tokens:
        assert t not in repr(records)

    (alert,) = await _alerts(client, am, incident.id)
    assert alert["labels"]["alertname"] == "AisoarLeakedCredential"
    assert alert["labels"]["rule"] == "incident.single_finding" and alert["labels"]["severity"] == "high"
    assert cred in alert["annotations"]["summary"]

    again = await engine.handle_incident(_incident(id=incident.id, entities=incident.entities, revision=2))
    assert {r.status for r in again} == {"skipped"}

    closed = await engine.handle_incident(_incident(id=incident.id, entities=incident.entities, status="closed"))
    assert [r.status for r in closed] == ["running", "succeeded"]
    assert await _alerts(client, am, incident.id) == []


async def _register(client: httpx.AsyncClient, url: str, name: str, n: int) -> None:
    async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = await client.post(f"{url}{API}/{path}", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    exp = (await client.get(f"{url}{API}/experiments/get-by-name", params={"experiment_name": "Default"})).json()
    run = await post("runs/create", {"experiment_id": exp["experiment"]["experiment_id"]})
    run_id = run["run"]["info"]["run_id"]
    await post("registered-models/create", {"name": name})
    for _ in range(n):
        await post("model-versions/create", {"name": name, "source": f"runs:/{run_id}/model", "run_id": run_id})
    await post("registered-models/alias", {"name": name, "alias": "champion", "version": str(n)})


async def _registry(client: httpx.AsyncClient, url: str, name: str) -> tuple[str | None, dict[str, dict[str, str]]]:
    r = await client.get(f"{url}{API}/registered-models/alias", params={"name": name, "alias": "champion"})
    alias = r.json()["model_version"]["version"] if r.status_code == 200 else None
    r = await client.get(f"{url}{API}/model-versions/search", params={"filter": f"name='{name}'"})
    tags = {v["version"]: {t["key"]: t["value"] for t in v.get("tags", [])} for v in r.json()["model_versions"]}
    return alias, tags


async def test_model_compromise_quarantines_and_rolls_back_once(client, transport, servers, connections):
    url, am = servers["mlflow"]["url"], servers["alertmanager"]
    name = f"fraud-{uuid.uuid4().hex[:6]}"
    await _register(client, url, name, 3)
    store: dict[str, bytes] = {}
    engine = _engine(client, connections, store=store)
    incident = _incident(rule_id="incident.model_compromise", rule_name="Model compromise", categories=("drift",),
                         entities=Entities(model_name=name, model_version="3"))

    out = await engine.handle_incident(incident)
    assert [(r.action, r.status) for r in out if r.status != "running"] == [
        ("registry:quarantine", "succeeded"), ("registry:rollback", "succeeded"), ("oncall:alertmanager", "succeeded")]
    alias, tags = await _registry(client, url, name)
    assert alias == "2"
    assert tags["3"]["aisoar.quarantined"] == "true" and tags["3"]["aisoar.quarantine_incident"] == incident.id
    assert "incident.model_compromise" in tags["3"]["aisoar.quarantine_reason"]
    assert "aisoar.quarantined" not in tags["2"]
    (alert,) = await _alerts(client, am, incident.id)
    assert alert["labels"]["alertname"] == "AisoarModelQuarantined"

    # A human then moves champion elsewhere and edits the reason: replaying the incident,
    # even in a restarted engine on the same ledger, must not act again.
    r = await client.post(f"{url}{API}/registered-models/alias", json={"name": name, "alias": "champion",
                                                                      "version": "1"})
    assert r.status_code == 200
    await client.post(f"{url}{API}/model-versions/set-tag", json={"name": name, "version": "3",
                                                                  "key": "aisoar.quarantine_reason", "value": "human"})
    before = len(transport.sent)
    restarted = _engine(client, connections, store=store)
    again = await restarted.handle_incident(incident)
    assert {r.status for r in again} == {"skipped"}
    assert transport.sent[before:] == []  # the restarted engine did not even ask the registry
    alias, tags = await _registry(client, url, name)
    assert alias == "1" and tags["3"]["aisoar.quarantine_reason"] == "human"

    # Crash between "pending" and "done": the entry is re-checked at the registry, not re-sent.
    key = f"{incident.id}|registry:quarantine|{name}@3"
    store[key] = encode(decode(store[key]).__class__(**{**_fields(decode(store[key])), "state": "pending"}))
    before = len(transport.sent)
    out = await _engine(client, connections, store=store).handle_incident(incident)
    assert out[0].status == "skipped" and "re-checked" in out[0].reason
    mlflow_writes = [(m, p) for m, p in transport.sent[before:] if m == "POST" and "/mlflow/" in p
                     and not p.endswith("/search")]
    assert mlflow_writes == []  # re-checked by reading, nothing re-sent
    alias, tags = await _registry(client, url, name)
    assert alias == "1" and tags["3"]["aisoar.quarantine_reason"] == "human"  # the human's edits stand


def _fields(entry: Any) -> dict[str, Any]:
    return {f: getattr(entry, f) for f in entry.__struct_fields__}


async def test_last_serving_version_is_refused_and_escalated(client, servers, connections):
    url, am = servers["mlflow"]["url"], servers["alertmanager"]
    name = f"solo-{uuid.uuid4().hex[:6]}"
    await _register(client, url, name, 1)
    engine = _engine(client, connections)
    incident = _incident(rule_id="incident.model_compromise", rule_name="Model compromise", categories=("drift",),
                         entities=Entities(model_name=name, model_version="1"))
    out = await engine.handle_incident(incident)
    assert [r.status for r in out] == ["running", "skipped", "escalated"]
    alias, tags = await _registry(client, url, name)
    assert alias == "1" and "aisoar.quarantined" not in tags["1"]
    (alert,) = await _alerts(client, am, incident.id)
    assert alert["labels"]["alertname"] == "AisoarActionFailed" and alert["labels"]["severity"] == "critical"


async def test_approval_over_http_then_revocation(client, servers, connections):
    oidc = servers["oidc"]
    token = await _mint(client, oidc)
    creds = InMemoryCredentialStore()
    principal = f"user-{uuid.uuid4().hex[:6]}"
    creds.register(principal, token)
    engine = _engine(client, connections, creds)
    incident = _incident(rule_id="incident.jailbreak_campaign", rule_name="Jailbreak campaign",
                         categories=("jailbreak",), entities=Entities(user_id=principal))
    out = await engine.handle_incident(incident)
    assert out[-1].status == "pending_approval" and await _active(client, oidc, token)

    runner = await serve(make_app(engine, {"bob": "test-approver-token"}))
    try:
        port = runner.addresses[0][1]
        base = f"http://127.0.0.1:{port}/api/actions"
        assert (await client.get(base, params={"status": "pending"})).status_code == 401
        auth = {"Authorization": "Bearer test-approver-token"}
        (pending,) = (await client.get(base, params={"status": "pending"}, headers=auth)).json()
        r = await client.post(f"{base}/{pending['action_id']}/approve", headers=auth)
        assert r.status_code == 200 and r.json()["records"][-1]["status"] == "succeeded"
    finally:
        await runner.cleanup()
    assert not await _active(client, oidc, token)


async def test_observe_mode_changes_nothing_on_real_servers(client, servers, connections):
    oidc = servers["oidc"]
    token = await _mint(client, oidc)
    creds = InMemoryCredentialStore()
    creds.register("cred-observe", token)
    engine = _engine(client, connections, creds, policy=Policy(dry_run=True))
    out = await engine.handle_incident(_incident(entities=Entities(credential_id="cred-observe")))
    assert {r.status for r in out} == {"planned"}
    assert out[0].request["requests"][0]["url"] == f"{oidc['issuer']}/token/revocation"
    assert await _active(client, oidc, token)


async def _leaked_credential(client, oidc) -> tuple[str, str, InMemoryCredentialStore]:
    """A live token minted at the identity server, in a vault under a fresh credential id."""
    token = await _mint(client, oidc)
    creds = InMemoryCredentialStore()
    cred = f"cred-{uuid.uuid4().hex[:6]}"
    creds.register(cred, token)
    return token, cred, creds


async def test_two_incidents_about_one_leaked_token_revoke_it_once(client, transport, servers, connections):
    """A session-keyed and a principal-keyed incident for the same leaked token: the identity
    server receives one revocation; the second incident is audited as already done, with a
    reference to the first, also after a restart."""
    oidc = servers["oidc"]
    token, cred, creds = await _leaked_credential(client, oidc)
    store: dict[str, bytes] = {}
    records: list = []
    by_session = _incident(correlation_key=f"session:s-{cred}", entities=Entities(credential_id=cred, session_id="s"))
    by_principal = _incident(correlation_key=f"principal:{cred}", entities=Entities(credential_id=cred))
    engine = _engine(client, connections, creds, store=store, records=records)

    await engine.handle_incident(by_session)
    await engine.handle_incident(by_principal)
    assert transport.count("/token/revocation") == 1
    assert not await _active(client, oidc, token)
    revokes = [r for r in records if r.action == "identity:revoke_token"]
    assert [(r.incident_id, r.status) for r in revokes] == [
        (by_session.id, "running"), (by_session.id, "succeeded"), (by_principal.id, "skipped")]
    assert revokes[-1].reason.startswith(f"already done for incident {by_session.id}")
    assert revokes[1].id.split(":")[0] in revokes[-1].reason  # the first action, by id
    # Both incidents still page on-call, each about itself.
    assert [r.incident_id for r in records if r.action == "oncall:alertmanager" and r.status == "succeeded"] == [
        by_session.id, by_principal.id]

    restarted = _engine(client, connections, creds, store=store, records=records)
    third = _incident(correlation_key=f"payload:{cred}", entities=Entities(credential_id=cred))
    out = await restarted.handle_incident(third)
    assert out[0].status == "skipped" and by_session.id in out[0].reason
    assert transport.count("/token/revocation") == 1 and not await _active(client, oidc, token)


async def test_restart_mid_revocation_never_revokes_twice(client, transport, servers, connections):
    """The worker died after the revocation reached the identity server, before "done" was
    written: the restarted engine finds "pending", introspects, and sends nothing again."""
    oidc = servers["oidc"]
    token, cred, creds = await _leaked_credential(client, oidc)
    store: dict[str, bytes] = {}
    incident = _incident(entities=Entities(credential_id=cred))
    await _engine(client, connections, creds, store=store).handle_incident(incident)
    assert transport.count("/token/revocation") == 1 and not await _active(client, oidc, token)
    for key in [k for k in store if k.startswith(incident.id) and "revoke" in k] + [
            k for k in store if k.startswith("effect|") and cred in k]:
        store[key] = encode(msgspec.structs.replace(decode(store[key]), state="pending"))  # as the crash left it

    out = await _engine(client, connections, creds, store=store).handle_incident(incident)
    assert out[0].status == "skipped" and "re-checked" in out[0].reason
    assert transport.count("/token/revocation") == 1  # the server saw one revocation in all
    assert transport.count("/token/introspection") >= 2 and not await _active(client, oidc, token)
