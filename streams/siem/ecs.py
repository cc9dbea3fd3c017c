"""Map aisoar records to Elastic Common Schema (ECS) documents.

One mapping function per record type (:func:`finding_to_ecs`,
:func:`incident_to_ecs`, :func:`action_to_ecs`, :func:`dead_letter_to_ecs`) and
:func:`to_ecs` dispatching on a kind name. Incidents and action audit records
are accepted as a msgspec Struct, a dataclass or a plain dict: their common
fields (id, times, rule, severity, risk, entities, status, outcome) are mapped
by one generic function driven by the alias tables below, so a new field is one
table entry.

Every document carries a deterministic ``_id`` (the record's own id): a replayed
record overwrites its document instead of duplicating it. Nothing here copies
raw prompt/response text or dead-letter payload bytes: findings only carry
redacted evidence, dead letters are indexed by size and hash, and unknown fields
of incidents/actions are listed by name only (their values may hold secrets,
e.g. a token an action revoked).

>>> from datetime import datetime, timezone
>>> from aisoar.findings import Entities, Finding
>>> doc = finding_to_ecs(Finding(
...     id="f1", rule_id="secret.aws_access_key", rule_name="AWS access key id",
...     category="secret", severity="high", confidence=0.99,
...     timestamp=datetime(2026, 11, 25, 10, 0, tzinfo=timezone.utc),
...     event_id="e1", event_kind="prompt", entities=Entities(user_id="alice"),
...     detector="content.secrets", detector_version="1.0.0"))
>>> doc.id, doc.kind, doc.source["@timestamp"], doc.source["event"]["severity"]
('f1', 'finding', '2026-11-25T10:00:00Z', 4)
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, Literal, NamedTuple

import msgspec

from aisoar.events import DeadLetter
from aisoar.findings import Entities, Finding

__all__ = [
    "ECS_VERSION",
    "KINDS",
    "RISK_SCORES",
    "SEVERITY_NUMBERS",
    "EcsDocument",
    "Kind",
    "action_to_ecs",
    "dead_letter_to_ecs",
    "finding_to_ecs",
    "incident_to_ecs",
    "record_to_ecs",
    "to_ecs",
]

#: The ECS version the documents follow (``gen_ai.*`` fields appeared in 8.17).
ECS_VERSION = "8.17.0"

Kind = Literal["finding", "incident", "action", "deadletter"]
KINDS: tuple[Kind, ...] = ("finding", "incident", "action", "deadletter")

#: ``event.severity`` is numeric in ECS and source-defined: ours ranks 1 (info) .. 5 (critical).
SEVERITY_NUMBERS = {"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
#: ``event.risk_score`` (0-100): the default scores of Elastic detection rules, so
#: aisoar alerts sort with the SIEM's own alerts.
RISK_SCORES = {"info": 0.0, "low": 21.0, "medium": 47.0, "high": 73.0, "critical": 99.0}

ATLAS_FRAMEWORK = "MITRE ATLAS"


class EcsDocument(NamedTuple):
    """One document ready for ``_bulk``: its kind (which index), ``_id``, time and body."""

    kind: Kind
    id: str
    timestamp: datetime  # picks the time-bucketed index; stable for a given record
    source: dict[str, Any]


# ---------------------------------------------------------------------------
# helpers


def _utc(value: datetime) -> datetime:
    # Naive datetimes are taken as UTC: every aisoar clock is UTC.
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _iso(value: datetime) -> str:
    return _utc(value).isoformat().replace("+00:00", "Z")


def _parse_time(value: Any) -> datetime | None:
    """A datetime from a datetime, an ISO-8601 string or epoch seconds/milliseconds."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return _utc(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = value / 1000 if value > 1e11 else value  # epoch ms vs s
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    if isinstance(value, str):
        try:
            return _utc(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


def _prune(value: Any) -> Any:
    """Drop None, empty strings and empty containers, keeping 0 and False."""
    # The commonest types are tested by identity first: this runs over every document
    # (it was ~40% of the ECS mapping's time with isinstance on every value, py-spy).
    kind = type(value)
    if kind is dict or (kind is not list and kind is not tuple and isinstance(value, dict)):
        pruned: dict[str, Any] = {}
        for key, item in value.items():
            kept = _pruned_item(item)
            if kept is not _DROP:
                pruned[key] = kept
        return pruned
    if kind is list or kind is tuple or isinstance(value, (list, tuple)):
        items: list[Any] = []
        for item in value:
            kept = _pruned_item(item)
            if kept is not _DROP:
                items.append(kept)
        return items
    return value


_DROP = object()
_SCALARS = frozenset({int, float, bool, datetime})


def _pruned_item(item: Any) -> Any:
    """``item`` pruned, or ``_DROP`` when ``_prune`` leaves it out of its container."""
    kind = type(item)
    if kind is str:
        return item if item else _DROP
    if item is None:
        return _DROP
    if kind in _SCALARS:
        return item
    if isinstance(item, (dict, list, tuple)):
        item = _prune(item)
        return item if item else _DROP
    return _DROP if item == "" else item


@functools.lru_cache(maxsize=4096)  # client addresses repeat; parsing is the costliest step
def _ip(address: str | None) -> str | None:
    """``address`` if it is an IP (ECS ``*.ip`` fields are typed ``ip``: a host name there
    would be a mapping error that loses the whole alert)."""
    if not address:
        return None
    try:
        return str(ipaddress.ip_address(address.strip("[]")))
    except ValueError:
        return None


def _unique(values: Iterable[Any]) -> list[Any]:
    seen: dict[Any, None] = {}
    for value in values:
        if value is not None and value != "":
            seen.setdefault(value, None)
    return list(seen)


def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def _threat(atlas: Iterable[str]) -> dict[str, Any] | None:
    """ECS ``threat.*`` for MITRE ATLAS ids; ``AML.T0051.000`` is a sub-technique of ``AML.T0051``."""
    techniques: list[str] = []
    subtechniques: list[str] = []
    for technique in atlas:
        parts = technique.split(".")
        if len(parts) >= 3 and parts[0] == "AML":
            subtechniques.append(technique)
            techniques.append(".".join(parts[:2]))
        else:
            techniques.append(technique)
    if not techniques:
        return None
    threat: dict[str, Any] = {"framework": ATLAS_FRAMEWORK, "technique": {"id": _unique(techniques)}}
    if subtechniques:
        threat["technique"]["subtechnique"] = {"id": _unique(subtechniques)}
    return threat


_ENTITY_KEYS = tuple(Entities.__struct_fields__)


def _entity_fields(entities: Mapping[str, Any]) -> dict[str, Any]:
    """ECS fields for the entities that have an ECS home; all of them also go under
    ``aisoar.entities`` (the same names correlation and playbooks use)."""

    def values(key: str) -> list[str]:
        value = entities.get(key)
        if value is None:
            return []
        return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]

    def one_or_many(items: list[Any]) -> Any:
        return items[0] if len(items) == 1 else (items or None)

    clients = values("client_address")
    ips = _unique(_ip(address) for address in clients)
    users = values("user_id")
    return {
        "user": {"id": one_or_many(users)},
        "client": {"address": one_or_many(clients), "ip": one_or_many(ips)},
        "source": {"address": one_or_many(clients), "ip": one_or_many(ips)},
        "server": {"address": one_or_many(values("server_address"))},
        "gen_ai": {
            "system": one_or_many(values("provider")),
            "request": {"model": {"id": one_or_many(values("gen_ai_model"))}},
        },
        "related": {"user": _unique([*users, *values("credential_id")]), "ip": ips},
    }


