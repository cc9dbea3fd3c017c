"""Dispatch order: observe, approval, idempotency, crash re-check, blast radius, retries, breaker, escalation."""

from __future__ import annotations

import json
from datetime import timedelta

import msgspec
import pytest

from aisoar.findings import Entities, Finding
from playbooks.connections import (
    AlertmanagerSettings,
    Connections,
    MlflowSettings,
    OAuthSettings,
)
from playbooks.credentials import InMemoryCredentialStore
from playbooks.engine import Engine, action_id_for
from playbooks.ledger import LedgerEntry, decode, encode
from playbooks.loader import Playbook, load_playbooks
from playbooks.policy import Policy
from tests.playbooks.helpers import (
    NOW,
    FakeAlertmanager,
    FakeMlflow,
    FakeOAuth,
    Recorder,
    incident,
    model_incident,
    router,
)

CONN = Connections(oauth=OAuthSettings.from_issuer("http://idp", "aisoar-responder", "s3cr3t"),
                   mlflow=MlflowSettings(url="http://mlflow"), alertmanager=AlertmanagerSettings(url="http://am"))


def playbook(mode="auto", steps=None, **kw) -> Playbook:
    raw = {"name": kw.pop("name", "pb"), "mode": mode,
           "triggers": [{"incident_rules": ["incident.single_finding"], "entity": "credential_id"}],
           "steps": steps or [{"action": "identity:revoke_token",
                               "params": {"credential_id": "{{ entities.credential_id }}"}}], **kw}
    return msgspec.convert(raw, Playbook)


class World:
    """Fake identity server + registry + Alertmanager behind one recording client, and an engine."""

    def __init__(self, playbooks=None, policy=None, tokens=("tok-a",), **engine_kw):
        self.idp = FakeOAuth(set(tokens))
        self.reg = FakeMlflow({"1": {}, "2": {}, "3": {}}, {"champion": "3"})
        self.am = FakeAlertmanager()
        self.rec = Recorder(router(idp=self.idp, mlflow=self.reg, am=self.am))
        self.creds = InMemoryCredentialStore()
        for t in tokens:
            self.creds.register("cred-7", t)
        self.records = []
        self.sleeps = []
        self.ledger: dict[str, bytes] = engine_kw.pop("ledger_store", {})
        self.clock_s = 0.0

        async def emit(record):
            self.records.append(record)

        async def sleep(s):
            self.sleeps.append(s)
            self.clock_s += s

        policy = policy or Policy(backoff_s=0.01)
        self.engine = Engine(playbooks or [playbook()], client=self.rec.client(), connections=CONN,
                             credentials=self.creds, emit=emit, policy=policy, ledger_store=self.ledger,
                             clock=lambda: NOW, monotonic=lambda: self.clock_s, sleep=sleep, **engine_kw)

    def calls(self, path):
        return [r for r in self.rec.requests if r.url.path.endswith(path)]

    def statuses(self):
        return [r.status for r in self.records]


async def test_auto_revokes_verifies_and_audits():
    w = World()
    records = await w.engine.handle_incident(incident(), NOW)
    assert [r.status for r in records] == ["running", "succeeded"]
    assert w.idp.active == set() and len(w.calls("/revocation")) == 1
    done = records[-1]
    assert done.response_status == 200 and done.actor == "aisoar" and done.incident_id == "inc-1"
    assert done.idempotency_key == "inc-1|identity:revoke_token|cred-7"
    assert done.request["requests"][0]["form"]["token"].startswith("<token fp:")
    assert "tok-a" not in json.dumps(msgspec.to_builtins(w.records)) and "s3cr3t" not in json.dumps(
        msgspec.to_builtins(w.records))


async def test_observe_records_exact_request_and_calls_nothing():
    w = World([playbook(mode="observe")])
    records = await w.engine.handle_incident(incident(), NOW)
    assert [r.status for r in records] == ["planned"]
    assert records[0].request == {"requests": [{
        "method": "POST", "url": "http://idp/token/revocation", "auth": "Basic <redacted>",
        "form": {"token": records[0].request["requests"][0]["form"]["token"], "token_type_hint": "access_token"}}]}
    assert w.rec.requests == [] and w.idp.active == {"tok-a"}
    assert await w.engine.handle_incident(incident(), NOW) == []  # a replay records nothing new


