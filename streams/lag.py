"""Consumer lag of the worker's group: how far it is behind each topic.

Used by ``aisoar demo`` and the end-to-end tests to know when the pipeline has
caught up, and by benchmarks to report lag over time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from aisoar.config import Settings
from streams.produce import kafka_client_options

__all__ = ["group_lag", "wait_caught_up"]


def _groups_of(settings: Settings, group: str, topic: str) -> list[str]:
    """The consumer groups whose progress on ``topic`` makes up ``group``'s. The worker
    (``worker.id``) reads its input topics with the detect stage's group
    (streams/detect.py) and its output topics with the index stage's as well
    (streams/index.py): its lag there is the larger of the two."""
    if group != settings.worker.id:
        return [group]
    t = settings.topics
    if topic in (t.prompts, t.inference) and settings.worker.processing_guarantee != "exactly_once":
        from streams.detect import detect_group

        return [detect_group(settings)]
    indexed = topic in (t.findings, t.incidents, t.actions, t.deadletter) and bool(settings.siem.url)
    from streams.index import index_group

    if topic in (t.actions, t.deadletter):
        return [index_group(settings)] if indexed else []  # only the index stage reads them
    return [group, index_group(settings)] if indexed else [group]


async def group_lag(settings: Settings, group: str, topics: Iterable[str]) -> dict[str, int]:
    """Messages not yet committed by ``group``, per topic (end offset - committed offset).
    For the worker's group (``worker.id``) this covers its detect and index stages too."""
    options = kafka_client_options(settings)
    admin = AIOKafkaAdminClient(**options)  # type: ignore[arg-type]
    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False)  # type: ignore[arg-type]
    await admin.start()
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in topics
                      for p in (consumer.partitions_for_topic(topic) or await _partitions(consumer, topic))]
        ends = await consumer.end_offsets(partitions)
        readers = {tp: _groups_of(settings, group, tp.topic) for tp in partitions}
        committed: dict[str, dict[TopicPartition, int]] = {}
        for g in {g for groups in readers.values() for g in groups}:
            mine = [tp for tp in partitions if g in readers[tp]]
            offsets = await admin.list_consumer_group_offsets(g, partitions=mine)
            committed[g] = {tp: meta.offset for tp, meta in offsets.items() if meta is not None and meta.offset >= 0}
        lag: dict[str, int] = {}
        for tp in partitions:
            behind = max((ends[tp] - committed[g].get(tp, 0) for g in readers[tp]), default=0)
            lag[tp.topic] = lag.get(tp.topic, 0) + max(0, behind)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # a topic created after start()
    return consumer.partitions_for_topic(topic) or set()


async def wait_caught_up(settings: Settings, topics: Iterable[str], *, timeout: float = 300.0,
                         settle: float = 2.0, group: str | None = None) -> dict[str, int]:
    """Wait until the worker's group has no lag on ``topics`` for ``settle`` seconds."""
    topics = list(topics)
    group = group or settings.worker.id
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    lag: dict[str, int] = {}
    while time.monotonic() < deadline:
        lag = await group_lag(settings, group, topics)
        if sum(lag.values()) == 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle:
                return lag
        else:
            quiet_since = None
        await asyncio.sleep(0.5)
    raise TimeoutError(f"worker group {group!r} still behind after {timeout:.0f}s: {lag}")
