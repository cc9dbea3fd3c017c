"""Saved searches, visualisations and a dashboard for Kibana and OpenSearch Dashboards.

The objects are written in the saved-object export format (NDJSON, one object a
line, then the export summary line) that both import through
``POST /api/saved_objects/_import``. They use the 7.x object shapes that
OpenSearch Dashboards (a fork of Kibana 7.10) still uses and that Kibana 8 and 9
migrate on import (an export can be imported into the next major): a data view
(``index-pattern``) over every aisoar index, saved searches with KQL queries,
aggregation-based visualisations, and a dashboard embedding them. Only the
``migrationVersion`` stamps differ between the two files.

``kibana.ndjson`` and ``opensearch-dashboards.ndjson`` beside this module are
:func:`export_ndjson` for the default ``aisoar`` index prefix; ``aisoar siem
dashboards --prefix P`` prints them for another prefix.

>>> objects = saved_objects("kibana")
>>> [o["type"] for o in objects].count("search"), [o["type"] for o in objects][-1]
(4, 'dashboard')
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

__all__ = ["FLAVORS", "Flavor", "bundled_file", "export_ndjson", "saved_objects"]

Flavor = Literal["kibana", "opensearch-dashboards"]
FLAVORS: tuple[Flavor, ...] = ("kibana", "opensearch-dashboards")

#: Last migration each object shape already satisfies. Kibana: 7.17 (imports into 7.17, 8.x
#: and 9.x run the later migrations); OpenSearch Dashboards knows nothing after 7.10 and
#: refuses objects stamped with a newer version.
_MIGRATION: dict[Flavor, dict[str, str]] = {
    "kibana": {"index-pattern": "7.11.0", "search": "7.9.3", "visualization": "7.17.0", "dashboard": "7.17.0"},
    "opensearch-dashboards": {"index-pattern": "7.6.0", "search": "7.9.3", "visualization": "7.10.0",
                              "dashboard": "7.9.3"},
}  # fmt: skip
_CORE_MIGRATION: dict[Flavor, str | None] = {"kibana": "7.17.0", "opensearch-dashboards": None}
_PANEL_VERSION: dict[Flavor, str] = {"kibana": "7.17.0", "opensearch-dashboards": "7.10.0"}

_INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"

# Saved searches: (id suffix, title, KQL, filters on @timestamp, columns, sort).
_SEARCHES: list[tuple[str, str, str, str | None, list[str], list[list[str]]]] = [
    ("critical-findings-24h", "aisoar: critical findings, last 24 h",
     "aisoar.record_type:finding and aisoar.severity:critical", "now-24h",
     ["rule.id", "aisoar.category", "user.id", "aisoar.entities.session_id", "aisoar.evidence.redacted",
      "aisoar.confidence"],
     [["@timestamp", "desc"]]),
    ("incidents-open-by-risk", "aisoar: open incidents by risk",
     "aisoar.record_type:incident and aisoar.status:(open or updated)", None,
     ["rule.id", "event.risk_score", "aisoar.severity", "aisoar.incident.correlation_key",
      "aisoar.incident.finding_count", "aisoar.status"],
     [["event.risk_score", "desc"], ["@timestamp", "desc"]]),
    ("actions-approval-or-failed", "aisoar: actions awaiting approval or failed",
     "aisoar.record_type:action and aisoar.status:(pending_approval or failed or escalated)", None,
     ["event.action", "aisoar.status", "aisoar.action.target", "aisoar.action.playbook",
      "aisoar.action.incident_id", "error.message"],
     [["@timestamp", "desc"]]),
    ("deadletters-by-reason", "aisoar: dead letters by reason",
     "aisoar.record_type:deadletter", None,
     ["event.reason", "aisoar.deadletter.topic", "aisoar.deadletter.partition", "aisoar.deadletter.offset",
      "aisoar.deadletter.payload_bytes"],
     [["event.reason", "asc"], ["@timestamp", "desc"]]),
]  # fmt: skip


def _count() -> dict[str, Any]:
    return {"id": "1", "enabled": True, "type": "count", "schema": "metric", "params": {}}


def _terms(agg_id: str, field: str, schema: str, size: int = 10, order_by: str = "1") -> dict[str, Any]:
    return {"id": agg_id, "enabled": True, "type": "terms", "schema": schema,
            "params": {"field": field, "size": size, "order": "desc", "orderBy": order_by,
                       "otherBucket": True, "otherBucketLabel": "Other", "missingBucket": False}}  # fmt: skip


_TABLE = {"perPage": 10, "showPartialRows": False, "showMetricsAtAllLevels": False, "showTotal": False,
          "totalFunc": "sum", "percentageCol": ""}  # fmt: skip

# Visualisations: (id suffix, title, vis type, params, aggs, KQL). Params the type has defaults
# for are left out: the legacy visualisation loader fills them in.
_VISUALISATIONS: list[tuple[str, str, str, dict[str, Any], list[dict[str, Any]], str]] = [
    ("findings-over-time", "aisoar: findings over time by severity", "histogram",
     {"type": "histogram", "addLegend": True, "addTooltip": True, "legendPosition": "right"},
     [_count(),
      {"id": "2", "enabled": True, "type": "date_histogram", "schema": "segment",
       "params": {"field": "@timestamp", "interval": "auto", "min_doc_count": 1, "extended_bounds": {}}},
      _terms("3", "aisoar.severity", "group", size=5)],
     "aisoar.record_type:finding"),
    ("findings-by-rule", "aisoar: findings by rule", "table", _TABLE,
     [_count(), _terms("2", "rule.id", "bucket", size=25)],
     "aisoar.record_type:finding"),
    ("incidents-open-by-risk", "aisoar: open incidents by risk", "table", _TABLE,
     [{"id": "1", "enabled": True, "type": "max", "schema": "metric", "params": {"field": "event.risk_score"}},
      _terms("2", "rule.id", "bucket", size=20),
      _terms("3", "aisoar.incident.correlation_key", "bucket", size=20)],
     "aisoar.record_type:incident and aisoar.status:(open or updated)"),
    ("actions-by-status", "aisoar: actions by status", "table", _TABLE,
     [_count(), _terms("2", "event.action", "bucket", size=20), _terms("3", "aisoar.status", "bucket", size=10)],
     "aisoar.record_type:action"),
    ("deadletters-by-reason", "aisoar: dead letters by reason", "pie",
     {"type": "pie", "addTooltip": True, "addLegend": True, "legendPosition": "right", "isDonut": True},
     [_count(), _terms("2", "event.reason", "segment", size=15)],
     "aisoar.record_type:deadletter"),
]  # fmt: skip

# Dashboard layout on the 48-column grid: (kind, id suffix, x, y, w, h).
_PANELS: list[tuple[str, str, int, int, int, int]] = [
    ("visualization", "findings-over-time", 0, 0, 32, 14),
    ("visualization", "deadletters-by-reason", 32, 0, 16, 14),
    ("visualization", "findings-by-rule", 0, 14, 16, 16),
    ("visualization", "incidents-open-by-risk", 16, 14, 32, 16),
    ("visualization", "actions-by-status", 0, 30, 16, 16),
    ("search", "actions-approval-or-failed", 16, 30, 32, 16),
    ("search", "critical-findings-24h", 0, 46, 48, 16),
]


def _search_source(query: str, filters: list[dict[str, Any]] | None = None, *, index: bool = True) -> str:
    source: dict[str, Any] = {"query": {"query": query, "language": "kuery"}, "filter": filters or []}
    if index:
        source["indexRefName"] = _INDEX_REF
        source["highlightAll"] = True
    return json.dumps(source, separators=(",", ":"), sort_keys=True)


def _since(gte: str) -> dict[str, Any]:
    """A range filter on @timestamp: filters are query DSL, so date math works in both products."""
    return {"meta": {"type": "range", "key": "@timestamp", "params": {"gte": gte}, "disabled": False,
                     "negate": False, "alias": None, "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.filter[0].meta.index"},
            "range": {"@timestamp": {"gte": gte}}, "$state": {"store": "appState"}}  # fmt: skip


def _envelope(flavor: Flavor, kind: str, object_id: str, attributes: dict[str, Any],
              references: list[dict[str, str]]) -> dict[str, Any]:
    obj: dict[str, Any] = {"attributes": attributes, "id": object_id, "type": kind, "references": references,
                           "migrationVersion": {kind: _MIGRATION[flavor][kind]}}
    core = _CORE_MIGRATION[flavor]
    if core:
        obj["coreMigrationVersion"] = core
    return obj


def saved_objects(flavor: Flavor, prefix: str = "aisoar") -> list[dict[str, Any]]:
    """Every saved object, dependencies first (data view, searches, visualisations, dashboard)."""
    if flavor not in FLAVORS:
        raise ValueError(f"unknown flavor {flavor!r}; valid flavors: {', '.join(FLAVORS)}")
    data_view = f"{prefix}-data-view"
    index_ref = [{"name": _INDEX_REF, "type": "index-pattern", "id": data_view}]
    objects = [_envelope(flavor, "index-pattern", data_view,
                         {"title": f"{prefix}-*", "timeFieldName": "@timestamp"}, [])]
    for suffix, title, query, since, columns, sort in _SEARCHES:
        filters = [_since(since)] if since else []
        references = list(index_ref)
        if filters:
            references.append({"name": filters[0]["meta"]["indexRefName"], "type": "index-pattern", "id": data_view})
        objects.append(_envelope(flavor, "search", f"{prefix}-{suffix}", {
            "title": title, "description": "", "hits": 0, "columns": columns, "sort": sort, "version": 1,
            "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source(query, filters)},
        }, references))
    for suffix, title, vis_type, params, aggs, query in _VISUALISATIONS:
        vis_state = {"title": title, "type": vis_type, "params": params, "aggs": aggs}
        objects.append(_envelope(flavor, "visualization", f"{prefix}-{suffix}", {
            "title": title, "description": "", "version": 1, "uiStateJSON": "{}",
            "visState": json.dumps(vis_state, separators=(",", ":"), sort_keys=True),
            "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source(query)},
        }, list(index_ref)))
    panels, references = [], []
    for number, (kind, suffix, x, y, w, h) in enumerate(_PANELS):
        ref = f"panel_{number}"
        panels.append({"version": _PANEL_VERSION[flavor], "gridData": {"x": x, "y": y, "w": w, "h": h, "i": str(number)},
                       "panelIndex": str(number), "embeddableConfig": {}, "panelRefName": ref})
        references.append({"name": ref, "type": kind, "id": f"{prefix}-{suffix}"})
    objects.append(_envelope(flavor, "dashboard", f"{prefix}-overview", {
        "title": "aisoar: overview", "description": "Findings, incidents, response actions and dead letters.",
        "hits": 0, "version": 1, "timeRestore": True, "timeFrom": "now-24h", "timeTo": "now",
        "refreshInterval": {"pause": False, "value": 60000},
        "optionsJSON": json.dumps({"hidePanelTitles": False, "useMargins": True}, separators=(",", ":")),
        "panelsJSON": json.dumps(panels, separators=(",", ":")),
        "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source("", index=False)},
    }, references))
    return objects


def export_ndjson(flavor: Flavor, prefix: str = "aisoar") -> str:
    """The import file: one object a line, then the export summary line both products write."""
    objects = saved_objects(flavor, prefix)
    lines = [json.dumps(obj, separators=(",", ":"), sort_keys=True) for obj in objects]
    lines.append(json.dumps({"exportedCount": len(objects), "missingRefCount": 0, "missingReferences": []},
                            separators=(",", ":"), sort_keys=True))
    return "\n".join(lines) + "\n"


def bundled_file(flavor: Flavor) -> Path:
    """The shipped NDJSON for the default prefix."""
    return Path(__file__).with_name(f"{flavor}.ndjson")