async def test_global_dry_run_and_kill_switch():
    w = World(policy=Policy(dry_run=True))
    assert [r.status for r in await w.engine.handle_incident(incident(), NOW)] == ["planned"]
    w = World(policy=Policy(kill_switch=True))
    records = await w.engine.handle_incident(incident(), NOW)
    assert [(r.status, r.reason) for r in records] == [("skipped", "kill switch engaged")]
    assert records[0].request["requests"] and w.rec.requests == []


async def test_approval_waits_then_runs_through_dispatch():
    w = World([playbook(mode="approval")])
    records = await w.engine.handle_incident(incident(), NOW)
    assert [r.status for r in records] == ["pending_approval"] and w.rec.requests == []
    (pending,) = w.engine.list_pending(NOW)
    assert pending.action == "identity:revoke_token" and pending.target == "cred-7"
    assert await w.engine.handle_incident(incident(revision=2), NOW) == []  # no second approval request
    records = await w.engine.approve(pending.action_id, "bob", NOW + timedelta(minutes=5))
    assert [(r.status, r.actor) for r in records] == [("approved", "bob"), ("running", "bob"), ("succeeded", "bob")]
    assert w.idp.active == set() and w.engine.list_pending() == []
    with pytest.raises(KeyError):
        await w.engine.approve(pending.action_id, "bob", NOW)


async def test_deny_and_expiry():
    w = World([playbook(mode="approval")])
    await w.engine.handle_incident(incident(), NOW)
    (pending,) = w.engine.list_pending()
    assert [r.status for r in await w.engine.deny(pending.action_id, "carol", NOW)] == ["denied"]
    assert await w.engine.handle_incident(incident(), NOW) == []  # denied stays denied
    await w.engine.handle_incident(incident(id="inc-2"), NOW)
    late = NOW + timedelta(seconds=Policy().approval_ttl_s + 1)
    assert w.engine.list_pending(late) == []
    assert [r.status for r in await w.engine.expire(late)] == ["expired"]
    assert w.rec.requests == []


async def test_approving_after_ttl_expires_instead():
    w = World([playbook(mode="approval")])
    await w.engine.handle_incident(incident(), NOW)
    (pending,) = w.engine.list_pending()
    records = await w.engine.approve(pending.action_id, "bob", NOW + timedelta(hours=2))
    assert [r.status for r in records] == ["expired"] and w.rec.requests == []


async def test_same_incident_twice_acts_once():
    w = World()
    await w.engine.handle_incident(incident(), NOW)
    again = await w.engine.handle_incident(incident(revision=2), NOW)
    assert [(r.status, r.reason) for r in again] == [("skipped", "already done (idempotency key)")]
    assert len(w.calls("/revocation")) == 1


async def test_revisions_of_a_done_incident_are_cheap_and_audited_once():
    """Every finding re-sends the incident: a settled step reads only the ledger (no
    credential lookup) and its "already done" record is emitted once, not per revision."""
    w = World()
    await w.engine.handle_incident(incident(), NOW)
    lookups = []
    tokens = w.creds.tokens

    async def counting(credential_id):
        lookups.append(credential_id)
        return await tokens(credential_id)

    w.creds.tokens = counting
    replays = [await w.engine.handle_incident(incident(revision=r), NOW) for r in range(2, 12)]
    assert [[r.status for r in records] for records in replays] == [["skipped"]] + [[]] * 9
    assert lookups == [] and len(w.calls("/revocation")) == 1


async def test_idempotency_survives_a_restart_with_the_same_store():
    store: dict[str, bytes] = {}
    w = World(ledger_store=store)
    await w.engine.handle_incident(incident(), NOW)
    w2 = World(ledger_store=store)  # a new worker process, same ledger table
    assert [r.status for r in await w2.engine.handle_incident(incident(), NOW)] == ["skipped"]
    assert w2.calls("/revocation") == []


