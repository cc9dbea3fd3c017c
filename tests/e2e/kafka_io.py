"""Reading and writing test topics, and reading the index back."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from aisoar.config import Settings
from aisoar.errors import SinkError
from streams.admin import ensure_topics
from streams.produce import kafka_client_options, produce_records
from streams.siem import IndexLayout, SiemSink, make_client

__all__ = ["produce", "read_topic", "search_index", "wait_for_count"]


async def produce(settings: Settings, records: list[tuple[str, bytes | None, bytes]]) -> None:
    await ensure_topics(settings)
    await produce_records(settings, records)


async def read_topic(settings: Settings, topic: str, *, expect: int | None = None, timeout: float = 60.0) -> list[Any]:
    """Every committed record of ``topic`` (read_committed), waiting up to ``timeout`` for ``expect`` of them."""
    consumer = AIOKafkaConsumer(**kafka_client_options(settings), enable_auto_commit=False,  # type: ignore[arg-type]
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        for _ in range(50):  # metadata of a topic this consumer never saw arrives asynchronously
            known = consumer.partitions_for_topic(topic)
            if known:
                break
            consumer._client.add_topic(topic)
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.2)
        partitions = [TopicPartition(topic, p) for p in sorted(known or ())]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # Without an expected count, read up to the end offsets seen now: one empty poll under
        # load is not the end of the topic (it cut a read short at load 8-11).
        ends = await consumer.end_offsets(partitions) if expect is None else {}
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for messages in batch.values():
                records.extend(messages)
            if expect is not None and len(records) >= expect:
                await asyncio.sleep(1.0)  # anything beyond the expected count is a bug: collect it
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(messages)
                break
            if expect is None and not batch and all([await consumer.position(tp) >= end for tp, end in ends.items()]):
                break
        return records
    finally:
        # aiokafka's group-less coordinator lets its own task's cancellation escape stop().
        with contextlib.suppress(asyncio.CancelledError):
            await consumer.stop()


def _sink(settings: Settings) -> SiemSink:
    assert settings.siem.url
    return SiemSink(make_client(settings.siem.url), layout=IndexLayout(prefix=settings.siem.index_prefix))


async def search_index(settings: Settings, kind: str, query: dict[str, Any] | None = None, size: int = 10000) -> list[dict[str, Any]]:
    sink = _sink(settings)
    try:
        for attempt in range(40):
            try:
                await sink.refresh(kind)
                return [hit["_source"] for hit in await sink.search(kind, query, size=size)]
            except SinkError:  # a just-created index answers 503 until its shard is allocated
                if attempt == 39:
                    raise
                await asyncio.sleep(0.5)
        raise AssertionError("unreachable")
    finally:
        await sink.aclose()


async def wait_for_count(settings: Settings, kind: str, query: dict[str, Any] | None, expected: int,
                         *, timeout: float = 120.0, quiet: float = 3.0) -> int:
    """Poll the index until ``expected`` documents match, and stay there for ``quiet`` seconds."""
    sink = _sink(settings)
    try:
        deadline = time.monotonic() + timeout
        count, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            try:
                await sink.refresh(kind)
                now = await sink.count(kind, query)
            except SinkError:  # a just-created index answers 503 until its shard is allocated
                await asyncio.sleep(0.5)
                continue
            if now != count:
                count, since = now, time.monotonic()
            elif count >= expected and time.monotonic() - since >= quiet:
                return count
            await asyncio.sleep(0.5)
        return count
    finally:
        await sink.aclose()
