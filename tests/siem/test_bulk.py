"""The bulk writer against a scripted ``_bulk`` endpoint (``httpx.MockTransport``)."""

from __future__ import annotations

import logging
import ssl
from typing import Any

import certifi
import httpx
import msgspec
import pytest

from aisoar.errors import BulkIndexError, ConfigError, SinkError
from streams.siem import async_bulk, async_streaming_bulk, make_client, make_sync_client, streaming_bulk, sync_bulk

from .conftest import FakeBulk, Sleeps


def actions(n: int, *, size: int = 10) -> list[dict[str, Any]]:
    return [
        {"_index": "aisoar-findings-2026.11", "_id": f"d{i}", "_source": {"n": i, "pad": "x" * size}} for i in range(n)
    ]


async def collect(client: httpx.AsyncClient, docs: Any, **kwargs: Any) -> list[tuple[bool, dict[str, Any]]]:
    return [result async for result in async_streaming_bulk(client, docs, **kwargs)]


async def test_ndjson_body_and_results(fake_bulk: FakeBulk) -> None:
    async with fake_bulk.client() as client:
        results = await collect(client, actions(3))
    assert [ok for ok, _ in results] == [True, True, True]
    assert results[0][1] == {"index": {"_index": "aisoar-findings-2026.11", "_id": "d0", "status": 201, "attempts": 1}}
    body = fake_bulk.bodies[0]
    assert body.endswith(b"\n") and body.count(b"\n") == 6
    assert body.split(b"\n")[0] == b'{"index":{"_index":"aisoar-findings-2026.11","_id":"d0"}}'
    request = fake_bulk.requests[0]
    assert request.url.path == "/_bulk"
    assert request.headers["content-type"] == "application/x-ndjson"
    assert request.url.params["filter_path"].startswith("errors,items")


async def test_chunks_by_count(fake_bulk: FakeBulk) -> None:
    async with fake_bulk.client() as client:
        results = await collect(client, actions(25), chunk_size=10)
    assert len(results) == 25 and all(ok for ok, _ in results)
    assert [len(call) for call in fake_bulk.calls] == [10, 10, 5]


async def test_chunks_by_bytes(fake_bulk: FakeBulk) -> None:
    docs = actions(10, size=1000)
    one = (
        len(msgspec.json.encode({"index": {"_index": docs[0]["_index"], "_id": "d0"}}))
        + len(msgspec.json.encode(docs[0]["_source"]))
        + 2
    )
    async with fake_bulk.client() as client:
        await collect(client, docs, chunk_size=500, max_chunk_bytes=3 * one + 10)
    assert [len(call) for call in fake_bulk.calls] == [3, 3, 3, 1]
    assert all(len(body) <= 3 * one + 10 for body in fake_bulk.bodies)


async def test_oversized_document_goes_alone(fake_bulk: FakeBulk) -> None:
    async with fake_bulk.client() as client:
        results = await collect(client, actions(3, size=5000), max_chunk_bytes=100)
    assert [len(call) for call in fake_bulk.calls] == [1, 1, 1]
    assert all(ok for ok, _ in results)


async def test_async_iterable_of_actions(fake_bulk: FakeBulk) -> None:
    async def gen() -> Any:
        for action in actions(7):
            yield action

    async with fake_bulk.client() as client:
        results = await collect(client, gen(), chunk_size=3)
    assert len(results) == 7 and [len(c) for c in fake_bulk.calls] == [3, 3, 1]


async def test_only_429_items_are_retried(fake_bulk: FakeBulk, sleeps: Sleeps) -> None:
    fake_bulk.item_status = lambda doc_id, attempt: 429 if doc_id in {"d1", "d3"} and attempt == 1 else 201
    async with fake_bulk.client() as client:
        results = await collect(client, actions(5), sleep=sleeps, rand=lambda: 1.0, initial_backoff=0.5)
    assert sorted(item["index"]["_id"] for ok, item in results if ok) == ["d0", "d1", "d2", "d3", "d4"]
    assert [[h["index"]["_id"] for h, _ in call] for call in fake_bulk.calls] == [
        ["d0", "d1", "d2", "d3", "d4"],
        ["d1", "d3"],
    ]
    assert sleeps == [0.5]
    retried = {item["index"]["_id"]: item["index"]["attempts"] for _, item in results}
    assert retried == {"d0": 1, "d2": 1, "d4": 1, "d1": 2, "d3": 2}


async def test_5xx_items_retried_too(fake_bulk: FakeBulk, sleeps: Sleeps) -> None:
    fake_bulk.item_status = lambda doc_id, attempt: 503 if attempt < 3 else 200
    async with fake_bulk.client() as client:
        results = await collect(client, actions(2), sleep=sleeps, rand=lambda: 1.0, initial_backoff=1, max_backoff=1.5)
    assert all(ok for ok, _ in results)
    assert sleeps == [1.0, 1.5]  # exponential, capped