async def test_pending_entry_after_crash_is_rechecked_at_the_target():
    # Crash after the revocation reached the IdP, before "done" was written.
    key = "inc-1|identity:revoke_token|cred-7"
    store = {key: encode(LedgerEntry(key=key, state="pending", action="identity:revoke_token", target="cred-7",
                                     playbook="pb", updated_at=NOW))}
    w = World(ledger_store=store)
    w.idp.active.clear()  # the IdP already revoked it
    records = await w.engine.handle_incident(incident(), NOW)
    assert [r.status for r in records] == ["skipped"] and "re-checked" in records[0].reason
    assert w.calls("/revocation") == [] and len(w.calls("/introspection")) == 1
    assert decode(store[key]).state == "done"
    # Crash before the call reached the IdP: the re-check says active, so it is retried.
    store[key] = encode(LedgerEntry(key=key, state="pending", action="identity:revoke_token", target="cred-7",
                                    playbook="pb", updated_at=NOW))
    w2 = World(ledger_store=store)
    assert [r.status for r in await w2.engine.handle_incident(incident(), NOW)] == ["running", "succeeded"]
    assert len(w2.calls("/revocation")) == 1


async def test_a_refused_revocation_does_not_spend_the_rate_limit():
    """A credential with no known tokens is refused by the pre-flight check: nothing was
    revoked, so the blast-radius budget stays for the next real leak."""
    w = World(policy=Policy(max_revocations_per_minute=1))
    await w.engine.handle_incident(incident(id="inc-unknown", entities=Entities(credential_id="cred-none")), NOW)
    assert "skipped" in w.statuses() and w.calls("/revocation") == []
    await w.engine.handle_incident(incident(), NOW)
    assert w.records[-1].status == "succeeded" and len(w.calls("/revocation")) == 1


async def test_rate_limit_sends_excess_revocations_to_a_human():
    w = World(policy=Policy(max_revocations_per_minute=2))
    for i in range(3):
        w.creds.register(f"cred-{i}", f"tok-{i}")
        w.idp.active.add(f"tok-{i}")
        await w.engine.handle_incident(incident(id=f"inc-{i}", entities=Entities(credential_id=f"cred-{i}")), NOW)
    assert [r.status for r in w.records] == ["running", "succeeded"] * 2 + ["pending_approval"]
    assert "rate limit" in w.records[-1].reason and len(w.calls("/revocation")) == 2
    w.clock_s += 30  # one token refilled
    w.creds.register("cred-9", "tok-9")
    await w.engine.handle_incident(incident(id="inc-9", entities=Entities(credential_id="cred-9")), NOW)
    assert w.records[-1].status == "succeeded"


async def test_allow_listed_principal_is_never_auto_revoked():
    w = World(policy=Policy(never_auto_revoke=frozenset({"cred-7"})))
    records = await w.engine.handle_incident(incident(), NOW)
    assert [r.status for r in records] == ["pending_approval"] and "allow-list" in records[0].reason
    assert w.calls("/revocation") == []
    records = await w.engine.approve(records[0].id.split(":")[0], "bob", NOW)
    assert records[-1].status == "succeeded"  # a human may decide


async def test_last_serving_version_is_refused_and_escalated():
    pb = load_playbooks()
    w = World(pb)
    w.reg.versions = {"3": {}}
    records = await w.engine.handle_incident(model_incident(), NOW)
    assert [r.status for r in records] == ["running", "skipped", "escalated"]
    assert "last serving version" in records[1].error
    assert [r.url.path for r in w.rec.mutating] == ["/api/v2/alerts"]  # only the page
    (alert,) = w.am.posts[-1]
    assert alert["labels"]["alertname"] == "AisoarActionFailed" and alert["labels"]["severity"] == "critical"
    assert w.reg.alias == {"champion": "3"} and w.reg.versions["3"] == {}


async def test_model_compromise_playbook_quarantines_rolls_back_pages():
    w = World(load_playbooks())
    records = await w.engine.handle_incident(model_incident(), NOW)
    assert [(r.action, r.status) for r in records if r.status != "running"] == [
        ("registry:quarantine", "succeeded"), ("registry:rollback", "succeeded"), ("oncall:alertmanager", "succeeded")]
    assert w.reg.alias == {"champion": "2"} and w.reg.versions["3"]["aisoar.quarantined"] == "true"
    n = len(w.rec.mutating)
    again = await w.engine.handle_incident(model_incident(revision=2), NOW)
    assert {r.status for r in again} == {"skipped"} and len(w.rec.mutating) == n
    closed = await w.engine.handle_incident(model_incident(status="closed"), NOW)
    assert [r.status for r in closed] == ["running", "succeeded"]
    assert w.am.posts[-1][0]["endsAt"] == "2026-11-25T03:00:00Z"


