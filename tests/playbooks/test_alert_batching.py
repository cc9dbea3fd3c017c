"""Concurrent on-call alerts coalesced into one ``POST /api/v2/alerts``, against the REAL
Alertmanager of the local stack: what arrives there, how many POSTs carried it, and what a
batch the server (or the network) refuses does to each alert in it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from aisoar.findings import Entities
from aisoar.incidents import Incident
from playbooks import AlertmanagerSettings, Connections, Engine, load_playbooks
from playbooks.actions._alert_batch import batcher_for
from playbooks.ledger import decode
from playbooks.policy import Policy

pytestmark = [pytest.mark.integration, pytest.mark.stack_services("alertmanager")]

N = 24


class Counting(httpx.AsyncBaseTransport):
    """The real transport, counting the POSTs that reach ``/api/v2/alerts``."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.alert_posts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.endswith("/api/v2/alerts"):
            self.alert_posts += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class ClosingRelay:
    """A TCP server in front of Alertmanager that reads each request and hangs up without
    an answer (a proxy or load balancer dropping the connection) for the first
    ``drop_first`` connections, then pipes the later ones to the real Alertmanager."""

    def __init__(self, upstream: str, drop_first: int) -> None:
        url = httpx.URL(upstream)
        self.host, self.port = url.host, url.port
        self.drop_first = drop_first
        self.connections = 0
        self.dropped = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.connections <= self.drop_first:
                await reader.read(65536)  # the request arrives...
                self.dropped += 1
                return  # ...and the connection closes unanswered
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)

            async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
                try:
                    while data := await src.read(65536):
                        dst.write(data)
                        await dst.drain()
                finally:
                    dst.close()

            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)
        finally:
            writer.close()


def _incident(tag: str, i: int) -> Incident:
    now = datetime.now(UTC)
    return Incident(id=f"inc-{tag}-{i}", rule_id="incident.jailbreak_campaign", rule_name="Jailbreak campaign",
                    status="open", severity="high", risk_score=90.0, first_seen=now, last_seen=now,
                    entities=Entities(credential_id=f"svc-{tag}-{i}"), correlation_key=f"principal:svc-{tag}-{i}",
                    categories=("jailbreak",), finding_ids=(f"f-{tag}-{i}",), finding_count=3,
                    summary="alert batching test")


async def _active_alerts(client: httpx.AsyncClient, am_url: str, tag: str) -> set[str]:
    r = await client.get(f"{am_url}/api/v2/alerts", params={"filter": f'incident_id=~"inc-{tag}-.*"'})
    assert r.status_code == 200, r.text
    return {a["labels"]["incident_id"] for a in r.json() if a["status"]["state"] != "resolved"}


def _engine(client: httpx.AsyncClient, am_url: str, records: list[Any], **policy: Any) -> Engine:
    async def emit(record: Any) -> None:
        records.append(record)

    return Engine(load_playbooks(), client=client, connections=Connections(alertmanager=AlertmanagerSettings(url=am_url)),
                  emit=emit, ledger_store={}, policy=Policy(**policy))


def _alert_steps(records: list[Any], status: str) -> list[Any]:
    return [r for r in records if r.action == "oncall:alertmanager" and r.status == status]


async def test_concurrent_alerts_arrive_in_fewer_posts(stack):
    """The jailbreak playbook's first step pages on-call for every incident: N incidents at
    once, N alerts in Alertmanager, each step succeeded, carried by fewer than N POSTs."""
    am_url = stack["alertmanager"]["url"]
    tag = uuid.uuid4().hex[:8]
    transport = Counting()
    records: list[Any] = []
    async with httpx.AsyncClient(timeout=10.0, transport=transport) as client:
        engine = _engine(client, am_url, records)
        await asyncio.gather(*(engine.handle_incident(_incident(tag, i)) for i in range(N)))

        assert await _active_alerts(client, am_url, tag) == {f"inc-{tag}-{i}" for i in range(N)}
    succeeded = _alert_steps(records, "succeeded")
    assert sorted(r.incident_id for r in succeeded) == sorted(f"inc-{tag}-{i}" for i in range(N))
    assert 1 <= transport.alert_posts < N, transport.alert_posts
    assert any("batch_size=" in r.reason and not r.reason.endswith("batch_size=1") for r in succeeded)
    # Each step keeps its own audit: its own request (its own alert) and its own ledger entry.
    for r in succeeded:
        ((alert,),) = [req["json"] for req in r.request["requests"]]
        assert alert["labels"]["incident_id"] == r.incident_id
        assert decode(engine.ledger.store[r.idempotency_key]).state == "done"


