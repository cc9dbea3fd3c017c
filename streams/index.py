"""The index stage: findings, incidents, actions and dead letters → the SIEM (``_bulk``, ECS).

It runs on a plain aiokafka consumer in its own group, ``<worker.id>.siem``, not as a
Faust agent, so that the SIEM never holds up containment. In one Faust consumer every
topic shares one fetch loop, and a record is handed to each agent's queue in turn:
while the SIEM was down or slow, the indexing agent stopped taking records, its queue
filled, and fan-out, correlation and the playbooks stopped with it (and under load its
batches delayed every finding on the way to correlation). Here the stage waits on the
SIEM alone; the other agents read the same topics in Faust's group, at their own pace.

Guarantee: at-least-once. A batch's offsets are committed only after ``_bulk``
acknowledged every document (or refused it for good, and that refusal was dead-lettered
and acknowledged by the broker). While the SIEM is away, ``Runtime.index`` keeps
retrying and this stage stops consuming: Kafka is the durable buffer. Replays overwrite
documents with the same ``_id``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from aisoar.config import Settings
from aisoar.events import DeadLetter, encode
from streams import metrics
from streams.produce import kafka_client_options

__all__ = ["IndexStage", "index_group"]

log = logging.getLogger(__name__)


def index_group(settings: Settings) -> str:
    """The consumer group of the index stage (its offsets on the output topics)."""
    return f"{settings.worker.id}.siem"


def indexed_topics(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.findings, t.incidents, t.actions, t.deadletter]


class IndexStage:
    """Consume the worker's output topics in batches; index them; commit once acknowledged."""

    def __init__(self, settings: Settings, runtime: Any) -> None:
        self.settings = settings
        self.runtime = runtime
        self.ready = False
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        options = kafka_client_options(self.settings)
        self.producer = AIOKafkaProducer(
            **options,  # type: ignore[arg-type]
            acks="all",
            enable_idempotence=True,
            max_request_size=16 * 1024 * 1024,  # a refused document is dead-lettered whole
        )
        self.consumer = AIOKafkaConsumer(
            **options,  # type: ignore[arg-type]
            group_id=index_group(self.settings),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",  # never index what a transaction aborted
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
            rebalance_timeout_ms=20_000,
            # A SIEM outage keeps one batch retrying for as long as it lasts; past this the
            # group moves on without us and the batch is read again after the rejoin.
            max_poll_interval_ms=30 * 60 * 1000,
            max_partition_fetch_bytes=4 * 1024 * 1024,
        )
        await self.producer.start()
        await self.consumer.start()
        self.consumer.subscribe(indexed_topics(self.settings), listener=_Joined(self))

    async def stop(self) -> None:
        self.ready = False
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def run(self) -> None:
        """Until cancelled (the worker stopping)."""
        await self.start()
        assert self.consumer is not None
        siem = self.settings.siem
        try:
            while True:
                batches = await self.consumer.getmany(timeout_ms=max(1, int(siem.flush_interval_s * 1000)),
                                                      max_records=siem.flush_max_docs)
                if batches:
                    await self.process(batches)
        finally:
            await self.stop()

    async def process(self, batches: dict[TopicPartition, list[Any]]) -> None:
        """Index one fetched batch; commit its offsets once the SIEM acknowledged all of it."""
        assert self.consumer is not None
        acks: list[asyncio.Future[Any]] = []

        async def publish_dead(dead: DeadLetter) -> None:
            acks.append(await self._send_dead(dead))

        records = [(tp.topic, record.value) for tp, batch in batches.items() for record in batch]
        try:
            await self.runtime.index(records, publish_dead)
            if acks:
                await asyncio.gather(*acks)
        except KafkaError as exc:
            log.error("index stage could not dead-letter a refused document (%s); retrying the batch",
                      type(exc).__name__)
            for tp, batch in batches.items():
                self.consumer.seek(tp, batch[0].offset)
            await asyncio.sleep(1.0)
            return
        try:
            await self.consumer.commit({tp: batch[-1].offset + 1 for tp, batch in batches.items()})
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("index stage commit skipped after a rebalance (%s)", type(exc).__name__)

    async def _send_dead(self, dead: DeadLetter) -> asyncio.Future[Any]:
        assert self.producer is not None
        metrics.DEAD_LETTERS.labels(dead.topic, metrics.reason_label(dead.reason)).inc()
        log.warning("dead-lettered a record from %s: %s", dead.topic, dead.reason)
        return await self.producer.send(self.settings.topics.deadletter, encode(dead), key=dead.topic.encode())


class _Joined(ConsumerRebalanceListener):  # type: ignore[misc]
    """Marks the stage ready once the group gave it its partitions (possibly none)."""

    def __init__(self, stage: IndexStage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.stage.ready = True
