"""The detect stage: input topics → :class:`~aisoar.pipeline.Pipeline` → findings and dead letters.

Every input record passes through here, so its per-record cost bounds the worker.
It runs on a plain aiokafka consumer and producer inside the worker's event loop
rather than as a Faust agent: py-spy of the Faust agent (bench/README.md) put
detection at 28% of the worker's main thread and Faust's per-message machinery
(fetcher hand-off from the consumer thread, stream drainer, per-event ack and
sensor calls, one ``Topic.send`` per finding) at most of the rest. Here a batch
of up to ``worker.batch_max`` records is fetched with one ``getmany``, run
through the pipeline, its findings and dead letters handed to the producer at
once, and the batch's offsets committed after the broker acknowledged every one
of them. The stage keeps no Kafka-backed state (the behaviour detectors hold
theirs in memory, as in the agent), so it needs nothing from Faust's tables.

Containment first. Detection shares the worker's event loop (one core) with the
Faust agents that turn findings into contained incidents (fan-out, correlate,
respond). A CPU-bound batch yields every ``_YIELD_EVERY`` records, but then only
for one step of each agent: under more load than the worker can take, the agents
fell minutes behind while detection ran ahead (at 5,000 events/s a finding took
30-80 s per hop to reach respond; bench/README.md). So while more than
``worker.containment_backlog_max`` records wait for fan-out and correlation
(respond is left out: it waits on outside servers, whose outage must not slow
detection; see ``streams.agents.containment_backlog``), the stage pauses, at
most ``worker.containment_max_pause_s`` at a time, and the input waits in Kafka,
which is durable; ``aisoar_detect_paused_seconds_total`` counts the pauses.

Guarantee: at-least-once, as the rest of the worker. A crash between the
produce acknowledgements and the commit replays the batch; findings have
deterministic ids, which correlation and the SIEM (document ``_id``) dedupe.
It uses its own consumer group, ``<worker.id>.detect``: Faust's group runs its
own assignor protocol, which a plain consumer cannot join.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from aisoar.config import Settings
from aisoar.events import DeadLetter, encode
from aisoar.findings import Finding
from aisoar.pipeline import Pipeline, RecordKind
from streams import metrics
from streams.produce import kafka_client_options
from streams.stage_consumer import ReadyOnJoin, stage_consumer

__all__ = ["DetectStage", "correlation_key", "detect_group"]

log = logging.getLogger(__name__)

#: Records between two yields to the event loop, so the other agents, heartbeats and
#: the web server run while a large batch is being detected.
_YIELD_EVERY = 64


def detect_group(settings: Settings) -> str:
    """The consumer group of the detect stage (its offsets on the input topics)."""
    return f"{settings.worker.id}.detect"


def correlation_key(finding: Finding) -> bytes:
    """Findings are keyed by the entity correlation groups on, so that entity's state
    stays on one partition: the principal, else the model version, else the session."""
    e = finding.entities
    if e.principal:
        return f"principal:{e.principal}".encode()
    if e.model_name:
        return f"model:{e.model_name}@{e.model_version}".encode()
    return f"session:{e.session_id}".encode()


class DetectStage:
    """Consume ``ai.prompts`` and ``ai.inference`` in batches; produce findings and dead letters."""

    def __init__(self, settings: Settings, pipeline: Callable[[], Pipeline],
                 containment_backlog: Callable[[], int] | None = None) -> None:
        self.settings = settings
        #: Records waiting for this worker's containment agents (None: never pause).
        self.containment_backlog = containment_backlog
        self._pipeline = pipeline  # built on start: compiling the detectors takes seconds
        self.pipeline: Pipeline | None = None
        t = settings.topics
        self.kinds: dict[str, RecordKind] = {t.prompts: "prompt", t.inference: "inference"}
        self.ready = False  # joined the group (for /healthz)
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        # Prometheus children bound once: ``labels()`` per record was visible in the profile.
        self._in = {topic: metrics.EVENTS_IN.labels(topic) for topic in self.kinds}
        self._seconds = {kind: metrics.DETECT_SECONDS.labels(kind) for kind in self.kinds.values()}
        self._findings: dict[tuple[str, str], Any] = {}

    async def start(self) -> None:
        self.pipeline = self._pipeline()
        options = kafka_client_options(self.settings)
        self.producer = AIOKafkaProducer(
            **options,  # type: ignore[arg-type]
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=512 * 1024,
            max_request_size=16 * 1024 * 1024,  # dead letters carry the refused record's bytes
        )
        self.consumer = stage_consumer(self.settings, detect_group(self.settings))
        await self.producer.start()
        await self.consumer.start()
        self.consumer.subscribe(list(self.kinds), listener=ReadyOnJoin(self))

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
        try:
            while True:
                batches = await self.consumer.getmany(timeout_ms=200, max_records=self.settings.worker.batch_max)
                if batches:
                    await self.process(batches)
        finally:
            await self.stop()

    async def process(self, batches: dict[TopicPartition, list[Any]]) -> None:
        """Detect on one fetched batch, send its outputs, commit once all are acknowledged."""
        assert self.consumer is not None and self.producer is not None and self.pipeline is not None
        pipeline, perf = self.pipeline, time.perf_counter
        acks: list[asyncio.Future[Any]] = []
        await self.make_way()
        try:
            n = 0
            for tp, records in batches.items():
                kind = self.kinds[tp.topic]
                seconds = self._seconds[kind]
                self._in[tp.topic].inc(len(records))
                for record in records:
                    started = perf()
                    outcome = pipeline.process(kind, record.value, partition=tp.partition, offset=record.offset,
                                               key=record.key)
                    seconds.observe(perf() - started)
                    if outcome.dead is not None:
                        acks.append(await self._send_dead(outcome.dead))
                    if outcome.findings:
                        acks.extend(await self._send_findings(outcome.findings))
                    n += 1
                    if n % _YIELD_EVERY == 0:
                        await self.make_way()
            if acks:
                await asyncio.gather(*acks)
        except KafkaError as exc:
            # Not acknowledged: process the batch again (at-least-once; findings dedupe downstream).
            log.error("detect stage could not produce (%s); retrying the batch", type(exc).__name__)
            for tp, records in batches.items():
                self.consumer.seek(tp, records[0].offset)
            await asyncio.sleep(1.0)
            return
        try:
            await self.consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance moved partitions away meanwhile: their new owner processes the batch
            # again from the last commit (at-least-once; duplicates are recognised downstream).
            log.warning("detect stage commit skipped after a rebalance (%s)", type(exc).__name__)

    async def make_way(self) -> None:
        """Yield to the event loop; while containment is behind, wait for it (bounded)."""
        await asyncio.sleep(0)
        backlog, limit = self.containment_backlog, self.settings.worker.containment_backlog_max
        if backlog is None or limit <= 0:
            return
        try:
            if backlog() <= limit:
                return
        except Exception as exc:  # noqa: BLE001 -- e.g. Faust internals moved: detect on, unpaused
            log.warning("containment backlog unreadable (%s); the detect stage no longer pauses for it",
                        type(exc).__name__)
            self.containment_backlog = None
            return
        started = time.monotonic()
        deadline = started + self.settings.worker.containment_max_pause_s
        while backlog() > limit and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        metrics.DETECT_PAUSED_SECONDS.inc(time.monotonic() - started)

    async def _send_findings(self, findings: list[Finding]) -> list[asyncio.Future[Any]]:
        assert self.producer is not None
        detected = datetime.now(timezone.utc)
        metrics.MTTD_SECONDS.observe(max(0.0, (detected - findings[0].timestamp).total_seconds()))
        topic = self.settings.topics.findings
        futures = []
        for finding in findings:
            finding = msgspec.structs.replace(finding, detected_at=detected)
            counter = self._findings.get((finding.rule_id, finding.severity))
            if counter is None:
                counter = self._findings[(finding.rule_id, finding.severity)] = metrics.FINDINGS.labels(
                    finding.rule_id, finding.severity)
            counter.inc()
            futures.append(await self.producer.send(topic, encode(finding), key=correlation_key(finding)))
        return futures

    async def _send_dead(self, dead: DeadLetter) -> asyncio.Future[Any]:
        assert self.producer is not None
        metrics.DEAD_LETTERS.labels(dead.topic, metrics.reason_label(dead.reason)).inc()
        log.warning("dead-lettered a record from %s at offset %s: %s", dead.topic, dead.offset, dead.reason)
        return await self.producer.send(self.settings.topics.deadletter, encode(dead), key=dead.topic.encode())
