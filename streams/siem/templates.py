"""Index layout, index templates (ECS mappings) and lifecycle policies.

Layout: plain indices bucketed by the record's own time, e.g.
``aisoar-findings-2026.11``, all behind the read alias ``aisoar-findings``
(times implausibly far in the past or future share ``aisoar-findings-outofrange``).
Not data streams: they are append-only and refuse an overwrite by ``_id``.
Not rollover either: after a rollover a replayed document would land in the
new write index beside its old copy. With the index picked from the record's
time, a record always maps to the same (index, ``_id``), so replays overwrite.

Templates are composable ``_index_template`` bodies that OpenSearch 2.x and
Elasticsearch 8/9 both accept. Mappings are ``dynamic: false``: only the fields
listed here are indexed, so a hostile key never grows the mapping; keyword
fields have ``ignore_above`` (Lucene refuses terms over 32 KiB) and
``ignore_malformed`` keeps an alert whose one field is malformed.

Retention: an ISM policy on OpenSearch (needs the index-management plugin: a
bare node has none, then it is skipped with a log line), an ILM policy on
Elasticsearch.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

import httpx

from aisoar.errors import SinkError

from .ecs import KINDS, Kind

__all__ = [
    "DEFAULT_RETENTION",
    "TEMPLATE_VERSION",
    "IndexLayout",
    "detect_flavor",
    "ilm_policy",
    "index_template",
    "install_templates",
    "ism_policy",
    "mappings",
]

logger = logging.getLogger("aisoar.siem")

#: Bump when mappings change; stored in the template's ``version`` and ``_meta``.
TEMPLATE_VERSION = 2

#: How soon a written document becomes searchable, per kind. Findings are what an analyst
#: (and the MTTD target, <= 500 ms) waits for: OpenSearch's default 1 s alone would exceed it.
#: The rest keep the default; a shorter interval costs the node more small segments.
REFRESH_INTERVAL: dict[str, str] = {"finding": "200ms"}

#: Days an index is kept (from its creation). Audit records outlive alerts.
DEFAULT_RETENTION: dict[Kind, int] = {"finding": 180, "incident": 365, "action": 400, "deadletter": 30}

_INDEX_NAMES: dict[Kind, str] = {
    "finding": "findings",
    "incident": "incidents",
    "action": "actions",
    "deadletter": "deadletter",
}
_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,100}$")


@dataclass(frozen=True)
class IndexLayout:
    """Where each kind of record is written (``index``) and read (``alias``)."""

    prefix: str = "aisoar"
    bucket: Literal["month", "day"] = "month"
    retention_days: dict[Kind, int] = field(default_factory=lambda: dict(DEFAULT_RETENTION))
    #: Records older / further in the future than this go to one ``-outofrange`` index:
    #: event times come from producers, and a hostile or broken clock must not create
    #: an index (and shards) per month of the calendar.
    max_past_days: int = 400
    max_future_days: int = 2

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.prefix):
            raise ValueError(f"invalid index prefix {self.prefix!r}: lowercase letters, digits, '_', '.', '-'")
        if self.bucket not in ("month", "day"):
            raise ValueError(f"invalid bucket {self.bucket!r}; valid values: day, month")

    def alias(self, kind: Kind) -> str:
        """The read alias of a kind, e.g. ``aisoar-findings``."""
        try:
            return f"{self.prefix}-{_INDEX_NAMES[kind]}"
        except KeyError:
            raise ValueError(f"unknown record kind {kind!r}; valid kinds: {', '.join(KINDS)}") from None

    def pattern(self, kind: Kind) -> str:
        return f"{self.alias(kind)}-*"

    def index(self, kind: Kind, timestamp: datetime, *, now: datetime | None = None) -> str:
        """The concrete index for a record of ``kind`` at ``timestamp`` (its own, stable time)."""
        ts = timestamp.astimezone(timezone.utc) if timestamp.tzinfo else timestamp.replace(tzinfo=timezone.utc)
        now = now or datetime.now(timezone.utc)
        if not now - timedelta(days=self.max_past_days) <= ts <= now + timedelta(days=self.max_future_days):
            return f"{self.alias(kind)}-outofrange"
        suffix = f"{ts:%Y.%m}" if self.bucket == "month" else f"{ts:%Y.%m.%d}"
        return f"{self.alias(kind)}-{suffix}"

    def policy_id(self, kind: Kind) -> str:
        return f"{self.alias(kind)}-retention"

    def resolve(self, name: str) -> str:
        """A kind name (``finding`` / ``findings``) to its alias; anything else unchanged."""
        for kind, plural in _INDEX_NAMES.items():
            if name in (kind, plural):
                return self.alias(kind)
        return name


# ---------------------------------------------------------------------------
# mappings

_KW = {"type": "keyword", "ignore_above": 1024}
_DATE = {"type": "date"}
_LONG = {"type": "long"}
_FLOAT = {"type": "float"}
_DOUBLE = {"type": "double"}
_IP = {"type": "ip"}
_INT = {"type": "integer"}
_BOOL = {"type": "boolean"}


def _obj(**props: dict[str, Any]) -> dict[str, Any]:
    return {"properties": props}


_ENTITIES = _obj(
    user_id=_KW, session_id=_KW, credential_id=_KW, client_address=_KW, app_id=_KW,
    server_address=_KW, provider=_KW, gen_ai_model=_KW, model_name=_KW, model_version=_KW,
    model_digest=_KW,
)  # fmt: skip

_MAPPINGS: dict[str, Any] = {
    # Unknown fields stay in _source but are not indexed: no mapping explosion.
    "dynamic": False,
    "date_detection": False,
    "properties": {
        "@timestamp": _DATE,
        "message": {"type": "text"},
        "tags": _KW,
        "ecs": _obj(version=_KW),
        "event": _obj(
            kind=_KW, category=_KW, type=_KW, id=_KW, severity=_LONG, risk_score=_FLOAT,
            created=_DATE, start=_DATE, end=_DATE, duration=_LONG, outcome=_KW, action=_KW,
            reason=_KW, module=_KW, dataset=_KW, provider=_KW,
        ),
        "rule": _obj(id=_KW, name=_KW, category=_KW, ruleset=_KW, version=_KW),
        "threat": _obj(
            framework=_KW,
            technique=_obj(id=_KW, subtechnique=_obj(id=_KW)),
        ),
        "user": _obj(id=_KW),
        "client": _obj(address=_KW, ip=_IP),
        "source": _obj(address=_KW, ip=_IP),
        "server": _obj(address=_KW),
        "gen_ai": _obj(system=_KW, request=_obj(model=_obj(id=_KW))),
        "related": _obj(user=_KW, ip=_IP, hash=_KW),
        "error": _obj(message={"type": "text"}),
        "http": _obj(request=_obj(method=_KW), response=_obj(status_code=_LONG)),
        "url": _obj(full=_KW),
        "aisoar": _obj(
            record_type=_KW,
            finding_id=_KW,
            severity=_KW,
            category=_KW,
            confidence=_FLOAT,
            score=_DOUBLE,
            policy_decision=_KW,
            status=_KW,
            updated_at=_DATE,
            detector=_obj(name=_KW, version=_KW),
            event=_obj(id=_KW, kind=_KW),
            entities=_ENTITIES,
            evidence=_obj(field=_KW, start=_LONG, end=_LONG, redacted=_KW, sha=_KW, detail=_KW),
            owasp_llm=_KW,
            atlas=_KW,
            unmapped_fields=_KW,
            incident=_obj(
                id=_KW, finding_ids=_KW, finding_count=_LONG, finding_rule_ids=_KW, correlation_key=_KW,
                revision=_LONG, assignee=_KW,
            ),
            action=_obj(
                id=_KW, name=_KW, playbook=_KW, incident_id=_KW, finding_id=_KW, target=_KW, mode=_KW,
                actor=_KW, idempotency_key=_KW, attempts=_INT,
            ),
            deadletter=_obj(
                topic=_KW, partition=_INT, offset=_LONG, payload_bytes=_LONG, payload_sha256=_KW,
                key_sha256=_KW,
            ),
        ),
    },
}  # fmt: skip


def mappings() -> dict[str, Any]:
    """The ECS mappings shared by every aisoar index (a copy: callers may extend it).
    One mapping for all kinds keeps field types equal across ``aisoar-*`` searches."""
    return copy.deepcopy(_MAPPINGS)


def index_template(
    kind: Kind,
    layout: IndexLayout | None = None,
    *,
    shards: int = 1,
    replicas: int | None = None,
    lifecycle: str | None = None,
    priority: int = 200,
) -> dict[str, Any]:
    """The composable ``_index_template`` body for ``kind``.

    ``lifecycle`` names an Elasticsearch ILM policy (``index.lifecycle.name``);
    leave it out for OpenSearch, whose ISM attaches policies by ``ism_template``.
    """
    layout = layout or IndexLayout()
    settings: dict[str, Any] = {
        "index.number_of_shards": shards,
        "index.mapping.ignore_malformed": True,
    }
    if replicas is not None:
        settings["index.number_of_replicas"] = replicas
    if kind in REFRESH_INTERVAL:
        settings["index.refresh_interval"] = REFRESH_INTERVAL[kind]
    if lifecycle:
        settings["index.lifecycle.name"] = lifecycle
    return {
        "index_patterns": [layout.pattern(kind)],
        "priority": priority,
        "version": TEMPLATE_VERSION,
        "_meta": {"managed_by": "aisoar", "kind": kind},
        "template": {
            "settings": settings,
            "mappings": mappings(),
            "aliases": {layout.alias(kind): {}},
        },
    }


def ism_policy(kind: Kind, layout: IndexLayout | None = None) -> dict[str, Any]:
    """OpenSearch ISM: delete an index ``retention_days`` after its creation; the
    ``ism_template`` attaches the policy to every new index of the kind."""
    layout = layout or IndexLayout()
    days = layout.retention_days[kind]
    return {
        "policy": {
            "description": f"aisoar {kind} retention: delete after {days} days",
            "default_state": "hot",
            "states": [
                {
                    "name": "hot",
                    "actions": [],
                    "transitions": [{"state_name": "delete", "conditions": {"min_index_age": f"{days}d"}}],
                },
                {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
            ],
            "ism_template": [{"index_patterns": [layout.pattern(kind)], "priority": 100}],
        }
    }


def ilm_policy(kind: Kind, layout: IndexLayout | None = None) -> dict[str, Any]:
    """Elasticsearch ILM: delete an index ``retention_days`` after its creation."""
    layout = layout or IndexLayout()
    days = layout.retention_days[kind]
    return {
        "policy": {
            "_meta": {"managed_by": "aisoar", "kind": kind},
            "phases": {"delete": {"min_age": f"{days}d", "actions": {"delete": {}}}},
        }
    }


# ---------------------------------------------------------------------------
# installation


async def _request(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    try:
        return await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        hint = ""
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            hint = " (set siem.ca_file to the CA that signed the SIEM's certificate)"
        raise SinkError(f"{method} {url} failed: {type(exc).__name__}: {exc}{hint}") from exc


def _check(response: httpx.Response, what: str) -> None:
    if response.is_error:
        hint = " (check siem.username and the password or API key)" if response.status_code == 401 else ""
        raise SinkError(f"{what}: HTTP {response.status_code}: {response.text[:500]}{hint}")


async def detect_flavor(client: httpx.AsyncClient) -> Literal["opensearch", "elasticsearch"]:
    """Which search engine answers: OpenSearch says so in ``version.distribution``."""
    response = await _request(client, "GET", "/")
    _check(response, "GET /")
    version = response.json().get("version", {})
    return "opensearch" if version.get("distribution") == "opensearch" else "elasticsearch"


def _no_handler(response: httpx.Response) -> bool:
    # A node without the ISM plugin answers 400/404/405 "no handler found for uri".
    return response.status_code in (400, 404, 405) and "no handler" in response.text.lower()


async def _install_ism(client: httpx.AsyncClient, layout: IndexLayout, kinds: tuple[Kind, ...]) -> str:
    for kind in kinds:
        policy_id = layout.policy_id(kind)
        url = f"/_plugins/_ism/policies/{policy_id}"
        body = ism_policy(kind, layout)
        current = await _request(client, "GET", url)
        if _no_handler(current):
            logger.warning(
                "OpenSearch has no index-management (ISM) plugin: retention policies not installed",
                extra={"policy": policy_id},
            )
            return "skipped: ISM plugin not available"
        if current.status_code == 200:
            existing = current.json()
            if existing.get("policy", {}).get("states") == body["policy"]["states"]:
                continue  # same policy: leave it (and its managed indices) alone
            params = {"if_seq_no": existing["_seq_no"], "if_primary_term": existing["_primary_term"]}
            response = await _request(client, "PUT", url, json=body, params=params)
        elif current.status_code == 404:
            response = await _request(client, "PUT", url, json=body)
        else:
            _check(current, f"GET ISM policy {policy_id}")
            continue  # pragma: no cover - _check raised
        _check(response, f"PUT ISM policy {policy_id}")
    return "ism"


async def _install_ilm(client: httpx.AsyncClient, layout: IndexLayout, kinds: tuple[Kind, ...]) -> str:
    for kind in kinds:
        response = await _request(
            client, "PUT", f"/_ilm/policy/{layout.policy_id(kind)}", json=ilm_policy(kind, layout)
        )
        if _no_handler(response):  # pragma: no cover - ILM ships with Elasticsearch
            logger.warning("Elasticsearch has no ILM: retention policies not installed")
            return "skipped: ILM not available"
        _check(response, f"PUT ILM policy {layout.policy_id(kind)}")
    return "ilm"


async def install_templates(
    client: httpx.AsyncClient,
    layout: IndexLayout | None = None,
    *,
    kinds: tuple[Kind, ...] = KINDS,
    replicas: int | None = None,
    lifecycle: bool = True,
) -> dict[str, Any]:
    """Install (or update) lifecycle policies and index templates; idempotent.

    Existing indices get the current mappings too (new fields are additive), so a
    running deployment picks up a template change without a reindex. Returns a
    summary: ``{"flavor", "lifecycle", "templates"}``.
    """
    layout = layout or IndexLayout()
    flavor = await detect_flavor(client)
    lifecycle_state = "disabled"
    if lifecycle:
        if flavor == "opensearch":
            lifecycle_state = await _install_ism(client, layout, kinds)
        else:
            lifecycle_state = await _install_ilm(client, layout, kinds)
    templates = []
    for kind in kinds:
        name = layout.alias(kind)
        body = index_template(
            kind,
            layout,
            replicas=replicas,
            lifecycle=layout.policy_id(kind) if lifecycle_state == "ilm" else None,
        )
        response = await _request(client, "PUT", f"/_index_template/{name}", json=body)
        _check(response, f"PUT index template {name}")
        templates.append(name)
        # Existing indices behind the alias: apply the (additive) mapping update.
        response = await _request(client, "PUT", f"/{name}/_mapping", json=body["template"]["mappings"])
        if response.status_code == 400:
            # A conflicting older mapping: new indices get the template, old ones keep theirs.
            # Not fatal - raising here would make a worker retry its start forever.
            logger.warning(
                "existing indices keep their mapping (conflict with the template)",
                extra={"alias": name, "error": response.text[:300]},
            )
        elif response.status_code != 404:
            _check(response, f"PUT mapping on {name}")
    logger.info("SIEM templates installed", extra={"flavor": flavor, "lifecycle": lifecycle_state})
    return {"flavor": flavor, "lifecycle": lifecycle_state, "templates": templates}