async def test_a_batch_the_connection_drops_fails_every_alert_in_it(stack):
    """Every connection to the 'Alertmanager' is dropped after the request was read: no
    alert of any batch is reported sent; each step fails after its retries and the page
    about that failure fails too (same server). Fewer connections than alerts: they were
    batched, and the whole batch failed, not just one alert."""
    am_url = stack["alertmanager"]["url"]
    tag = uuid.uuid4().hex[:8]
    records: list[Any] = []
    relay = ClosingRelay(am_url, drop_first=10**9)
    async with relay as relay_url, httpx.AsyncClient(timeout=10.0) as client:
        engine = _engine(client, relay_url, records, max_attempts=2, backoff_s=0.01, breaker_failures=10**6)
        await asyncio.gather(*(engine.handle_incident(_incident(tag, i)) for i in range(N)))
        assert await _active_alerts(client, am_url, tag) == set()  # nothing went through

    assert _alert_steps(records, "succeeded") == []
    failed = _alert_steps(records, "failed")
    assert sorted(r.incident_id for r in failed) == sorted(f"inc-{tag}-{i}" for i in range(N))
    assert all(r.attempt == 2 and "RemoteProtocolError" in (r.error or "") for r in failed)
    escalated = _alert_steps(records, "escalated")
    assert len(escalated) == N and all("paging on-call failed" in (r.error or "") for r in escalated)
    for r in failed:
        assert decode(engine.ledger.store[r.idempotency_key]).state == "failed"
    # 2 attempts + 1 escalation per incident (72 requests one by one), batched: fewer than N.
    assert 3 <= relay.dropped < N, relay.dropped


async def test_alerts_of_a_dropped_batch_are_retried_and_all_arrive(stack):
    """The first POST is dropped, later ones reach the real Alertmanager: every alert of
    the dropped batch is retried by its own step and arrives; none is lost or doubled."""
    am_url = stack["alertmanager"]["url"]
    tag = uuid.uuid4().hex[:8]
    records: list[Any] = []
    relay = ClosingRelay(am_url, drop_first=1)
    async with relay as relay_url, httpx.AsyncClient(timeout=10.0) as client:
        engine = _engine(client, relay_url, records, backoff_s=0.01)
        await asyncio.gather(*(engine.handle_incident(_incident(tag, i)) for i in range(N)))
        assert await _active_alerts(client, am_url, tag) == {f"inc-{tag}-{i}" for i in range(N)}

    # One dropped call, however many alerts it carried, is one failure for the circuit breaker
    # (5 to open): counted per alert, it would have opened and refused the retries.
    assert relay.dropped == 1
    succeeded = _alert_steps(records, "succeeded")
    assert sorted(r.incident_id for r in succeeded) == sorted(f"inc-{tag}-{i}" for i in range(N))
    retried = [r for r in succeeded if r.attempt == 2]
    assert retried  # the alerts of the dropped batch: succeeded on their second attempt, not the first
    assert _alert_steps(records, "failed") == [] and _alert_steps(records, "escalated") == []


async def test_one_malformed_alert_does_not_fail_the_others_in_its_batch(stack):
    """Alertmanager refuses a whole list for one bad alert (400): the batcher sends each
    alone, so only the bad one fails and the good ones arrive."""
    am_url = stack["alertmanager"]["url"]
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    good = [{"labels": {"alertname": "AisoarBatchTest", "incident_id": f"inc-{tag}-{i}"}, "startsAt": now}
            for i in range(5)]
    bad = {"labels": {}, "startsAt": now}  # no labels: refused
    async with httpx.AsyncClient(timeout=10.0) as client:
        batcher = batcher_for(client, f"{am_url}/api/v2/alerts")
        outcomes = await asyncio.gather(*(batcher.submit(a) for a in [*good[:2], bad, *good[2:]]))
        assert await _active_alerts(client, am_url, tag) == {f"inc-{tag}-{i}" for i in range(5)}
    bad_outcome = outcomes.pop(2)
    assert isinstance(bad_outcome.error, httpx.HTTPStatusError) and bad_outcome.status_code == 400
    assert all(o.error is None and o.status_code == 200 for o in outcomes)
    assert batcher.posts == 1 + 6  # the refused batch, then each alert alone