async def test_gives_up_after_max_attempts(fake_bulk: FakeBulk, sleeps: Sleeps) -> None:
    fake_bulk.item_status = lambda doc_id, attempt: 429 if doc_id == "d0" else 201
    async with fake_bulk.client() as client:
        results = await collect(
            client,
            actions(2),
            max_attempts=4,
            raise_on_error=False,
            sleep=sleeps,
            rand=lambda: 0.0,
            initial_backoff=1,
            max_backoff=100,
        )
    failed = [item for ok, item in results if not ok]
    assert failed == [
        {"index": {"_index": "aisoar-findings-2026.11", "_id": "d0", "status": 429, "attempts": 4,
                   "error": {"type": "es_rejected_execution_exception", "reason": "failed d0"}}}
    ]  # fmt: skip
    assert fake_bulk.seen == {"d0": 4, "d1": 1}
    assert sleeps == [0.5, 1.0, 2.0]  # jitter 0 gives half of each step


async def test_non_retryable_400_reported_not_retried(fake_bulk: FakeBulk, sleeps: Sleeps) -> None:
    fake_bulk.item_status = lambda doc_id, attempt: 400 if doc_id == "d1" else 201
    async with fake_bulk.client() as client:
        results = await collect(client, actions(3), raise_on_error=False, sleep=sleeps)
    assert [ok for ok, _ in results] == [True, False, True]
    assert results[1][1]["index"]["status"] == 400
    assert results[1][1]["index"]["error"]["type"] == "mapper_parsing_exception"
    assert len(fake_bulk.calls) == 1 and sleeps == []


async def test_bulk_index_error_carries_failed_items(fake_bulk: FakeBulk) -> None:
    fake_bulk.item_status = lambda doc_id, attempt: 400 if doc_id in {"d0", "d2"} else 201
    seen: list[tuple[bool, dict[str, Any]]] = []
    async with fake_bulk.client() as client:
        with pytest.raises(BulkIndexError, match="2 document") as info:
            async for result in async_streaming_bulk(client, actions(3)):
                seen.append(result)
    assert isinstance(info.value, SinkError)
    assert [e["index"]["_id"] for e in info.value.errors] == ["d0", "d2"]
    assert all(e["index"]["status"] == 400 for e in info.value.errors)
    assert "_source" not in str(info.value.errors) and "pad" not in str(info.value.errors)  # no bodies
    assert len(seen) == 3  # every result of the chunk was yielded before the error


async def test_transport_error_retried_then_succeeds(fake_bulk: FakeBulk, sleeps: Sleeps) -> None:
    fake_bulk.request_status = lambda call: httpx.ConnectError("refused") if call < 2 else 200
    async with fake_bulk.client() as client:
        results = await collect(client, actions(4), sleep=sleeps, rand=lambda: 1.0, initial_backoff=0.1)
    assert all(ok for ok, _ in results) and len(results) == 4
    assert len(fake_bulk.bodies) == 3 and sleeps == [0.1, 0.2]


async def test_whole_request_429_honours_retry_after(sleeps: Sleeps) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "3"}, json={"error": {"type": "too_many_requests"}})
        return httpx.Response(200, json={"errors": False, "items": [{"index": {"_id": "d0", "status": 201}}]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), base_url="http://s") as client:
        results = await collect(client, actions(1), sleep=sleeps, rand=lambda: 0.0, initial_backoff=0.1)
    assert results[0][0] is True
    assert sleeps == [3.0]


async def test_transport_errors_exhausted_raise_sink_error(fake_bulk: FakeBulk, sleeps: Sleeps) -> None:
    fake_bulk.request_status = lambda call: httpx.ReadTimeout("slow")
    async with fake_bulk.client() as client:
        with pytest.raises(SinkError, match="failed after 3 attempt") as info:
            await collect(client, actions(2), max_attempts=3, sleep=sleeps)
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert len(sleeps) == 2


async def test_transport_errors_exhausted_yield_failures_when_asked(fake_bulk: FakeBulk, sleeps: Sleeps) -> None:
    fake_bulk.request_status = lambda call: 503
    async with fake_bulk.client() as client:
        results = await collect(
            client, actions(2), max_attempts=2, raise_on_exception=False, raise_on_error=False, sleep=sleeps
        )
    assert [(ok, item["index"]["status"]) for ok, item in results] == [(False, 503), (False, 503)]


@pytest.mark.parametrize("status", [401, 403, 413])
async def test_non_retryable_request_error_raises_at_once(fake_bulk: FakeBulk, sleeps: Sleeps, status: int) -> None:
    fake_bulk.request_status = lambda call: status
    async with fake_bulk.client() as client:
        with pytest.raises(SinkError, match=f"HTTP {status}"):
            await collect(client, actions(2), sleep=sleeps)
    assert len(fake_bulk.bodies) == 1 and sleeps == []