async def test_retries_with_capped_backoff_then_escalates():
    w = World(policy=Policy(max_attempts=5, backoff_s=1.0, backoff_max_s=3.0, breaker_failures=100))
    w.idp.revoke_status = 503
    records = await w.engine.handle_incident(incident(), NOW)
    assert [r.status for r in records] == ["running", "failed", "escalated"]
    assert w.sleeps == [1.0, 2.0, 3.0, 3.0] and len(w.calls("/revocation")) == 5
    assert records[1].response_status == 503 and records[1].attempt == 5
    assert w.am.posts and records[2].response_status == 200


async def test_non_retryable_error_is_not_retried():
    w = World()
    w.idp.revoke_status = 401
    records = await w.engine.handle_incident(incident(), NOW)
    assert [r.status for r in records] == ["running", "failed", "escalated"] and len(w.calls("/revocation")) == 1


async def test_circuit_opens_then_calls_stop_then_half_open():
    w = World(policy=Policy(max_attempts=3, backoff_s=0.0, breaker_failures=3, breaker_reset_s=60))
    w.idp.revoke_status = 503
    await w.engine.handle_incident(incident(), NOW)
    assert len(w.calls("/revocation")) == 3
    w.creds.register("cred-8", "tok-8")
    records = await w.engine.handle_incident(incident(id="inc-8", entities=Entities(credential_id="cred-8")), NOW)
    assert [r.status for r in records] == ["running", "failed", "escalated"]
    assert "circuit open" in records[1].error and len(w.calls("/revocation")) == 3  # not attempted
    w.idp.revoke_status = 200
    w.clock_s += 61  # half-open: one trial call, which succeeds and closes the circuit
    w.idp.active.add("tok-8")
    records = await w.engine.handle_incident(incident(id="inc-8", entities=Entities(credential_id="cred-8")), NOW)
    assert records[-1].status == "succeeded"


async def test_escalation_without_alertmanager_is_still_recorded():
    w = World(policy=Policy(max_attempts=1))
    w.engine.connections = Connections(oauth=CONN.oauth)
    w.idp.revoke_status = 500
    records = await w.engine.handle_incident(incident(), NOW)
    assert records[-1].status == "escalated" and records[-1].error == "no on-call receiver configured"


async def test_verification_escalates_when_signal_does_not_recover():
    steps = [{"action": "identity:revoke_token", "params": {"credential_id": "{{ entities.credential_id }}"},
              "verify_after": 60}]
    w = World([playbook(steps=steps)])
    await w.engine.handle_incident(incident(), NOW)
    assert await w.engine.verify_due(NOW + timedelta(seconds=30), lambda v: False) == []  # not due yet
    seen = []

    async def still_active(v):
        seen.append((v.signal, v.target))
        return False

    records = await w.engine.verify_due(NOW + timedelta(seconds=61), still_active)
    assert seen == [("credential_activity", "cred-7")]
    assert [r.status for r in records] == ["unverified", "escalated"] and "did not recover" in records[0].reason
    assert records[0].id.endswith(":unverified:0") and records[1].response_status == 200
    assert w.am.posts[-1][0]["labels"]["alertname"] == "AisoarVerificationFailed"
    assert await w.engine.verify_due(NOW + timedelta(seconds=120), still_active) == []  # once


async def test_verification_success_is_recorded():
    steps = [{"action": "identity:revoke_token", "params": {"credential_id": "{{ entities.credential_id }}"},
              "verify_after": 60}]
    w = World([playbook(steps=steps)])
    await w.engine.handle_incident(incident(), NOW)
    records = await w.engine.verify_due(NOW + timedelta(seconds=61), lambda v: True)
    assert [(r.status, r.reason) for r in records] == [("verified", "verified: credential_activity recovered")]
    assert len(w.engine.verifications) == 0


