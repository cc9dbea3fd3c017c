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
and acknowledged by the broker). While the SIEM is away, the sender keeps retrying and
this stage stops consuming once one more batch is buffered: Kafka is the durable buffer.
Replays overwrite documents with the same ``_id``.

Two loops share the work, so that fetching and mapping overlap the ``_bulk`` round trip:
the *reader* fetches records and maps them into the sink's buffer (at most
``siem.flush_max_docs`` waiting), the *sender* sends everything buffered in one
``_bulk``, dead-letters what the SIEM refused, and commits the offsets of the batches
that were wholly buffered before that ``_bulk`` began, in order. Idle, a record is sent
as soon as it is mapped; under load the batches grow while a ``_bulk`` is in flight, so
the requests get fewer and larger instead of one small request per fetch.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from aisoar.config import Settings
from aisoar.events import DeadLetter, encode
from streams import metrics
from streams.produce import kafka_client_options
from streams.stage_consumer import ReadyOnJoin, stage_consumer

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
        self._buffered: list[_Batch] = []  # mapped into the sink's buffer, not yet sent
        self._waiting = 0  # records in those batches
        self._ready = asyncio.Event()  # a batch was buffered
        self._room = asyncio.Event()  # the sender took the buffered batches
        self._committed: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        options = kafka_client_options(self.settings)
        self.producer = AIOKafkaProducer(
            **options,  # type: ignore[arg-type]
            acks="all",
            enable_idempotence=True,
            max_request_size=16 * 1024 * 1024,  # a refused document is dead-lettered whole
        )
        self.consumer = stage_consumer(
            self.settings,
            index_group(self.settings),
            isolation_level="read_committed",  # never index what a transaction aborted
            # A SIEM outage keeps one batch retrying for as long as it lasts; past this the
            # group moves on without us and the batch is read again after the rejoin.
            max_poll_interval_ms=30 * 60 * 1000,
        )
        await self.producer.start()
        await self.consumer.start()
        self.consumer.subscribe(indexed_topics(self.settings), listener=ReadyOnJoin(self))

    async def stop(self) -> None:
        self.ready = False
        if self.consumer is not None:
            await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()

    async def run(self) -> None:
        """Until cancelled (the worker stopping)."""
        await self.start()
        try:
            async with asyncio.TaskGroup() as tasks:  # either failing stops both, and the stage
                tasks.create_task(self._read())
                tasks.create_task(self._send())
        finally:
            await self.stop()

    async def _read(self) -> None:
        """Fetch and map batches into the sink's buffer while the sender sends the previous one."""
        assert self.consumer is not None
        siem = self.settings.siem
        while True:
            while self._waiting >= siem.flush_max_docs:  # backpressure: one batch ahead at most
                self._room.clear()
                await self._room.wait()
            batches = await self.consumer.getmany(timeout_ms=max(1, int(siem.flush_interval_s * 1000)),
                                                  max_records=siem.flush_max_docs - self._waiting)
            if not batches:
                continue
            batch = _Batch({tp: fetched[-1].offset + 1 for tp, fetched in batches.items()})
            records = [(tp.topic, record.value) for tp, fetched in batches.items() for record in fetched]

            async def dead_letter(dead: DeadLetter, batch: _Batch = batch) -> None:
                batch.dead.append(dead)

            await self.runtime.buffer_for_index(records, dead_letter)
            self._waiting += len(records)
            self._buffered.append(batch)
            self._ready.set()

    async def _send(self) -> None:
        """Send what is buffered, once the previous ``_bulk`` is done; commit what it covered."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            # Every document of these batches is in the sink's buffer (or was acknowledged by an
            # earlier flush), so once the flush below returns they are all acknowledged. It may
            # carry part of the batch the reader is mapping: that one is committed next round.
            covered, self._buffered = self._buffered, []
            self._waiting = 0
            self._room.set()
            dead: list[DeadLetter] = [letter for batch in covered for letter in batch.dead]

            async def refused(letter: DeadLetter, dead: list[DeadLetter] = dead) -> None:
                dead.append(letter)

            await self.runtime.flush_index(refused)
            await self._dead_letter_until_acknowledged(dead)
            await self._commit(covered)

    async def _dead_letter_until_acknowledged(self, dead: list[DeadLetter]) -> None:
        delay = 1.0
        while dead:
            try:
                acks = [await self._send_dead(letter) for letter in dead]
                await asyncio.gather(*acks)
                return
            except KafkaError as exc:  # the broker is away: the batch stays uncommitted meanwhile
                log.error("index stage could not dead-letter %d refused record(s) (%s); retrying in %.0fs",
                          len(dead), type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _commit(self, covered: list[_Batch]) -> None:
        assert self.consumer is not None
        offsets: dict[TopicPartition, int] = {}
        for batch in covered:
            for tp, offset in batch.offsets.items():
                # After a rebalance a partition may be read again from its committed offset:
                # never move a commit back.
                if offset > max(offsets.get(tp, -1), self._committed.get(tp, -1)):
                    offsets[tp] = offset
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
            self._committed.update(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            log.warning("index stage commit skipped after a rebalance (%s)", type(exc).__name__)

    async def _send_dead(self, dead: DeadLetter) -> asyncio.Future[Any]:
        assert self.producer is not None
        metrics.DEAD_LETTERS.labels(dead.topic, metrics.reason_label(dead.reason)).inc()
        log.warning("dead-lettered a record from %s: %s", dead.topic, dead.reason)
        return await self.producer.send(self.settings.topics.deadletter, encode(dead), key=dead.topic.encode())


@dataclass
class _Batch:
    """One fetch: the offsets to commit once its documents are acknowledged, and the
    records that could not be decoded (dead-lettered before that commit)."""

    offsets: dict[TopicPartition, int]
    dead: list[DeadLetter] = field(default_factory=list)
