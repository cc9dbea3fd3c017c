"""ECS mapping: exact documents, deterministic ids, no raw text, every field mapped."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import msgspec
import pytest

from aisoar.actions import ActionRecord as AuditRecord
from aisoar.events import dead_letter
from aisoar.findings import Entities, Finding
from aisoar.incidents import Incident
from streams.siem import (
    KINDS,
    action_to_ecs,
    dead_letter_to_ecs,
    finding_to_ecs,
    incident_to_ecs,
    mappings,
    to_ecs,
)

from .conftest import SECRET, make_finding

EXPECTED_FINDING = {
    "@timestamp": "2026-11-25T10:00:00.123000Z",
    "ecs": {"version": "8.17.0"},
    "message": "AWS access key id in prompt",
    "event": {
        "kind": "alert",
        "category": ["intrusion_detection"],
        "type": ["info", "denied"],
        "id": "225c7b4adf97ff0966198807",
        "severity": 4,
        "risk_score": 73.0,
        "module": "aisoar",
        "dataset": "aisoar.findings",
        "provider": "content.secrets",
    },
    "rule": {
        "id": "secret.aws_access_key",
        "name": "AWS access key id",
        "category": "secret",
        "ruleset": "aisoar",
        "version": "1.0.0",
    },
    "threat": {
        "framework": "MITRE ATLAS",
        "technique": {"id": ["AML.T0057", "AML.T0051"], "subtechnique": {"id": ["AML.T0051.000"]}},
    },
    "tags": ["aisoar", "finding", "secret"],
    "aisoar": {
        "record_type": "finding",
        "finding_id": "225c7b4adf97ff0966198807",
        "severity": "high",
        "category": "secret",
        "confidence": 0.99,
        "policy_decision": "block",
        "detector": {"name": "content.secrets", "version": "1.0.0"},
        "event": {"id": "e0", "kind": "prompt"},
        "entities": {
            "user_id": "alice",
            "session_id": "s1",
            "credential_id": "key-7",
            "client_address": "10.1.2.3",
            "app_id": "copilot",
            "server_address": "api.openai.com",
            "provider": "openai",
            "gen_ai_model": "gpt-4o",
        },
        "evidence": [
            {
                "field": "prompt",
                "start": 10,
                "end": 30,
                "redacted": "AKIA************MPLE",
                "sha": "b1dba8e85ee052b5",
                "detail": "plain",
            }
        ],
        "owasp_llm": ["LLM02:2025"],
        "atlas": ["AML.T0057", "AML.T0051.000"],
    },
    "user": {"id": "alice"},
    "client": {"address": "10.1.2.3", "ip": "10.1.2.3"},
    "source": {"address": "10.1.2.3", "ip": "10.1.2.3"},
    "server": {"address": "api.openai.com"},
    "gen_ai": {"system": "openai", "request": {"model": {"id": "gpt-4o"}}},
    "related": {"user": ["alice", "key-7"], "ip": ["10.1.2.3"], "hash": ["b1dba8e85ee052b5"]},
}


def leaf_paths(doc: Any, prefix: str = "") -> set[str]:
    if isinstance(doc, dict):
        paths: set[str] = set()
        for key, value in doc.items():
            paths |= leaf_paths(value, f"{prefix}.{key}" if prefix else key)
        return paths
    if isinstance(doc, list):
        return set().union(*(leaf_paths(v, prefix) for v in doc)) if doc else {prefix}
    return {prefix}


def mapped_paths(mapping: dict[str, Any], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for key, spec in mapping["properties"].items():
        path = f"{prefix}.{key}" if prefix else key
        paths |= mapped_paths(spec, path) if "properties" in spec else {path}
    return paths


def test_finding_exact_document() -> None:
    doc = finding_to_ecs(make_finding())
    assert doc.kind == "finding"
    assert doc.id == "225c7b4adf97ff0966198807"  # the finding id: replay overwrites
    assert doc.timestamp == datetime(2026, 11, 25, 10, 0, 0, 123000, tzinfo=timezone.utc)
    assert doc.source == EXPECTED_FINDING


def test_finding_document_is_deterministic() -> None:
    assert finding_to_ecs(make_finding(3)) == finding_to_ecs(make_finding(3))
    assert finding_to_ecs(make_finding(3)).id != finding_to_ecs(make_finding(4)).id


def test_no_raw_text_and_no_secret_in_any_document() -> None:
    letter = dead_letter(
        "ai.prompts", f'{{"prompt": "key {SECRET}"}}'.encode(), "malformed JSON", partition=1, offset=7
    )
    for doc in (finding_to_ecs(make_finding()), dead_letter_to_ecs(letter)):
        encoded = msgspec.json.encode(doc.source)
        assert SECRET.encode() not in encoded
        assert base64.b64encode(SECRET.encode())[:12] not in encoded
        assert letter.payload_b64.encode() not in encoded
        paths = leaf_paths(doc.source)
        assert not {
            p for p in paths if p.split(".")[-1] in {"prompt", "response", "tool_calls", "payload_b64", "original"}
        }


def test_host_name_client_address_never_goes_to_ip_fields() -> None:
    source = finding_to_ecs(make_finding(client="laptop-17.corp")).source
    assert source["client"] == {"address": "laptop-17.corp"}
    assert "ip" not in source["source"] and "ip" not in source["related"]


def test_policy_decisions_and_minimal_finding() -> None:
    finding = Finding(
        id="f1", rule_id="drift.adwin", rule_name="Score drift", category="drift", severity="medium",
        confidence=0.8, timestamp=datetime(2026, 1, 1), event_id="i1", event_kind="inference",
        entities=Entities(model_name="fraud", model_version="7"), detector="drift.adwin",
        detector_version="1.0.0", score=0.31,
    )  # fmt: skip
    source = finding_to_ecs(finding).source
    assert source["@timestamp"] == "2026-01-01T00:00:00Z"  # naive = UTC
    assert source["event"]["type"] == ["info"]
    assert "threat" not in source and "user" not in source and "client" not in source
    assert source["aisoar"]["entities"] == {"model_name": "fraud", "model_version": "7"}
    assert source["aisoar"]["score"] == 0.31
    allowed = msgspec.structs.replace(finding, policy_decision="coach")
    assert finding_to_ecs(allowed).source["event"]["type"] == ["info", "allowed"]


def test_every_written_field_is_in_the_mapping() -> None:
    """dynamic: false silently stops indexing unmapped fields: every field we write must be mapped."""
    mapped = mapped_paths(mappings())
    letter = dead_letter("ai.prompts", b"x", "bad", partition=0, offset=1, key=b"k")
    docs = [
        finding_to_ecs(make_finding()),
        dead_letter_to_ecs(letter),
        incident_to_ecs(INCIDENT),
        action_to_ecs(ACTION),
    ]
    for doc in docs:
        missing = leaf_paths(doc.source) - mapped
        assert not missing, (doc.kind, missing)


INCIDENT = {
    "id": "inc-1",
    "first_seen": datetime(2026, 11, 25, tzinfo=timezone.utc),
    "last_seen": "2026-11-25T00:05:00Z",
    "rule_id": "incident.secret_burst",
    "rule_name": "Secrets pasted repeatedly",
    "severity": "critical",
    "status": "open",
    "title": "alice pasted 3 secrets",
    "entities": {"user_id": ["alice", "bob"], "client_address": "10.0.0.9", "session_id": "s1"},
    "finding_ids": ["f1", "f2", "f3"],
    "atlas": ["AML.T0057"],
    "owasp": ["LLM02:2025"],
    "weird key with spaces": {"nested": "value"},
}

ACTION = {
    "id": "act-1",
    "action": "identity:revoke_token",
    "incident_id": "inc-1",
    "started_at": "2026-11-25T00:06:00Z",
    "finished_at": "2026-11-25T00:06:00.250Z",
    "status": "done",
    "target": "https://idp.example",
    "approved_by": "carol",
    "mode": "enforce",
    "attempts": 1,
    "parameters": {"token": "SECRET-TOKEN-VALUE"},
}


def test_incident_mapping() -> None:
    doc = incident_to_ecs(INCIDENT)
    assert doc.kind == "incident" and doc.id == "inc-1"
    source = doc.source
    assert source["@timestamp"] == "2026-11-25T00:00:00Z"
    assert source["message"] == "alice pasted 3 secrets"
    assert source["event"] == {
        "id": "inc-1", "kind": "alert", "category": ["intrusion_detection"], "type": ["info"],
        "severity": 5, "risk_score": 99.0, "start": "2026-11-25T00:00:00Z", "end": "2026-11-25T00:05:00Z",
        "duration": 300_000_000_000, "module": "aisoar", "dataset": "aisoar.incidents",
    }  # fmt: skip
    assert source["rule"] == {"id": "incident.secret_burst", "name": "Secrets pasted repeatedly", "ruleset": "aisoar"}
    assert source["user"] == {"id": ["alice", "bob"]}
    assert source["client"] == {"address": "10.0.0.9", "ip": "10.0.0.9"}
    assert source["threat"] == {"framework": "MITRE ATLAS", "technique": {"id": ["AML.T0057"]}}
    assert source["aisoar"]["incident"] == {"id": "inc-1", "finding_ids": ["f1", "f2", "f3"], "finding_count": 3}
    assert source["aisoar"]["status"] == "open"
    assert source["aisoar"]["owasp_llm"] == ["LLM02:2025"]
    assert source["aisoar"]["unmapped_fields"] == ["weird key with spaces"]
    assert b'"nested"' not in msgspec.json.encode(source)  # unknown values are not copied


def test_incident_update_keeps_id_and_index_time() -> None:
    later = {
        **INCIDENT,
        "last_seen": "2026-12-03T00:00:00Z",
        "timestamp": "2026-12-03T00:00:00Z",
        "status": "contained",
    }
    first, second = incident_to_ecs(INCIDENT), incident_to_ecs(later)
    assert first.id == second.id
    assert first.timestamp == second.timestamp  # same monthly index although it grew into December
    assert second.source["aisoar"]["status"] == "contained"


class IncidentStruct(msgspec.Struct, kw_only=True):
    incident_id: str
    first_seen: datetime
    severity: str
    entities: Entities
    finding_ids: tuple[str, ...] = ()


@dataclass
class ActionRecord:
    action_id: str
    name: str
    timestamp: datetime
    outcome: str
    duration_ms: float
    error: str | None = None


def test_structs_and_dataclasses_are_accepted() -> None:
    incident = IncidentStruct(
        incident_id="inc-9", first_seen=datetime(2026, 11, 2, tzinfo=timezone.utc), severity="high",
        entities=Entities(user_id="dave", model_name="m"), finding_ids=("a",),
    )  # fmt: skip
    doc = incident_to_ecs(incident)
    assert doc.id == "inc-9"
    assert doc.source["user"] == {"id": "dave"}
    assert doc.source["aisoar"]["entities"] == {"user_id": "dave", "model_name": "m"}
    action = ActionRecord(
        "a-9", "oncall:alertmanager", datetime(2026, 11, 2, tzinfo=timezone.utc), "failed", 12.5, "HTTP 503"
    )
    source = action_to_ecs(action).source
    assert source["event"]["outcome"] == "failure"
    assert source["event"]["duration"] == 12_500_000
    assert source["event"]["category"] == ["api"]
    assert source["error"] == {"message": "HTTP 503"}


def test_action_mapping_and_parameters_not_indexed() -> None:
    doc = action_to_ecs(ACTION)
    assert doc.id == "act-1" and doc.kind == "action"
    source = doc.source
    assert source["event"]["kind"] == "event"
    assert source["event"]["category"] == ["iam"] and source["event"]["type"] == ["change"]
    assert source["event"]["action"] == "identity:revoke_token"
    assert source["event"]["outcome"] == "success"
    assert source["event"]["duration"] == 250_000_000
    assert source["aisoar"]["action"] == {
        "id": "act-1", "name": "identity:revoke_token", "incident_id": "inc-1", "target": "https://idp.example",
        "mode": "enforce", "actor": "carol", "attempts": 1,
    }  # fmt: skip
    assert source["related"] == {"user": ["carol"]}
    assert source["aisoar"]["unmapped_fields"] == ["parameters"]
    assert b"SECRET-TOKEN-VALUE" not in msgspec.json.encode(source)


def test_pending_action_outcome_unknown_and_id_from_content() -> None:
    record = {"action": "oncall:alertmanager", "timestamp": "2026-11-25T00:00:00Z", "status": "pending"}
    first, again = action_to_ecs(record), action_to_ecs(dict(record))
    assert first.source["event"]["outcome"] == "unknown"
    assert first.id == again.id and len(first.id) == 24  # no id field: a digest, still replay-safe


def test_dead_letter_mapping() -> None:
    payload = b'{"schema_version": 9}'
    letter = dead_letter("ai.prompts", payload, "unsupported schema_version 9", partition=2, offset=41, key=b"s1",
                         now=datetime(2026, 11, 25, 1, 2, 3, tzinfo=timezone.utc))  # fmt: skip
    doc = dead_letter_to_ecs(letter)
    assert doc.source == {
        "@timestamp": "2026-11-25T01:02:03Z",
        "ecs": {"version": "8.17.0"},
        "message": "record rejected from ai.prompts",
        "event": {
            "kind": "event", "type": ["error"], "outcome": "failure", "action": "dead_letter", "id": doc.id,
            "reason": "unsupported schema_version 9", "created": "2026-11-25T01:02:03Z", "module": "aisoar", "dataset": "aisoar.deadletter",
        },
        "error": {"message": "unsupported schema_version 9"},
        "tags": ["aisoar", "deadletter"],
        "aisoar": {
            "record_type": "deadletter",
            "deadletter": {
                "topic": "ai.prompts", "partition": 2, "offset": 41, "payload_bytes": len(payload),
                "payload_sha256": hashlib.sha256(payload).hexdigest(),
                "key_sha256": hashlib.sha256(b"s1").hexdigest(),
            },
        },
    }  # fmt: skip
    # Same Kafka position, later replay: same document.
    again = dead_letter("ai.prompts", payload, "unsupported schema_version 9", partition=2, offset=41)
    assert dead_letter_to_ecs(again).id == doc.id


def test_to_ecs_dispatch_and_unknown_kind() -> None:
    assert to_ecs("finding", make_finding()).kind == "finding"
    assert set(KINDS) == {"finding", "incident", "action", "deadletter"}
    with pytest.raises(ValueError, match="valid kinds: finding, incident, action, deadletter"):
        to_ecs("alert", {})


def test_record_without_time_is_refused() -> None:
    with pytest.raises(ValueError, match="no timestamp"):
        incident_to_ecs({"id": "x"})
    with pytest.raises(TypeError, match="expected a Struct, dataclass or dict"):
        incident_to_ecs(42)


REAL_INCIDENT = Incident(
    id="inc-42",
    rule_id="incident.jailbreak_then_leak",
    rule_name="Jailbreak followed by a leak",
    status="updated",
    severity="critical",
    risk_score=88.5,
    first_seen=datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc),
    last_seen=datetime(2026, 11, 25, 9, 10, tzinfo=timezone.utc),
    entities=Entities(session_id="s1", user_id="alice", credential_id="cred-7"),
    correlation_key="session:s1",
    finding_ids=("f3", "f2"),
    finding_count=7,
    categories=("jailbreak", "secret"),
    rule_ids=("jailbreak.dan", "secret.aws_access_key"),
    atlas=("AML.T0054",),
    owasp=("LLM01:2025",),
    revision=4,
    summary="jailbreak then AWS key in session s1",
)


def test_real_incident_record() -> None:
    doc = incident_to_ecs(REAL_INCIDENT)
    assert (doc.id, doc.kind, doc.timestamp) == ("inc-42", "incident", REAL_INCIDENT.first_seen)
    source = doc.source
    assert source["event"]["risk_score"] == 88.5  # the record's own (decayed) score wins
    assert source["event"]["severity"] == 5
    assert source["rule"] == {
        "id": "incident.jailbreak_then_leak",
        "name": "Jailbreak followed by a leak",
        "ruleset": "aisoar",
    }
    assert source["message"] == "jailbreak then AWS key in session s1"
    assert source["aisoar"]["incident"] == {
        "id": "inc-42", "finding_ids": ["f3", "f2"], "finding_count": 7,
        "finding_rule_ids": ["jailbreak.dan", "secret.aws_access_key"], "correlation_key": "session:s1", "revision": 4,
    }  # fmt: skip
    assert source["aisoar"]["category"] == ["jailbreak", "secret"]
    assert source["tags"] == ["aisoar", "incident", "jailbreak", "secret"]
    assert source["related"]["user"] == ["alice", "cred-7"]
    assert "unmapped_fields" not in source["aisoar"]  # every Incident field has a home
    assert not leaf_paths(source) - mapped_paths(mappings())


REAL_ACTION = AuditRecord(
    id="a-1:succeeded:1",
    idempotency_key="inc-42|identity:revoke_token|cred-7",
    playbook="contain-leaked-credential",
    action="identity:revoke_token",
    target="cred-7",
    mode="approval",
    status="succeeded",
    timestamp=datetime(2026, 11, 25, 9, 12, tzinfo=timezone.utc),
    incident_id="inc-42",
    finding_id="f2",
    actor="carol@soc",
    reason="approved on the web page",
    request={"method": "POST", "url": "http://127.0.0.1:9/token/revocation", "form": {"token": "<token>"}},
    response_status=200,
    duration_ms=42.5,
    attempt=1,
)


def test_real_action_record() -> None:
    doc = action_to_ecs(REAL_ACTION)
    assert (doc.id, doc.kind) == ("a-1:succeeded:1", "action")
    source = doc.source
    assert source["event"] == {
        "id": "a-1:succeeded:1", "kind": "event", "category": ["iam"], "type": ["change"],
        "action": "identity:revoke_token", "reason": "approved on the web page", "outcome": "success",
        "duration": 42_500_000, "module": "aisoar", "dataset": "aisoar.actions",
    }  # fmt: skip
    assert source["http"] == {"request": {"method": "POST"}, "response": {"status_code": 200}}
    assert source["url"] == {"full": "http://127.0.0.1:9/token/revocation"}
    assert source["aisoar"]["action"] == {
        "id": "a-1:succeeded:1", "name": "identity:revoke_token", "playbook": "contain-leaked-credential",
        "incident_id": "inc-42", "finding_id": "f2", "target": "cred-7", "mode": "approval", "actor": "carol@soc",
        "idempotency_key": "inc-42|identity:revoke_token|cred-7", "attempts": 1,
    }  # fmt: skip
    assert source["aisoar"]["status"] == "succeeded"
    assert source["related"] == {"user": ["carol@soc"]}
    assert b"<token>" not in msgspec.json.encode(source)  # request bodies are never indexed
    assert "unmapped_fields" not in source["aisoar"]
    assert not leaf_paths(source) - mapped_paths(mappings())


@pytest.mark.parametrize(
    ("status", "outcome"),
    [("planned", "unknown"), ("pending_approval", "unknown"), ("succeeded", "success"), ("failed", "failure"),
     ("denied", "failure"), ("expired", "failure"), ("skipped", "unknown")],
)  # fmt: skip
def test_action_status_to_outcome(status: str, outcome: str) -> None:
    record = msgspec.structs.replace(REAL_ACTION, status=status, actor="aisoar")
    source = action_to_ecs(record).source
    assert source["event"]["outcome"] == outcome
    assert "related" not in source  # the policy engine is not a user to pivot on


def test_detected_at_becomes_event_created() -> None:
    detected = datetime(2026, 11, 25, 10, 0, 2, tzinfo=timezone.utc)
    finding = msgspec.structs.replace(make_finding(), detected_at=detected)
    assert finding_to_ecs(finding).source["event"]["created"] == "2026-11-25T10:00:02Z"  # minus @timestamp = MTTD