def _merge(into: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        elif isinstance(value, list) and isinstance(into.get(key), list):
            into[key] = _unique([*into[key], *value])
        else:
            into[key] = value
    return into


# ---------------------------------------------------------------------------
# findings


def finding_to_ecs(finding: Finding) -> EcsDocument:
    """An ECS alert for one finding; ``_id`` is the finding id."""
    entities = msgspec.structs.asdict(finding.entities)
    types = ["info"]
    if finding.policy_decision == "block":
        types.append("denied")
    elif finding.policy_decision in ("allow", "coach"):
        types.append("allowed")
    # Detected-at, when a later Finding version carries it: event.created - @timestamp is MTTD.
    detected_at = getattr(finding, "detected_at", None)
    shas = [evidence.sha for evidence in finding.evidence]
    source: dict[str, Any] = {
        "@timestamp": _iso(finding.timestamp),
        "ecs": {"version": ECS_VERSION},
        "message": finding.description or finding.rule_name,
        "event": {
            "kind": "alert",
            "category": ["intrusion_detection"],
            "type": types,
            "id": finding.id,
            "severity": SEVERITY_NUMBERS[finding.severity],
            "risk_score": RISK_SCORES[finding.severity],
            "created": _iso(detected_at) if isinstance(detected_at, datetime) else None,
            "module": "aisoar",
            "dataset": "aisoar.findings",
            "provider": finding.detector,
        },
        "rule": {
            "id": finding.rule_id,
            "name": finding.rule_name,
            "category": finding.category,
            "ruleset": "aisoar",
            "version": finding.detector_version,
        },
        "threat": _threat(finding.atlas),
        "tags": ["aisoar", "finding", finding.category],
        "aisoar": {
            "record_type": "finding",
            "finding_id": finding.id,
            "severity": finding.severity,
            "category": finding.category,
            "confidence": finding.confidence,
            "score": finding.score,
            "policy_decision": finding.policy_decision,
            "detector": {"name": finding.detector, "version": finding.detector_version},
            "event": {"id": finding.event_id, "kind": finding.event_kind},
            "entities": entities,
            "evidence": [msgspec.structs.asdict(evidence) for evidence in finding.evidence],
            "owasp_llm": list(finding.owasp),
            "atlas": list(finding.atlas),
        },
    }
    _merge(source, _entity_fields(entities))
    source["related"]["hash"] = _unique(shas)
    return EcsDocument("finding", finding.id, _utc(finding.timestamp), _prune(source))


# ---------------------------------------------------------------------------
# incidents, actions and anything else shaped like them

# Alias tables: the first key present wins. Extending the mapping for a new field
# of the incident or action record is one entry here.
_TIME_KEYS = ("@timestamp", "timestamp", "first_seen", "created_at", "started_at", "time")
_START_KEYS = ("first_seen", "started_at", "start")
_END_KEYS = ("last_seen", "finished_at", "ended_at", "completed_at", "end")
_UPDATED_KEYS = ("updated_at", "last_seen", "finished_at")
_SEVERITY_KEYS = ("severity",)
_RISK_KEYS = ("risk_score", "risk")
_STATUS_KEYS = ("status", "state")
_OUTCOME_KEYS = ("outcome", "result")
_MESSAGE_KEYS = ("title", "summary", "description", "message")
_COMMON_KEYS = frozenset(
    {
        "id", "kind", "rule", "rule_id", "rule_name", "rule_ids", "rule_names", "entities",
        "atlas", "owasp", "tags", "category", "categories", "confidence", "schema_version",
        *_TIME_KEYS, *_START_KEYS, *_END_KEYS, *_UPDATED_KEYS, *_SEVERITY_KEYS, *_RISK_KEYS,
        *_STATUS_KEYS, *_OUTCOME_KEYS, *_MESSAGE_KEYS, *_ENTITY_KEYS,
    }
)  # fmt: skip

_OUTCOMES = {
    "success": "success", "succeeded": "success", "ok": "success", "done": "success",
    "completed": "success", "applied": "success", "verified": "success",
    "failure": "failure", "failed": "failure", "error": "failure", "denied": "failure",
    "rejected": "failure", "timeout": "failure", "expired": "failure", "unverified": "failure",
}  # fmt: skip


def _as_dict(record: Any) -> dict[str, Any]:
    """A plain dict from a msgspec Struct, a dataclass or a mapping (datetimes kept)."""
    if isinstance(record, Mapping):
        return dict(record)
    if isinstance(record, msgspec.Struct):
        return {name: getattr(record, name) for name in record.__struct_fields__}
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {field.name: getattr(record, field.name) for field in dataclasses.fields(record)}
    raise TypeError(f"cannot map a {type(record).__name__} to ECS: expected a Struct, dataclass or dict")


_BUILTIN_SCALARS = frozenset({str, int, float, bool, type(None), datetime})


def _builtin(value: Any) -> Any:
    # Nested Structs/dataclasses/enums become plain JSON-ready values; datetimes stay datetimes.
    if type(value) in _BUILTIN_SCALARS:  # most fields: to_builtins would return them unchanged
        return value
    return msgspec.to_builtins(value, builtin_types=(datetime,))


def _first(record: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        value = record.get(key)
        if value is not None and value != "":
            return value
    return None


def _strings(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple, set, frozenset)):
        return [str(v) for v in value if v is not None]
    return [str(value)]


def _severity(value: Any) -> tuple[str | None, int | None, float | None]:
    """(name, event.severity, default risk score) for a severity name or number."""
    if isinstance(value, str) and value.lower() in SEVERITY_NUMBERS:
        name = value.lower()
        return name, SEVERITY_NUMBERS[name], RISK_SCORES[name]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return None, int(value), None
    return None, None, None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def record_to_ecs(
    record: Any,
    *,
    kind: Kind,
    id_keys: tuple[str, ...] = ("id",),
    event: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    known_keys: Iterable[str] = (),
    time_keys: tuple[str, ...] = _TIME_KEYS,
) -> EcsDocument:
    """The generic mapping of an aisoar record's common fields.

    ``event`` and ``extra`` are merged over the result (per-type specifics);
    fields not in the common set nor ``known_keys`` are listed by name in
    ``aisoar.unmapped_fields`` and their values dropped.
    """
    data = {key: _builtin(value) for key, value in _as_dict(record).items()}
    return _map_record(data, kind=kind, id_keys=id_keys, event=event, extra=extra, known_keys=known_keys,
                       time_keys=time_keys, prune=True)


def _map_record(
    data: dict[str, Any],
    *,
    kind: Kind,
    id_keys: tuple[str, ...],
    event: Mapping[str, Any] | None,
    extra: Mapping[str, Any] | None,
    known_keys: Iterable[str],
    time_keys: tuple[str, ...],
    prune: bool,
) -> EcsDocument:
    """:func:`record_to_ecs` of a record already made builtins (``data``); unpruned when
    the caller edits the source and prunes it once itself."""
    ident = _first(data, id_keys)
    if ident is None:
        # No id: a digest of the record, so a replay still overwrites its document.
        ident = _digest(kind, msgspec.json.encode(data, order="sorted").decode())
    ident = str(ident)

    timestamp = _parse_time(_first(data, time_keys)) or _parse_time(_first(data, _END_KEYS))
    if timestamp is None:
        raise ValueError(f"{kind} record {ident!r} has no timestamp (one of {', '.join(time_keys)})")
    start = _parse_time(_first(data, _START_KEYS))
    end = _parse_time(_first(data, _END_KEYS))
    updated = _parse_time(_first(data, _UPDATED_KEYS))

    rule = data.get("rule")
    rule_ids = _strings(_first(data, ("rule_id", "rule_ids")))
    rule_names = _strings(_first(data, ("rule_name", "rule_names")))
    if isinstance(rule, Mapping):
        rule_ids = rule_ids or _strings(rule.get("id"))
        rule_names = rule_names or _strings(rule.get("name"))
    elif isinstance(rule, str):
        rule_ids = rule_ids or [rule]

    severity_name, severity_number, default_risk = _severity(_first(data, _SEVERITY_KEYS))
    risk = _number(_first(data, _RISK_KEYS))
    status = _first(data, _STATUS_KEYS)
    outcome_raw = _first(data, _OUTCOME_KEYS)
    outcome = _OUTCOMES.get(str(outcome_raw or status or "").lower()) if (outcome_raw or status) else None

    entities: dict[str, Any] = {}
    raw_entities = data.get("entities")
    if isinstance(raw_entities, Mapping):
        entities.update({k: v for k, v in raw_entities.items() if k in _ENTITY_KEYS})
    for key in _ENTITY_KEYS:  # entity ids given at the top level of the record
        if data.get(key) is not None:
            entities.setdefault(key, data[key])
    entities = {k: (_strings(v) if isinstance(v, (list, tuple)) else str(v)) for k, v in entities.items()}

    duration_ns = int((end - start).total_seconds() * 1e9) if start and end and end >= start else None
    categories = _strings(_first(data, ("category", "categories")))
    message = _first(data, _MESSAGE_KEYS)
    known = _COMMON_KEYS | set(id_keys) | set(known_keys)
    unmapped = sorted(key for key in data if key not in known)

    source: dict[str, Any] = {
        "@timestamp": _iso(timestamp),
        "ecs": {"version": ECS_VERSION},
        "message": str(message)[:4096] if message is not None else None,
        "event": {
            "id": ident,
            "severity": severity_number,
            "risk_score": risk if risk is not None else default_risk,
            "start": _iso(start) if start else None,
            "end": _iso(end) if end else None,
            "duration": duration_ns,
            "outcome": outcome,
            "module": "aisoar",
        },
        "rule": {
            "id": rule_ids[0] if len(rule_ids) == 1 else rule_ids,
            "name": rule_names[0] if len(rule_names) == 1 else rule_names,
            "ruleset": "aisoar" if rule_ids or rule_names else None,
        },
        "threat": _threat(_strings(data.get("atlas"))),
        "tags": _unique(["aisoar", kind, *categories, *_strings(data.get("tags"))]),
        "aisoar": {
            "record_type": kind,
            "severity": severity_name,
            "category": categories,
            "confidence": _number(data.get("confidence")),
            "status": str(status) if status is not None else None,
            "updated_at": _iso(updated) if updated else None,
            "entities": entities,
            "owasp_llm": _strings(data.get("owasp")),
            "atlas": _strings(data.get("atlas")),
            "unmapped_fields": unmapped,
        },
    }
    _merge(source, _entity_fields(entities))
    if event:
        _merge(source["event"], event)
    if extra:
        _merge(source, extra)
    return EcsDocument(kind, ident, timestamp, _prune(source) if prune else source)


_INCIDENT_ID_KEYS = ("id", "incident_id")
_INCIDENT_KEYS = (
    "finding_ids", "finding_count", "correlation_key", "key", "group_key", "assignee", "opened_at", "rule_ids",
    "revision",
)  # fmt: skip


_INCIDENT_TIME_KEYS = ("first_seen", "created_at", "opened_at", "@timestamp", "timestamp")


def incident_to_ecs(incident: Any) -> EcsDocument:
    """An ECS alert for an incident (:class:`aisoar.incidents.Incident` or alike), updated in
    place: ``_id`` is the incident id and ``@timestamp`` its first-seen time, so every
    update lands on the same document in the same index."""
    data = {key: _builtin(value) for key, value in _as_dict(incident).items()}
    finding_ids = _strings(data.get("finding_ids"))
    count = data.get("finding_count")
    revision = data.get("revision")
    extra = {
        "aisoar": {
            "incident": {
                "id": str(_first(data, _INCIDENT_ID_KEYS) or "") or None,
                "finding_ids": finding_ids,
                # finding_ids is bounded (most recent first): the count is the true total.
                "finding_count": count if isinstance(count, int) and count else (len(finding_ids) or None),
                "finding_rule_ids": _strings(data.get("rule_ids")),
                "correlation_key": _first(data, ("correlation_key", "key", "group_key")),
                "revision": revision if isinstance(revision, int) else None,
                "assignee": data.get("assignee"),
            }
        },
        "event": {
            "kind": "alert",
            "category": ["intrusion_detection"],
            "type": ["info"],
            "dataset": "aisoar.incidents",
        },
    }
    # first_seen before any "timestamp": @timestamp must not move when the incident grows,
    # since it picks the (time-bucketed) index and a moved document would be a duplicate.
    return _map_record(
        data,
        kind="incident",
        id_keys=_INCIDENT_ID_KEYS,
        event=None,
        extra=extra,
        known_keys=_INCIDENT_KEYS,
        time_keys=_INCIDENT_TIME_KEYS,
        prune=True,
    )


_ACTION_ID_KEYS = ("id", "action_id", "audit_id")
_ACTION_NAME_KEYS = ("action", "action_name", "name")
_ACTION_KEYS = (
    "action", "action_name", "name", "incident_id", "finding_id", "target", "mode", "dry_run", "playbook",
    "actor", "approved_by", "approver", "reason", "request", "response_status", "error", "error_message",
    "duration_ms", "duration_s", "duration_ns", "attempt", "attempts", "idempotency_key",
)  # fmt: skip
# ECS category of an action, from its "category:name" prefix (Falco Talon style names).
_ACTION_CATEGORIES = {
    "identity": ["iam"],
    "iam": ["iam"],
    "registry": ["configuration"],
    "model": ["configuration"],
    "network": ["network"],
}
_SYSTEM_ACTOR = "aisoar"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def action_to_ecs(action: Any) -> EcsDocument:
    """An ECS event for one response-action audit record (:class:`aisoar.actions.ActionRecord`
    or alike): ``event.action``, ``event.outcome``, ``event.duration`` (ns), the HTTP call
    made (method, scrubbed URL, response status). Request bodies and action parameters
    are not indexed: even redacted, they are the part most likely to hold a secret."""
    data = {key: _builtin(value) for key, value in _as_dict(action).items()}
    name = _first(data, _ACTION_NAME_KEYS)
    name = str(name) if name is not None else None
    prefix = name.split(":", 1)[0] if name and ":" in name else ""
    # api: "events that annotate API calls" - every aisoar action is an HTTP call to a target.
    categories = _ACTION_CATEGORIES.get(prefix, ["api"])
    duration_ns: int | None = None
    for key, factor in (("duration_ns", 1), ("duration_ms", 1_000_000), ("duration_s", 1_000_000_000)):
        if _number(data.get(key)) is not None:
            duration_ns = int(data[key] * factor)
            break
    error = _first(data, ("error_message", "error"))
    dry_run = data.get("dry_run")
    mode = data.get("mode") or ("dry_run" if dry_run is True else None)
    actor = _first(data, ("actor", "approved_by", "approver"))
    raw_request = data.get("request")
    request: Mapping[str, Any] = raw_request if isinstance(raw_request, Mapping) else {}
    method = request.get("method")
    url = request.get("url")
    event: dict[str, Any] = {
        "kind": "event",
        "category": categories,
        "type": ["change"] if categories != ["api"] else ["info"],
        "action": name,
        "reason": str(data["reason"])[:1024] if data.get("reason") else None,
        "dataset": "aisoar.actions",
    }
    if duration_ns is not None:
        event["duration"] = duration_ns
    extra = {
        "error": {"message": str(error)[:4096] if error is not None else None},
        "http": {
            "request": {"method": str(method) if method else None},
            "response": {"status_code": _int(data.get("response_status"))},
        },
        "url": {"full": str(url)[:2048] if url else None},
        "aisoar": {
            "action": {
                "id": str(_first(data, _ACTION_ID_KEYS) or "") or None,
                "name": name,
                "playbook": data.get("playbook"),
                "incident_id": data.get("incident_id"),
                "finding_id": data.get("finding_id"),
                "target": str(data["target"]) if data.get("target") is not None else None,
                "mode": str(mode) if mode is not None else None,
                "actor": str(actor) if actor is not None else None,
                "idempotency_key": data.get("idempotency_key"),
                "attempts": _int(_first(data, ("attempt", "attempts"))),
            }
        },
        # A person who approved or denied is someone an analyst pivots on; the policy engine is not.
        "related": {"user": [str(actor)] if actor is not None and actor != _SYSTEM_ACTOR else []},
    }
    doc = _map_record(data, kind="action", id_keys=_ACTION_ID_KEYS, event=event, extra=extra,
                      known_keys=_ACTION_KEYS, time_keys=_TIME_KEYS, prune=False)
    source = doc.source
    event = source["event"]
    if event.get("outcome") in (None, ""):  # not pruned yet: that is done once, below
        event.pop("outcome", None)
        event["outcome"] = "failure" if error is not None else "unknown"
    return doc._replace(source=_prune(source))


# ---------------------------------------------------------------------------
# dead letters


def dead_letter_to_ecs(letter: DeadLetter) -> EcsDocument:
    """An ECS event for a rejected record: the reason, where it came from, and the
    payload's size and SHA-256 - never the payload (it may be a prompt with a secret)."""
    try:
        payload = base64.b64decode(letter.payload_b64, validate=True)
    except (binascii.Error, ValueError):
        payload = letter.payload_b64.encode()
    payload_sha = hashlib.sha256(payload).hexdigest()
    key_sha = None
    if letter.key_b64 is not None:
        try:
            key_sha = hashlib.sha256(base64.b64decode(letter.key_b64)).hexdigest()
        except (binascii.Error, ValueError):
            key_sha = None
    if letter.partition is not None and letter.offset is not None:
        ident = _digest("deadletter", letter.topic, str(letter.partition), str(letter.offset))
    else:
        ident = _digest("deadletter", letter.topic, payload_sha, letter.reason)
    source = {
        "@timestamp": _iso(letter.received_at),
        "ecs": {"version": ECS_VERSION},
        "message": f"record rejected from {letter.topic}",
        "event": {
            "kind": "event",
            "type": ["error"],
            "outcome": "failure",
            "action": "dead_letter",
            # keyword copy of the reason, so dashboards can count dead letters by it
            "reason": letter.reason[:1024],
            "id": ident,
            "created": _iso(letter.received_at),
            "module": "aisoar",
            "dataset": "aisoar.deadletter",
        },
        "error": {"message": letter.reason},
        "tags": ["aisoar", "deadletter"],
        "aisoar": {
            "record_type": "deadletter",
            "deadletter": {
                "topic": letter.topic,
                "partition": letter.partition,
                "offset": letter.offset,
                "payload_bytes": len(payload),
                "payload_sha256": payload_sha,
                "key_sha256": key_sha,
            },
        },
    }
    return EcsDocument("deadletter", ident, _utc(letter.received_at), _prune(source))


# ---------------------------------------------------------------------------

_MAPPERS: dict[str, Callable[[Any], EcsDocument]] = {
    "finding": finding_to_ecs,
    "incident": incident_to_ecs,
    "action": action_to_ecs,
    "deadletter": dead_letter_to_ecs,
}


def to_ecs(kind: str, record: Any) -> EcsDocument:
    """Map ``record`` of the given kind (``finding``, ``incident``, ``action``, ``deadletter``)."""
    try:
        mapper = _MAPPERS[kind]
    except KeyError:
        raise ValueError(f"unknown record kind {kind!r}; valid kinds: {', '.join(KINDS)}") from None
    return mapper(record)
