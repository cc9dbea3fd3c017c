"""Index layout, template bodies and their installation (mocked server)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from aisoar.errors import SinkError
from streams.siem import IndexLayout, ilm_policy, index_template, install_templates, ism_policy, mappings


def test_layout_names() -> None:
    layout = IndexLayout()
    ts = datetime(2026, 11, 25, 23, 30, tzinfo=timezone.utc)
    assert layout.alias("finding") == "aisoar-findings"
    now = datetime(2026, 11, 26, tzinfo=timezone.utc)
    assert layout.index("finding", ts, now=now) == "aisoar-findings-2026.11"
    assert layout.index("deadletter", ts, now=now) == "aisoar-deadletter-2026.11"
    assert IndexLayout(prefix="soc.ai", bucket="day").index("incident", ts, now=now) == "soc.ai-incidents-2026.11.25"
    # Hostile or broken producer clocks share one index instead of one per month of the calendar.
    assert layout.index("finding", datetime(1970, 1, 1, tzinfo=timezone.utc), now=now) == "aisoar-findings-outofrange"
    assert layout.index("finding", datetime(9999, 1, 1, tzinfo=timezone.utc), now=now) == "aisoar-findings-outofrange"
    assert layout.index("finding", now - timedelta(days=399), now=now) == "aisoar-findings-2025.10"
    assert layout.index("finding", now + timedelta(days=3), now=now) == "aisoar-findings-outofrange"
    assert layout.index("finding", datetime(2026, 11, 1), now=now) == "aisoar-findings-2026.11"  # naive = UTC
    assert layout.resolve("findings") == layout.resolve("finding") == "aisoar-findings"
    assert layout.resolve("custom-*") == "custom-*"
    with pytest.raises(ValueError, match="invalid index prefix"):
        IndexLayout(prefix="Bad*")
    with pytest.raises(ValueError, match="valid values: day, month"):
        IndexLayout(bucket="week")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="valid kinds"):
        layout.alias("alert")  # type: ignore[arg-type]


def test_template_body() -> None:
    body = index_template("finding", replicas=0)
    assert body["index_patterns"] == ["aisoar-findings-*"]
    assert body["template"]["aliases"] == {"aisoar-findings": {}}
    settings = body["template"]["settings"]
    assert settings == {
        "index.number_of_shards": 1,
        "index.mapping.ignore_malformed": True,
        "index.number_of_replicas": 0,
        "index.refresh_interval": "200ms",  # findings searchable fast (MTTD); other kinds keep 1 s
    }
    assert "index.refresh_interval" not in index_template("incident")["template"]["settings"]
    props = body["template"]["mappings"]["properties"]
    assert body["template"]["mappings"]["dynamic"] is False
    assert props["@timestamp"] == {"type": "date"}
    assert props["event"]["properties"]["id"]["type"] == "keyword"
    assert props["event"]["properties"]["severity"] == {"type": "long"}
    assert props["client"]["properties"]["ip"] == {"type": "ip"}
    assert props["aisoar"]["properties"]["confidence"] == {"type": "float"}
    assert index_template("action", lifecycle="p")["template"]["settings"]["index.lifecycle.name"] == "p"
    # JSON-serialisable, and a copy: callers may extend the mapping safely.
    json.dumps(body)
    mappings()["properties"]["x"] = {}
    assert "x" not in mappings()["properties"]


def test_every_keyword_has_ignore_above() -> None:
    def walk(node: dict[str, Any]) -> None:
        for spec in node["properties"].values():
            if "properties" in spec:
                walk(spec)
            elif spec["type"] == "keyword":
                assert spec.get("ignore_above") == 1024

    walk(mappings())


def test_policies() -> None:
    ism = ism_policy("deadletter")["policy"]
    assert ism["states"][0]["transitions"] == [{"state_name": "delete", "conditions": {"min_index_age": "30d"}}]
    assert ism["ism_template"] == [{"index_patterns": ["aisoar-deadletter-*"], "priority": 100}]
    assert ilm_policy("action")["policy"]["phases"] == {"delete": {"min_age": "400d", "actions": {"delete": {}}}}


class FakeCluster:
    def __init__(self, distribution: str | None, ism: bool = True) -> None:
        self.distribution = distribution
        self.ism = ism
        self.requests: list[tuple[str, str, Any]] = []
        self.policies: dict[str, Any] = {}

    def handler(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        path = request.url.path
        self.requests.append((request.method, path, body))
        if path == "/":
            version = (
                {"number": "2.19.6", "distribution": self.distribution} if self.distribution else {"number": "9.1.0"}
            )
            return httpx.Response(200, json={"version": version})
        if path.startswith("/_plugins/_ism/"):
            if not self.ism:
                return httpx.Response(
                    400, json={"error": f"no handler found for uri [{path}] and method [{request.method}]"}
                )
            name = path.rsplit("/", 1)[1]
            if request.method == "GET":
                if name in self.policies:
                    return httpx.Response(
                        200, json={"_id": name, "_seq_no": 3, "_primary_term": 1, **self.policies[name]}
                    )
                return httpx.Response(404, json={"error": {"type": "status_exception"}})
            self.policies[name] = body
            return httpx.Response(201, json={"_id": name})
        if path.endswith("/_mapping"):
            return httpx.Response(404, json={"error": {"type": "index_not_found_exception"}})
        return httpx.Response(200, json={"acknowledged": True})

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handler), base_url="http://siem")


async def test_install_on_opensearch_with_ism_is_idempotent() -> None:
    cluster = FakeCluster("opensearch")
    async with cluster.client() as client:
        first = await install_templates(client, replicas=0)
        puts_after_first = [r for r in cluster.requests if r[0] == "PUT" and "_ism" in r[1]]
        second = await install_templates(client, replicas=0)
    assert (
        first
        == second
        == {
            "flavor": "opensearch",
            "lifecycle": "ism",
            "templates": ["aisoar-findings", "aisoar-incidents", "aisoar-actions", "aisoar-deadletter"],
        }
    )
    assert len(puts_after_first) == 4
    # Second run: the same policies are left alone; templates are PUT again (idempotent).
    assert len([r for r in cluster.requests if r[0] == "PUT" and "_ism" in r[1]]) == 4
    templates = [r for r in cluster.requests if r[1].startswith("/_index_template/")]
    assert len(templates) == 8
    assert "index.lifecycle.name" not in templates[0][2]["template"]["settings"]


async def test_install_updates_changed_ism_policy_with_seq_no() -> None:
    cluster = FakeCluster("opensearch")
    cluster.policies["aisoar-findings-retention"] = {"policy": {"states": []}}
    async with cluster.client() as client:
        await install_templates(client, kinds=("finding",))
    put = [r for r in cluster.requests if r[0] == "PUT" and "_ism" in r[1]]
    assert len(put) == 1


async def test_install_on_bare_opensearch_skips_ism(caplog: pytest.LogCaptureFixture) -> None:
    cluster = FakeCluster("opensearch", ism=False)
    async with cluster.client() as client:
        result = await install_templates(client)
    assert result["lifecycle"] == "skipped: ISM plugin not available"
    assert "no index-management (ISM) plugin" in caplog.text
    assert len([r for r in cluster.requests if r[1].startswith("/_index_template/")]) == 4


async def test_install_on_elasticsearch_uses_ilm() -> None:
    cluster = FakeCluster(None)
    async with cluster.client() as client:
        result = await install_templates(client)
    assert result["flavor"] == "elasticsearch" and result["lifecycle"] == "ilm"
    ilm = [r for r in cluster.requests if r[1].startswith("/_ilm/policy/")]
    assert next(r[1] for r in ilm) == "/_ilm/policy/aisoar-findings-retention"
    template = next(r for r in cluster.requests if r[1] == "/_index_template/aisoar-findings")
    assert template[2]["template"]["settings"]["index.lifecycle.name"] == "aisoar-findings-retention"


async def test_install_errors_are_sink_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/":
            return httpx.Response(200, json={"version": {"distribution": "opensearch"}})
        return httpx.Response(403, json={"error": "forbidden"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse), base_url="http://s") as client:
        with pytest.raises(SinkError, match="HTTP 403"):
            await install_templates(client, lifecycle=False)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    async with httpx.AsyncClient(transport=httpx.MockTransport(down), base_url="http://s") as client:
        with pytest.raises(SinkError, match="ConnectError") as info:
            await install_templates(client)
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_conflicting_mapping_on_existing_indices_is_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/":
            return httpx.Response(200, json={"version": {"distribution": "opensearch"}})
        if request.url.path.endswith("/_mapping"):
            return httpx.Response(400, json={"error": {"type": "illegal_argument_exception"}})
        return httpx.Response(200, json={"acknowledged": True})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://s") as client:
        result = await install_templates(client, lifecycle=False)
    assert len(result["templates"]) == 4
    assert "keep their mapping" in caplog.text
