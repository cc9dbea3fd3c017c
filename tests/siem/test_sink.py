"""SiemSink: buffering, flush thresholds, acknowledgement semantics, read-back helpers."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from typing import Any

import httpx
import msgspec
import pytest

from aisoar.errors import SinkError
from aisoar.events import dead_letter
from streams.siem import FlushResult, IndexLayout, SiemSink, to_ecs

from .conftest import FakeBulk, Sleeps, make_finding


def NOW() -> datetime:  # noqa: N802 - a constant clock
    return datetime(2026, 11, 25, 12, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_add_buffers_until_count(fake_bulk: FakeBulk) -> None:
    sink = SiemSink(fake_bulk.client(), wall_clock=NOW, max_docs=3, max_age=60)
    assert await sink.add("finding", make_finding(0)) is None
    assert await sink.add("finding", make_finding(1)) is None
    assert len(sink) == 2 and fake_bulk.calls == []
    result = await sink.add("finding", make_finding(2))
    assert result == FlushResult(indexed=3)
    assert len(sink) == 0 and sink.buffered_bytes == 0
    header, source = fake_bulk.calls[0][0]
    assert header == {"index": {"_index": "aisoar-findings-2026.11", "_id": make_finding(0).id}}
    assert source is not None and source["event"]["kind"] == "alert"
    await sink.aclose()


async def test_flush_by_bytes(fake_bulk: FakeBulk) -> None:
    sink = SiemSink(fake_bulk.client(), wall_clock=NOW, max_docs=1000, max_bytes=3000, max_age=60)
    results = [await sink.add("finding", make_finding(i)) for i in range(5)]
    assert any(r is not None for r in results)
    assert fake_bulk.calls and all(len(json.dumps(c)) < 6000 for c in fake_bulk.calls)


async def test_flush_by_age(fake_bulk: FakeBulk) -> None:
    clock = Clock()
    sink = SiemSink(fake_bulk.client(), wall_clock=NOW, max_docs=100, max_age=2.0, clock=clock)
    await sink.add("finding", make_finding(0))
    assert not sink.due() and await sink.flush_if_due() is None
    clock.now += 2.5
    assert sink.due()
    assert await sink.flush_if_due() == FlushResult(indexed=1)
    assert not sink.due()


async def test_kinds_go_to_their_indices(fake_bulk: FakeBulk) -> None:
    sink = SiemSink(fake_bulk.client(), wall_clock=NOW, layout=IndexLayout(prefix="soc"), max_docs=100)
    letter = dead_letter(
        "ai.prompts", b"{", "malformed JSON", partition=0, offset=1, now=datetime(2026, 10, 3, tzinfo=timezone.utc)
    )
    await sink.add("finding", make_finding(0))
    await sink.add("deadletter", letter)
    await sink.add("incident", {"id": "inc-1", "first_seen": "2026-09-30T23:59:00Z", "severity": "high"})
    await sink.add(
        "action", {"id": "a-1", "action": "oncall:alertmanager", "timestamp": "2026-11-25T00:00:00Z", "status": "done"}
    )
    assert (await sink.flush()).indexed == 4
    assert [h["index"]["_index"] for h, _ in fake_bulk.calls[0]] == [
        "soc-findings-2026.11", "soc-deadletter-2026.10", "soc-incidents-2026.09", "soc-actions-2026.11",
    ]  # fmt: skip


async def test_latest_version_of_a_record_wins_within_a_batch(fake_bulk: FakeBulk) -> None:
    sink = SiemSink(fake_bulk.client(), wall_clock=NOW, max_docs=100)
    await sink.add("incident", {"id": "inc-1", "first_seen": "2026-11-01T00:00:00Z", "status": "open"})
    await sink.add("incident", {"id": "inc-1", "first_seen": "2026-11-01T00:00:00Z", "status": "contained"})
    assert (await sink.flush()).indexed == 1
    ((_, source),) = fake_bulk.calls[0]
    assert source is not None and source["aisoar"]["status"] == "contained"


async def test_rejected_documents_are_handed_back_for_dead_letters(fake_bulk: FakeBulk) -> None:
    bad = make_finding(1)
    fake_bulk.item_status = lambda doc_id, attempt: 400 if doc_id == bad.id else 201
    sink = SiemSink(fake_bulk.client(), wall_clock=NOW, max_docs=100)
    await sink.add("finding", make_finding(0))
    await sink.add("finding", bad)
    result = await sink.flush()
    assert result.indexed == 1 and result.sent == 2
    (rejected,) = result.rejected
    assert rejected.record is bad and rejected.kind == "finding" and rejected.status == 400
    assert rejected.index == "aisoar-findings-2026.11"
    assert rejected.error["type"] == "mapper_parsing_exception"
    assert len(sink) == 0  # acknowledged: the caller may commit its offsets


async def test_siem_down_keeps_documents_and_raises(fake_bulk: FakeBulk, sleeps: Sleeps) -> None:
    down = True
    fake_bulk.request_status = lambda call: httpx.ConnectError("refused") if down else 200
    sink = SiemSink(fake_bulk.client(), wall_clock=NOW, max_docs=100, max_attempts=2, sleep=sleeps)
    for i in range(3):
        await sink.add("finding", make_finding(i))
    with pytest.raises(SinkError):
        await sink.flush()
    assert len(sink) == 3  # nothing lost: do not commit, retry later
    down = False
    assert (await sink.flush()).indexed == 3
    assert len(sink) == 0


async def test_items_still_429_after_retries_raise_not_dead_letter(fake_bulk: FakeBulk, sleeps: Sleeps) -> None:
    fake_bulk.item_status = lambda doc_id, attempt: 429
    sink = SiemSink(fake_bulk.client(), wall_clock=NOW, max_docs=100, max_attempts=3, sleep=sleeps)
    await sink.add("finding", make_finding(0))
    with pytest.raises(SinkError, match="429/5xx"):
        await sink.flush()
    assert len(sink) == 1 and fake_bulk.seen == {make_finding(0).id: 3}


async def test_buffer_cap_is_backpressure(fake_bulk: FakeBulk, sleeps: Sleeps) -> None:
    fake_bulk.request_status = lambda call: 503
    sink = SiemSink(fake_bulk.client(), wall_clock=NOW, max_docs=2, max_buffer_docs=4, max_attempts=1, sleep=sleeps)
    for i in range(4):  # threshold flushes fail quietly: the documents stay buffered
        assert await sink.add("finding", make_finding(i)) is None
    with pytest.raises(SinkError, match="buffer full"):
        await sink.add("finding", make_finding(4))
    assert len(sink) == 4  # the refused record was not buffered: adding it again is safe
    with pytest.raises(SinkError):
        await sink.flush()
    fake_bulk.request_status = lambda call: 200
    assert (await sink.flush()).indexed == 4
    assert await sink.add("finding", make_finding(4)) is None
    assert (await sink.flush()).indexed == 1


async def test_records_added_during_a_flush_are_not_lost(sleeps: Sleeps) -> None:
    release = asyncio.Event()
    received: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        await release.wait()
        lines = [json.loads(x) for x in request.content.split(b"\n") if x]
        heads = lines[0::2]
        received.extend(h["index"]["_id"] for h in heads)
        return httpx.Response(
            200, json={"errors": False, "items": [{"index": {**h["index"], "status": 201}} for h in heads]}
        )

    sink = SiemSink(httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://s"), max_docs=100)
    await sink.add("finding", make_finding(0))
    flushing = asyncio.create_task(sink.flush())
    await asyncio.sleep(0)
    await sink.add("finding", make_finding(1))  # arrives while the first flush waits
    release.set()
    assert (await flushing).indexed == 1
    assert len(sink) == 1
    assert (await sink.flush()).indexed == 1
    assert received == [make_finding(0).id, make_finding(1).id]


async def test_search_helpers() -> None:
    requests: list[tuple[str, str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        requests.append((request.method, request.url.path, body))
        if request.url.path.startswith("/missing"):
            return httpx.Response(404, json={"error": {"type": "index_not_found_exception"}})
        if request.url.path.endswith("/_count"):
            return httpx.Response(200, json={"count": 7})
        if request.url.path.endswith("/_refresh"):
            return httpx.Response(200, json={"_shards": {}})
        if body and "aggs" in body:
            buckets = [{"key": "secret.aws_access_key", "doc_count": 5}, {"key": "pii.email", "doc_count": 2}]
            return httpx.Response(200, json={"hits": {"hits": []}, "aggregations": {"by": {"buckets": buckets}}})
        return httpx.Response(200, json={"hits": {"hits": [{"_id": "x", "_source": {"a": 1}}]}})

    sink = SiemSink(httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://s"))
    await sink.refresh("findings")
    assert await sink.count_by("findings", "rule.id") == {"secret.aws_access_key": 5, "pii.email": 2}
    assert await sink.search("finding", {"term": {"rule.id": "x"}}, size=5) == [{"_id": "x", "_source": {"a": 1}}]
    assert await sink.count("incidents") == 7
    assert await sink.count("missing-index") == 0
    assert await sink.search("missing-index") == []
    assert requests[0][:2] == ("POST", "/aisoar-findings/_refresh")
    assert requests[1][2]["aggs"] == {"by": {"terms": {"field": "rule.id", "size": 100}}}
    assert requests[2][1] == "/aisoar-findings/_search" and requests[2][2] == {
        "query": {"term": {"rule.id": "x"}},
        "size": 5,
    }

    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down")

    broken = SiemSink(httpx.AsyncClient(transport=httpx.MockTransport(fail), base_url="http://s"))
    with pytest.raises(SinkError) as info:
        await broken.count("findings")
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_invalid_thresholds() -> None:
    with pytest.raises(ValueError):
        SiemSink(httpx.AsyncClient(), max_docs=0)


async def test_unmappable_record_is_rejected_not_raised(fake_bulk: FakeBulk) -> None:
    sink = SiemSink(fake_bulk.client(), wall_clock=NOW, max_docs=100)
    bad = {"id": "inc-x", "severity": "high"}  # no timestamp
    assert await sink.add("incident", bad) is None
    await sink.add("finding", make_finding(0))
    result = await sink.flush()
    assert result.indexed == 1
    (rejected,) = result.rejected
    assert rejected.record is bad and rejected.status == 0 and rejected.error["type"] == "ecs_mapping_error"
    assert await sink.flush() == FlushResult()
    assert await sink.add("incident", bad) is None
    assert (await sink.flush()).rejected[0].record is bad  # also without any document to send


async def test_put_buffers_without_flushing_and_flush_sends_the_encoded_documents(fake_bulk: FakeBulk) -> None:
    sink = SiemSink(fake_bulk.client(), wall_clock=NOW, max_docs=2, max_age=0, max_buffer_docs=3)
    for n in range(3):
        sink.put("finding", make_finding(n))  # past max_docs and max_age: put never sends
    assert fake_bulk.calls == [] and len(sink) == 3 and sink.due()
    with pytest.raises(SinkError):
        sink.put("finding", make_finding(3))  # full: refused, not buffered
    assert len(sink) == 3
    result = await sink.flush()
    assert result == FlushResult(indexed=3)
    sent = [source for call in fake_bulk.calls for _, source in call]
    assert sent == [json.loads(msgspec.json.encode(to_ecs("finding", make_finding(n)).source)) for n in range(3)]