async def test_missing_entity_skips_with_reason():
    steps = [{"action": "identity:revoke_token", "params": {"credential_id": "{{ entities.user_id }}"}}]
    w = World([playbook(steps=steps)])
    records = await w.engine.handle_incident(incident(entities=Entities(credential_id="cred-7")), NOW)
    assert [r.status for r in records] == ["skipped"] and "user_id" in records[0].error


async def test_shipped_playbooks_route_incidents():
    w = World(load_playbooks())
    names = lambda inc: [p.name for p in w.engine.matching(inc)]
    assert names(incident()) == ["leaked-credential"]
    assert names(incident(rule_id="incident.jailbreak_campaign", categories=("jailbreak",))) == ["jailbreak-campaign"]
    assert names(model_incident()) == ["model-compromise"]
    assert names(incident(rule_id="incident.x", categories=("shadow_ai", "classified"),
                          entities=Entities(user_id="alice"))) == ["shadow-ai-classified"]
    assert names(incident(severity="low")) == []


async def test_jailbreak_playbook_pages_then_waits_for_approval():
    w = World(load_playbooks())
    inc = incident(rule_id="incident.jailbreak_campaign", categories=("jailbreak",))
    records = await w.engine.handle_incident(inc, NOW)
    assert [(r.action, r.status) for r in records] == [
        ("oncall:alertmanager", "running"), ("oncall:alertmanager", "succeeded"),
        ("identity:revoke_token", "pending_approval")]
    assert w.calls("/revocation") == []
    (pending,) = w.engine.list_pending()
    await w.engine.approve(pending.action_id, "bob", NOW)
    assert w.idp.active == set()


async def test_finding_before_correlation():
    w = World(load_playbooks())
    finding = Finding(id="f9", rule_id="secret.aws_access_key", rule_name="AWS key", category="secret",
                      severity="high", confidence=0.99, timestamp=NOW, event_id="e1", event_kind="prompt",
                      entities=Entities(credential_id="cred-7"), detector="content.secrets", detector_version="1")
    records = await w.engine.handle_finding(finding, NOW)
    assert ("identity:revoke_token", "succeeded") in [(r.action, r.status) for r in records]


def test_action_id_is_stable():
    assert action_id_for("inc-1|identity:revoke_token|cred-7") == action_id_for("inc-1|identity:revoke_token|cred-7")


# ---------------------------------------------------------------------- verify-after-acting, expiry


def _verified_playbook(verify_after=60):
    return playbook(steps=[{"action": "identity:revoke_token", "verify_after": verify_after,
                            "params": {"credential_id": "{{ entities.credential_id }}"}}])


async def test_unavailable_signal_is_retried_then_counts_as_not_recovered():
    w = World([_verified_playbook()], policy=Policy(verify_give_up_s=600))
    await w.engine.handle_incident(incident(), NOW)
    calls = []

    def down(v):
        calls.append(v.action_id)
        raise ConnectionError("index unreachable")

    assert await w.engine.verify_due(NOW + timedelta(seconds=61), down) == []  # postponed, kept
    assert len(w.engine.verifications) == 1
    records = await w.engine.verify_due(NOW + timedelta(seconds=60 + 601), down)
    assert [r.status for r in records] == ["unverified", "escalated"] and len(calls) == 2
    assert "signal unavailable (ConnectionError)" in records[0].reason and len(w.engine.verifications) == 0


async def test_verification_and_expiry_touch_only_the_callers_incidents():
    w = World([_verified_playbook(), playbook(name="ask", mode="approval", triggers=[
        {"incident_rules": ["incident.other"], "entity": "credential_id"}])])
    await w.engine.handle_incident(incident(), NOW)  # verification of inc-1
    w.creds.register("cred-8", "tok-8")
    await w.engine.handle_incident(incident(id="inc-2", rule_id="incident.other",  # approval of inc-2
                                            entities=Entities(credential_id="cred-8")), NOW)
    late = NOW + timedelta(hours=2)
    mine = lambda incident_id: incident_id == "inc-9"  # a partition holding neither
    assert await w.engine.verify_due(late, lambda v: True, owns=mine) == []
    assert await w.engine.expire(late, owns=mine) == []
    assert len(w.engine.verifications) == 1 and len(w.engine.approvals) == 1
    assert [r.status for r in await w.engine.expire(late, owns=lambda i: i == "inc-2")] == ["expired"]
    assert [r.status for r in await w.engine.verify_due(late, lambda v: True, owns=lambda i: i == "inc-1")] == [
        "verified"]
    assert w.engine.ledger.get("inc-2|identity:revoke_token|cred-8").state == "expired"