async def test_never_logs_document_bodies(
    fake_bulk: FakeBulk, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    fake_bulk.item_status = lambda doc_id, attempt: 429 if attempt == 1 else 400
    secret = [{"_index": "i", "_id": "d0", "_source": {"prompt": "TOPSECRETVALUE"}}]
    with caplog.at_level(logging.DEBUG):
        async with fake_bulk.client() as client:
            await collect(client, secret, raise_on_error=False, sleep=sleeps)
    assert caplog.records  # it did log the retry
    assert "TOPSECRETVALUE" not in caplog.text
    assert all("TOPSECRETVALUE" not in str(r.__dict__) for r in caplog.records)


async def test_async_bulk_counts(fake_bulk: FakeBulk) -> None:
    fake_bulk.item_status = lambda doc_id, attempt: 400 if doc_id == "d1" else 201
    async with fake_bulk.client() as client:
        assert await async_bulk(client, actions(3), stats_only=True, raise_on_error=False) == (2, 1)
        ok, errors = await async_bulk(client, actions(3), raise_on_error=False)
    assert ok == 2 and [e["index"]["_id"] for e in errors] == ["d1"]  # type: ignore[union-attr]


def test_sync_variant(fake_bulk: FakeBulk) -> None:
    fake_bulk.item_status = lambda doc_id, attempt: 429 if doc_id == "d2" and attempt == 1 else 201
    delays: list[float] = []
    with fake_bulk.sync_client() as client:
        results = list(streaming_bulk(client, actions(5), chunk_size=2, sleep=delays.append))
        assert all(ok for ok, _ in results) and len(results) == 5
        assert sync_bulk(client, actions(2), stats_only=True) == (2, 0)
    assert [len(call) for call in fake_bulk.calls][:4] == [2, 2, 1, 1]
    assert len(delays) == 1


async def test_op_types_and_validation(fake_bulk: FakeBulk) -> None:
    docs = [
        {"_op_type": "create", "_index": "i", "_id": "a", "field": 1},
        {"_op_type": "delete", "_index": "i", "_id": "b"},
        {"_op_type": "update", "_index": "i", "_id": "c", "_source": {"x": 1}},
    ]
    async with fake_bulk.client() as client:
        await collect(client, docs)
        with pytest.raises(ValueError, match="valid values"):
            await collect(client, [{"_op_type": "upsert", "_index": "i"}])
        with pytest.raises(ValueError):
            await collect(client, actions(1), chunk_size=0)
    (create, create_src), (delete, delete_src), (_, update_src) = fake_bulk.calls[0]
    assert create == {"create": {"_index": "i", "_id": "a"}} and create_src == {"field": 1}
    assert delete == {"delete": {"_index": "i", "_id": "b"}} and delete_src is None
    assert update_src == {"doc": {"x": 1}}


def test_make_client_auth_and_tls(tmp_path: Any) -> None:
    client = make_client("https://siem:9200/", username="elastic", password="pw")
    assert isinstance(client.auth, httpx.BasicAuth)
    assert str(client.base_url) == "https://siem:9200"
    keyed = make_sync_client("https://siem:9200", api_key=("id1", "k1"))
    assert keyed.headers["Authorization"] == "ApiKey aWQxOmsx"
    assert make_client("http://s", api_key="abc==").headers["Authorization"] == "ApiKey abc=="
    with pytest.raises(ValueError, match="either an API key"):
        make_client("http://s", api_key="a", username="u")
    with pytest.raises(ValueError, match="http"):
        make_client("siem:9200")
    # A CA file becomes an SSLContext (httpx 0.28 deprecates path strings).
    ca = certifi.where()
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="CA file"):
        make_client("https://siem", ca_file=str(bad))
    seen: dict[str, Any] = {}
    original = httpx.AsyncClient.__init__

    def spy(self: httpx.AsyncClient, **kwargs: Any) -> None:
        seen.update(kwargs)
        original(self, **kwargs)

    httpx.AsyncClient.__init__ = spy  # type: ignore[method-assign]
    try:
        make_client("https://siem", ca_file=ca)
        assert isinstance(seen["verify"], ssl.SSLContext)
        make_client("https://siem", verify=False)
        assert seen["verify"] is False
    finally:
        httpx.AsyncClient.__init__ = original  # type: ignore[method-assign]


async def test_source_given_as_bytes_is_sent_as_is(fake_bulk: FakeBulk) -> None:
    encoded = msgspec.json.encode({"n": 1, "text": "é"})
    async with fake_bulk.client() as client:
        results = await collect(client, [{"_index": "i", "_id": "a", "_source": encoded}, *actions(1)])
    assert [ok for ok, _ in results] == [True, True]
    lines = fake_bulk.bodies[0].split(b"\n")
    assert lines[:2] == [b'{"index":{"_index":"i","_id":"a"}}', encoded]
    assert fake_bulk.calls[0][0][1] == {"n": 1, "text": "é"}
