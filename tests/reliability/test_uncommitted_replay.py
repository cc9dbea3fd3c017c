"""A restarted worker reads again what it fetched but never processed, also on a partition
where nothing was ever committed (the real broker; no worker needed).

Faust drops records fetched while a rebalance or the table recovery holds the flow, and
relies on "seek to the committed offsets" to read them again. aiokafka seeks only to a
committed offset > 0: on a never-committed partition the position stayed past them. That
lost the incident of tests/e2e/test_response.py's kill test under load (the first record
of its partition, in flight when the worker was killed, so never committed): the
restarted worker never re-ran the playbook. ``streams.app.seek_to_committed_or_beginning``
sends such partitions back to their beginning.
"""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import OffsetAndMetadata

from streams.app import seek_to_committed_or_beginning

pytestmark = pytest.mark.integration


async def _topic_with_records(bootstrap: str, per_partition: int) -> str:
    topic = f"itest-replay-{uuid.uuid4().hex[:10]}"  # our own: the stack may be shared
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for partition in range(3):
            for i in range(per_partition):
                await producer.send_and_wait(topic, f"p{partition}-{i}".encode(), partition=partition)
    finally:
        await producer.stop()
    return topic


async def _drain(consumer: AIOKafkaConsumer, expected: int) -> list[bytes]:
    values: list[bytes] = []
    for _ in range(20):
        batches = await consumer.getmany(timeout_ms=300)
        values += [r.value for records in batches.values() for r in records if r.value is not None]
        if len(values) >= expected:
            break
    return sorted(values)


async def test_fetched_but_uncommitted_records_are_read_again(kafka_bootstrap: str) -> None:
    topic = await _topic_with_records(kafka_bootstrap, per_partition=3)
    never, committed_at_2, kept = (TopicPartition(topic, p) for p in range(3))
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=f"itest-{uuid.uuid4().hex[:8]}",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([never, committed_at_2, kept])
        await consumer.commit({committed_at_2: OffsetAndMetadata(2, "")})
        assert await consumer.committed(committed_at_2) == 2
        consumer.seek(committed_at_2, 2)  # on a fresh broker the position may predate the commit
        assert len(await _drain(consumer, 7)) == 7  # fetched, nothing more committed: "dropped"

        # The library alone: nothing is read again on the never-committed partitions.
        await consumer.seek_to_committed()
        assert await _drain(consumer, 1) == [b"p1-2"]

        committed = await seek_to_committed_or_beginning(consumer, keep=lambda tp: tp == kept)
        assert committed[never] is None and committed[committed_at_2] == 2
        # Never committed: from its beginning; committed: from there; kept: left where it was.
        assert await _drain(consumer, 4) == [b"p0-0", b"p0-1", b"p0-2", b"p1-2"]
    finally:
        await consumer.stop()