async def test_a_crash_while_recording_an_outcome_re_emits_it_never_loses_it():
    store_v, store_a = {}, {}
    w = World([_verified_playbook(), playbook(name="ask", mode="approval", triggers=[
        {"incident_rules": ["incident.other"], "entity": "credential_id"}])],
        verifications_store=store_v, approvals_store=store_a)
    await w.engine.handle_incident(incident(), NOW)
    w.creds.register("cred-8", "tok-8")
    await w.engine.handle_incident(incident(id="inc-2", rule_id="incident.other",
                                            entities=Entities(credential_id="cred-8")), NOW)

    async def broken_emit(record):
        raise RuntimeError("producer died")

    w.engine._emit = broken_emit  # the worker dies while publishing the outcome
    late = NOW + timedelta(hours=2)
    with pytest.raises(RuntimeError):
        await w.engine.expire(late)
    with pytest.raises(RuntimeError):
        await w.engine.verify_due(late, lambda v: False)
    assert len(store_a) == 1 and len(store_v) == 1  # both still there for the restarted worker
    w2 = World([_verified_playbook()], verifications_store=store_v, approvals_store=store_a, ledger_store=w.ledger)
    assert [r.id.split(":", 1)[1] for r in await w2.engine.expire(late)] == ["expired:0"]
    assert [r.id.split(":", 1)[1] for r in await w2.engine.verify_due(late, lambda v: False)] == [
        "unverified:0", "verify-escalated:0"]
    assert store_a == {} and store_v == {}


async def test_rollback_verification_knows_the_restored_version():
    from playbooks.verification import FindingsSignals

    w = World(load_playbooks())
    await w.engine.handle_incident(model_incident(), NOW)
    (v,) = list(w.engine.verifications)
    assert v.action == "registry:rollback" and v.result["to"] == "2" and v.signal == "model_drift"
    queries = []

    async def count(query):
        queries.append(query)
        return 3  # the restored version drifts too

    records = await w.engine.verify_due(NOW + timedelta(seconds=901), FindingsSignals(count))
    assert [r.status for r in records] == ["unverified", "escalated"]
    assert "3 drift findings of fraud v2 since acting" in records[0].reason
    filters = queries[0]["bool"]["filter"]
    assert {"term": {"aisoar.entities.model_version": "2"}} in filters
    assert filters[0] == {"range": {"@timestamp": {"gt": "2026-11-25T03:00:00+00:00"}}}


async def test_credential_activity_query_watches_the_principal_after_acting():
    from playbooks.verification import FindingsSignals

    w = World([_verified_playbook()])
    await w.engine.handle_incident(incident(), NOW)
    seen = []

    async def count(query):
        seen.append(query)
        return 0

    records = await w.engine.verify_due(NOW + timedelta(seconds=61), FindingsSignals(count))
    assert [(r.status, r.reason) for r in records] == [
        ("verified", "verified: credential_activity recovered (0 findings of cred-7 since acting)")]
    assert {"term": {"aisoar.entities.credential_id": "cred-7"}} in seen[0]["bool"]["should"]


# ---------------------------------------------------------------------- one side effect across incidents


async def test_same_token_from_two_incidents_is_revoked_once_with_a_reference():
    w = World()
    by_session = incident(id="inc-session", correlation_key="session:s1")
    by_principal = incident(id="inc-principal", correlation_key="principal:cred-7")
    first = await w.engine.handle_incident(by_session, NOW)
    second = await w.engine.handle_incident(by_principal, NOW)
    assert [r.status for r in first] == ["running", "succeeded"]
    (dup,) = second
    assert dup.status == "skipped" and dup.incident_id == "inc-principal"
    assert "already done for incident inc-session" in dup.reason and first[-1].id.split(":")[0] in dup.reason
    assert len(w.calls("/revocation")) == 1 and w.idp.active == set()
    # Replays of either, and a restarted worker on the same ledger: still one revocation.
    await w.engine.handle_incident(by_principal, NOW)
    w2 = World(ledger_store=w.ledger)
    await w2.engine.handle_incident(incident(id="inc-third", correlation_key="principal:alice"), NOW)
    assert w2.records[-1].status == "skipped" and "inc-session" in w2.records[-1].reason
    assert w2.calls("/revocation") == [] and len(w.calls("/revocation")) == 1


