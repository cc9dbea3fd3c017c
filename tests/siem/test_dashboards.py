"""The Kibana / OpenSearch Dashboards saved objects in streams/siem/dashboards/.

No Kibana or OpenSearch Dashboards server runs here (neither ships as a package
this machine can install), so the import itself is not exercised. What is checked:
each NDJSON line against the saved-object shapes those products export and import
(``index-pattern``, ``search``, ``visualization``, ``dashboard``, the summary line),
that every reference resolves inside the file, that every field a search, filter,
column, sort or aggregation names exists in aisoar's index-template mappings with
a type the aggregation accepts (so renaming a mapped field fails here), that the
literal values the queries compare with are values aisoar writes, and - against
the real OpenSearch node - that each saved query and aggregation finds the
documents aisoar's own ECS mappers produce.
"""

from __future__ import annotations

import fnmatch
import json
import re
import typing
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from aisoar.actions import ActionRecord, ActionStatus
from aisoar.events import dead_letter
from aisoar.findings import Entities, Severity
from aisoar.incidents import Incident, IncidentStatus
from streams.siem import (
    KINDS,
    IndexLayout,
    SiemSink,
    install_templates,
    make_client,
    mappings,
)
from streams.siem.dashboards import FLAVORS, bundled_file, export_ndjson, saved_objects

from .conftest import make_finding

TYPES = {"index-pattern", "search", "visualization", "dashboard"}
# Aggregation-based visualisation types and the schemas each one's editor defines.
VIS_SCHEMAS = {
    "table": {"metric", "bucket", "split"},
    "pie": {"metric", "segment", "split"},
    "histogram": {"metric", "segment", "group", "split"},
}
AGGREGATABLE = {"keyword", "long", "integer", "float", "double", "date", "ip", "boolean"}
NUMERIC = {"long", "integer", "float", "double"}
AGG_FIELD_TYPES = {"terms": AGGREGATABLE, "max": NUMERIC | {"date"}, "date_histogram": {"date"}}
# The values aisoar writes, per field a query compares with a literal.
ALLOWED_VALUES: dict[str, set[str]] = {
    "aisoar.record_type": set(KINDS),
    "aisoar.severity": set(typing.get_args(Severity)),
    "aisoar.status": set(typing.get_args(ActionStatus)) | set(typing.get_args(IncidentStatus)),
}