async def test_a_token_issued_after_the_revocation_is_a_new_effect():
    w = World()
    await w.engine.handle_incident(incident(id="inc-a"), NOW)
    w.creds.register("cred-7", "tok-new")  # the gateway handed the credential a new token, it leaked too
    w.idp.active.add("tok-new")
    records = await w.engine.handle_incident(incident(id="inc-b"), NOW)
    assert [r.status for r in records] == ["running", "succeeded"] and w.idp.active == set()


async def test_first_incident_crashed_mid_revocation_second_rechecks_the_target():
    w = World()
    await w.engine.handle_incident(incident(id="inc-a"), NOW)
    # Rewrite the effect entry as a crash left it: sent, "done" never written.
    (effect,) = [k for k in w.ledger if k.startswith("effect|")]
    entry = decode(w.ledger[effect])
    w.ledger[effect] = encode(msgspec.structs.replace(entry, state="pending"))
    w2 = World(ledger_store=w.ledger)
    w2.idp.active.clear()  # the identity server has it revoked
    records = await w2.engine.handle_incident(incident(id="inc-b"), NOW)
    assert [r.status for r in records] == ["skipped"] and "inc-a" in records[0].reason
    assert w2.calls("/revocation") == [] and len(w2.calls("/introspection")) == 1


async def test_failed_first_attempt_does_not_block_the_next_incident():
    w = World(policy=Policy(max_attempts=1, breaker_failures=100))
    w.idp.revoke_status = 503
    await w.engine.handle_incident(incident(id="inc-a"), NOW)
    w.idp.revoke_status = 200
    records = await w.engine.handle_incident(incident(id="inc-b"), NOW)
    assert records[-1].status == "succeeded" and w.idp.active == set()


async def test_same_model_version_from_two_incidents_is_quarantined_and_rolled_back_once():
    w = World(load_playbooks())
    await w.engine.handle_incident(model_incident(), NOW)
    n = len(w.rec.mutating)
    records = await w.engine.handle_incident(model_incident(id="inc-m2"), NOW)
    skipped = [(r.action, r.status) for r in records if r.action.startswith("registry:")]
    assert skipped == [("registry:quarantine", "skipped"), ("registry:rollback", "skipped")]
    assert [r.url.path for r in w.rec.mutating[n:]] == ["/api/v2/alerts"]  # only this incident's page
    assert w.reg.alias == {"champion": "2"}


async def test_a_decision_racing_the_expiry_is_refused_not_applied_twice():
    w = World([playbook(mode="approval")])
    await w.engine.handle_incident(incident(), NOW)
    (pending,) = w.engine.list_pending()
    results = {}

    async def slow_emit(record):  # the expiry's audit record is being published when the decision lands
        w.records.append(record)
        if record.status == "expired":
            with pytest.raises(KeyError):
                await w.engine.approve(pending.action_id, "bob", NOW)
            results["approve_refused"] = True

    w.engine._emit = slow_emit
    records = await w.engine.expire(NOW + timedelta(hours=2))
    assert [r.status for r in records] == ["expired"] and results == {"approve_refused": True}
    assert w.calls("/revocation") == [] and w.engine.list_pending() == []


async def test_pending_is_made_durable_before_the_side_effect():
    order = []
    w = World()
    inner = w.rec.handler

    def handler(request):
        order.append(("request", request.url.path))
        return inner(request)

    w.rec.handler = handler

    async def flush():
        order.append(("flush", decode(w.ledger["inc-1|identity:revoke_token|cred-7"]).state))

    w.engine.write_ahead = flush
    await w.engine.handle_incident(incident(), NOW)
    assert order[0] == ("flush", "pending") and ("request", "/token/revocation") in order[1:]