def field_types(props: dict[str, Any] | None = None, prefix: str = "") -> dict[str, str]:
    """``{"event.action": "keyword", ...}`` from the template mappings."""
    out: dict[str, str] = {}
    for name, spec in (props if props is not None else mappings()["properties"]).items():
        if "properties" in spec:
            out.update(field_types(spec["properties"], f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = spec["type"]
    return out


_CLAUSE = re.compile(r"^\s*([@\w.]+)\s*:\s*(\([^)]*\)|[\w.@-]+)\s*$")


def kql_clauses(query: str) -> list[tuple[str, list[str]]]:
    """``a:x and b:(y or z)`` → ``[("a", ["x"]), ("b", ["y", "z"])]``. Only the conjunctions of
    field:value clauses the shipped queries use; anything else is refused, so a new query
    form gets a parser here before it can ship unchecked."""
    if not query.strip():
        return []
    clauses = []
    for part in re.split(r"\s+and\s+", query.strip()):
        match = _CLAUSE.match(part)
        assert match, f"KQL clause not understood by this test: {part!r}"
        field, value = match.groups()
        values = [v.strip() for v in value.strip("()").split(" or ")] if value.startswith("(") else [value]
        clauses.append((field, values))
    return clauses


def referenced_fields(obj: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Every (field, aggregation type or None) a saved object names."""
    attributes = obj["attributes"]
    fields: list[tuple[str, str | None]] = []
    if obj["type"] == "index-pattern":
        fields.append((attributes["timeFieldName"], "date_histogram"))
    meta = attributes.get("kibanaSavedObjectMeta", {}).get("searchSourceJSON")
    if meta:
        source = json.loads(meta)
        fields += [(field, None) for field, _ in kql_clauses(source["query"]["query"])]
        for flt in source.get("filter", []):
            fields += [(field, None) for field in flt.get("range", {})]
            fields.append((flt["meta"]["key"], None))
    fields += [(column, None) for column in attributes.get("columns", [])]
    fields += [(field, None) for field, _ in attributes.get("sort", [])]
    if "visState" in attributes:
        for agg in json.loads(attributes["visState"])["aggs"]:
            if "field" in agg["params"]:
                fields.append((agg["params"]["field"], agg["type"]))
    return fields


def field_problems(obj: dict[str, Any], types: dict[str, str]) -> list[str]:
    problems = []
    for field, agg in referenced_fields(obj):
        if field not in types:
            problems.append(f"{obj['id']}: {field} is not in the index template mappings")
        elif agg is not None and types[field] not in AGG_FIELD_TYPES[agg]:
            problems.append(f"{obj['id']}: {agg} on {field} ({types[field]})")
    return problems


def parse(flavor: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    lines = bundled_file(flavor).read_text().splitlines()  # type: ignore[arg-type]
    docs = [json.loads(line) for line in lines]  # every line is one JSON document
    return docs[:-1], docs[-1]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_bundled_files_are_the_generated_ones(flavor: str) -> None:
    assert bundled_file(flavor).read_text() == export_ndjson(flavor), (  # type: ignore[arg-type]
        f"regenerate: aisoar siem dashboards --flavor {flavor} --prefix aisoar -o {bundled_file(flavor)}")  # type: ignore[arg-type]


@pytest.mark.parametrize("flavor", FLAVORS)
def test_saved_object_shapes(flavor: str) -> None:
    objects, summary = parse(flavor)
    assert summary == {"exportedCount": len(objects), "missingRefCount": 0, "missingReferences": []}
    by_id = {(o["type"], o["id"]): o for o in objects}
    assert len(by_id) == len(objects)
    assert {o["type"] for o in objects} == TYPES
    for obj in objects:
        assert set(obj) >= {"id", "type", "attributes", "references", "migrationVersion"}
        assert list(obj["migrationVersion"]) == [obj["type"]]
        version = tuple(int(p) for p in obj["migrationVersion"][obj["type"]].split("."))
        if flavor == "opensearch-dashboards":
            # OpenSearch Dashboards forked Kibana 7.10.2 and refuses objects stamped later.
            assert version <= (7, 10, 2) and "coreMigrationVersion" not in obj
        else:
            assert (7, 0, 0) <= version <= (7, 17, 99) and obj["coreMigrationVersion"] == "7.17.0"
        for ref in obj["references"]:  # every reference resolves inside the file
            assert (ref["type"], ref["id"]) in by_id, ref
        ref_names = {ref["name"] for ref in obj["references"]}
        attributes = obj["attributes"]
        assert attributes["title"]
        meta = attributes.get("kibanaSavedObjectMeta", {}).get("searchSourceJSON")
        if meta is not None:
            source = json.loads(meta)  # a JSON string, not an object
            assert source["query"]["language"] == "kuery"
            if obj["type"] != "dashboard":
                assert source["indexRefName"] in ref_names
            for flt in source["filter"]:
                assert flt["meta"]["indexRefName"] in ref_names
        if obj["type"] == "search":
            assert all(isinstance(c, str) for c in attributes["columns"])
            assert all(len(s) == 2 and s[1] in ("asc", "desc") for s in attributes["sort"])
        elif obj["type"] == "visualization":
            vis = json.loads(attributes["visState"])
            assert vis["title"] == attributes["title"]
            assert {agg["schema"] for agg in vis["aggs"]} <= VIS_SCHEMAS[vis["type"]]
            assert len({agg["id"] for agg in vis["aggs"]}) == len(vis["aggs"])
            assert any(agg["schema"] == "metric" for agg in vis["aggs"])
            for agg in vis["aggs"]:
                order_by = agg["params"].get("orderBy")
                assert order_by is None or order_by in {a["id"] for a in vis["aggs"] if a["schema"] == "metric"}
        elif obj["type"] == "dashboard":
            panels = json.loads(attributes["panelsJSON"])
            assert {p["panelRefName"] for p in panels} == ref_names
            cells: set[tuple[int, int]] = set()
            for panel in panels:
                grid = panel["gridData"]
                assert grid["x"] + grid["w"] <= 48 and grid["i"] == panel["panelIndex"]
                area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                        for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
                assert not cells & area, f"panel {panel['panelIndex']} overlaps another"
                cells |= area
            assert attributes["timeRestore"] is True and attributes["timeFrom"] == "now-24h"


@pytest.mark.parametrize("flavor", FLAVORS)
def test_every_referenced_field_is_mapped(flavor: str) -> None:
    objects, _ = parse(flavor)
    types = field_types()
    assert [problem for obj in objects for problem in field_problems(obj, types)] == []
    used = {field for obj in objects for field, _ in referenced_fields(obj)}
    assert {"@timestamp", "rule.id", "event.risk_score", "event.reason", "aisoar.status"} <= used


def test_a_renamed_field_is_caught() -> None:
    """The check above can fail: drop a field from the mappings, or aggregate on text."""
    types = field_types()
    del types["event.reason"]
    problems = [p for obj in saved_objects("kibana") for p in field_problems(obj, types)]
    assert "aisoar-deadletters-by-reason: event.reason is not in the index template mappings" in problems
    types = {**field_types(), "rule.id": "text"}
    problems = [p for obj in saved_objects("kibana") for p in field_problems(obj, types)]
    assert "aisoar-findings-by-rule: terms on rule.id (text)" in problems


def test_query_values_are_values_aisoar_writes() -> None:
    compared = 0
    for obj in saved_objects("kibana"):
        meta = obj["attributes"].get("kibanaSavedObjectMeta", {}).get("searchSourceJSON")
        for field, values in kql_clauses(json.loads(meta)["query"]["query"]) if meta else []:
            assert set(values) <= ALLOWED_VALUES[field], (obj["id"], field, values)
            compared += 1
    assert compared >= 8


def test_module_doctest() -> None:
    import doctest

    import streams.siem.dashboards

    result = doctest.testmod(streams.siem.dashboards)
    assert result.attempted > 0 and result.failed == 0


def test_data_view_covers_every_index_and_prefix_is_applied() -> None:
    objects = saved_objects("opensearch-dashboards", prefix="soc-prod")
    (view,) = [o for o in objects if o["type"] == "index-pattern"]
    layout = IndexLayout(prefix="soc-prod")
    now = datetime.now(UTC)
    for kind in KINDS:
        assert fnmatch.fnmatch(layout.index(kind, now), view["attributes"]["title"])
        assert fnmatch.fnmatch(layout.alias(kind), view["attributes"]["title"])
    assert all(o["id"].startswith("soc-prod-") for o in objects)
    assert all(ref["id"].startswith("soc-prod-") for o in objects for ref in o["references"])
    with pytest.raises(ValueError, match="valid flavors: kibana, opensearch-dashboards"):
        saved_objects("grafana")  # type: ignore[arg-type]


# ----------------------------------------------------------------- against the real OpenSearch node


def kql_to_dsl(query: str) -> dict[str, Any]:
    """The shipped KQL subset (field:value conjunctions, or-lists) as query DSL, for OpenSearch."""
    must = [{"terms": {field: values}} for field, values in kql_clauses(query)]
    return {"bool": {"filter": must}}


@pytest.fixture
async def indexed(opensearch_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, IndexLayout]]:
    """One document of every kind aisoar writes, through its own mappers and templates."""
    layout = IndexLayout(prefix=f"dtest-{uuid.uuid4().hex[:8]}")
    client = make_client(opensearch_url, timeout=60)
    try:
        await install_templates(client, layout, replicas=0, lifecycle=False)
        sink = SiemSink(client, layout=layout)
        now = datetime.now(UTC) - timedelta(minutes=5)
        finding = make_finding(1, ts=now)
        await sink.add("finding", msgspec_replace(finding, severity="critical"))
        await sink.add("incident", Incident(
            id="inc-1", rule_id="incident.single_finding", rule_name="R", status="open", severity="critical",
            risk_score=99.0, first_seen=now, last_seen=now, entities=Entities(user_id="alice"),
            correlation_key="principal:alice", finding_ids=("f1",), finding_count=1))
        for status in ("pending_approval", "failed"):
            await sink.add("action", ActionRecord(
                id=f"a-{status}", idempotency_key="inc-1|identity:revoke_token|cred-7", playbook="p",
                action="identity:revoke_token", target="cred-7", mode="approval", status=status, timestamp=now,
                incident_id="inc-1", error="HTTP 503" if status == "failed" else None))
        await sink.add("deadletter", dead_letter("ai.prompts", b"{oops", "malformed JSON", partition=0, offset=1,
                                                 now=now))
        assert (await sink.flush()).indexed == 5
        await client.post(f"/{layout.prefix}-*/_refresh")
        yield client, layout
    finally:
        for index in (await client.get(f"/_cat/indices/{layout.prefix}-*", params={"format": "json"})).json():
            await client.delete(f"/{index['index']}")
        await client.delete(f"/_index_template/{layout.prefix}-*")
        await client.aclose()


def msgspec_replace(struct: Any, **changes: Any) -> Any:
    import msgspec

    return msgspec.structs.replace(struct, **changes)


@pytest.mark.integration
async def test_saved_queries_and_aggregations_find_aisoar_documents(indexed: tuple[httpx.AsyncClient, IndexLayout]) -> None:
    client, layout = indexed
    view = f"{layout.prefix}-*"  # the data view's title
    expected_hits = {"critical-findings-24h": 1, "incidents-open-by-risk": 1, "actions-approval-or-failed": 2,
                     "deadletters-by-reason": 1}  # fmt: skip
    checked = 0
    for obj in saved_objects("opensearch-dashboards", prefix=layout.prefix):
        attributes = obj["attributes"]
        if obj["type"] not in ("search", "visualization"):
            continue
        source = json.loads(attributes["kibanaSavedObjectMeta"]["searchSourceJSON"])
        query = kql_to_dsl(source["query"]["query"])
        query["bool"]["filter"] += [{"range": flt["range"]} for flt in source["filter"]]
        body: dict[str, Any] = {"query": query, "size": 50}
        if obj["type"] == "search":
            body["sort"] = [{field: {"order": order}} for field, order in attributes["sort"]]
        else:
            vis = json.loads(attributes["visState"])
            # "interval": "auto" is resolved by the dashboards app from the time range: one hour here.
            body["aggs"] = {agg["id"]: {agg["type"]: {"field": agg["params"]["field"],
                                                      **({"fixed_interval": "1h"} if agg["type"] == "date_histogram" else {})}}
                            for agg in vis["aggs"] if "field" in agg["params"]}  # fmt: skip
        response = await client.post(f"/{view}/_search", json=body)
        assert response.status_code == 200, response.text
        result = response.json()
        suffix = obj["id"].removeprefix(f"{layout.prefix}-")
        hits = result["hits"]["total"]["value"]
        assert hits == expected_hits.get(suffix, hits) and hits >= 1, (obj["id"], hits)
        for agg_id, agg in result.get("aggregations", {}).items():
            assert agg.get("buckets") or agg.get("value") is not None, (obj["id"], agg_id, agg)
        checked += 1
    assert checked == 9  # 4 saved searches, 5 visualisations
    reasons = (await client.post(f"/{view}/_search", json={"size": 0, "aggs": {
        "r": {"terms": {"field": "event.reason"}}}})).json()["aggregations"]["r"]["buckets"]  # fmt: skip
    assert [(b["key"], b["doc_count"]) for b in reasons] == [("malformed JSON", 1)]
