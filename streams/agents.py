"""The agents: each is one ``async for`` over a topic that calls plain functions.

    ai.prompts ─┐
    ai.inference┴─ detect ──► aisoar.findings ─ correlate ──► aisoar.incidents ─ respond ──► aisoar.actions
    security.events ─────────────────────────── correlate ─┘
    invalid records ──► aisoar.deadletter
    findings, incidents, actions, dead letters ─ index ──► SIEM (_bulk, ECS; streams/index.py)
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import datetime, timezone
from typing import Any

import faust
import msgspec
from aiokafka.errors import KafkaError
from faust.streams import _current_event

from aisoar.actions import ActionRecord, Decision
from aisoar.events import DeadLetter, dead_letter, decode_security, encode
from aisoar.errors import DecodeError
from aisoar.findings import Finding
from aisoar.incidents import Incident, Suppression
from aisoar.pipeline import Outcome, RecordKind
from streams import metrics
from streams.app import app, settings
from streams.detect import DetectStage, correlation_key
from streams.index import IndexStage
from streams.offsets import InOrder, Record, read_range
from streams.produce import kafka_client_options
from streams.runtime import runtime
from streams.tables import correlate_topic
from streams.topics import (
    actions_topic,
    deadletter_topic,
    findings_topic,
    incidents_topic,
    inference_topic,
    prompts_topic,
    security_topic,
)

__all__ = ["correlate", "correlation_key", "detect_stage", "fan_out_findings", "fan_out_security",
           "index_stage", "respond_to_incidents"]

log = logging.getLogger(__name__)

_BATCH = settings.worker.batch_max
_WITHIN = settings.worker.batch_within_s
_finding_decoder = msgspec.json.Decoder(Finding)
_FINDING = {"aisoar-kind": b"finding"}
_SECURITY = {"aisoar-kind": b"security"}


def _source(topic: bytes, partition: int, offset: int) -> dict[str, bytes]:
    """Where a fanned-out record came from: the correlate agent's replay check."""
    return {"aisoar-src": topic + str(partition).encode(), "aisoar-src-offset": str(offset).encode()}
_incident_decoder = msgspec.json.Decoder(Incident)
_decision_decoder = msgspec.json.Decoder(Decision)
_suppression_decoder = msgspec.json.Decoder(Suppression)


async def publish_outcome(outcome: Outcome) -> None:
    if outcome.dead is not None:
        await publish_dead_letter(outcome.dead)
    if outcome.findings:
        detected = datetime.now(timezone.utc)
        metrics.MTTD_SECONDS.observe(max(0.0, (detected - outcome.findings[0].timestamp).total_seconds()))
    for finding in outcome.findings:
        finding = msgspec.structs.replace(finding, detected_at=detected)
        metrics.FINDINGS.labels(finding.rule_id, finding.severity).inc()
        await findings_topic.send(key=correlation_key(finding), value=encode(finding))


async def publish_dead_letter(dead: DeadLetter) -> None:
    metrics.DEAD_LETTERS.labels(dead.topic, metrics.reason_label(dead.reason)).inc()
    log.warning("dead-lettered a record from %s at offset %s: %s", dead.topic, dead.offset, dead.reason)
    await deadletter_topic.send(key=dead.topic.encode(), value=encode(dead))


async def publish_incidents(incidents: list[Incident]) -> None:
    for incident in incidents:
        metrics.INCIDENTS.labels(incident.rule_id, incident.status).inc()
        await incidents_topic.send(key=incident.id.encode(), value=encode(incident))


async def publish_action(record: ActionRecord) -> None:
    metrics.ACTIONS.labels(record.action, record.status).inc()
    await actions_topic.send(key=record.idempotency_key.encode(), value=encode(record))


def _detect_agent(kind: RecordKind) -> Callable[[faust.StreamT[bytes]], Coroutine[Any, Any, None]]:
    topic_name = {"prompt": settings.topics.prompts, "inference": settings.topics.inference}[kind]

    async def detect(stream: faust.StreamT[bytes]) -> None:
        pipeline = runtime.pipeline
        in_counter = metrics.EVENTS_IN.labels(topic_name)
        seconds = metrics.DETECT_SECONDS.labels(kind)
        async for batch in stream.take_events(_BATCH, within=_WITHIN):
            for event in batch:
                started = time.perf_counter()
                outcome = pipeline.process(kind, event.value, partition=event.message.partition,
                                           offset=event.message.offset, key=event.key)
                seconds.observe(time.perf_counter() - started)
                in_counter.inc()
                await publish_outcome(outcome)

    detect.__name__ = f"detect_{kind}"
    return detect


if settings.worker.processing_guarantee == "exactly_once":
    # Faust's transactions cover what its agents produce: detection stays an agent in this mode.
    detect_prompts = app.agent(prompts_topic, name="detect-prompts")(_detect_agent("prompt"))
    detect_inference = app.agent(inference_topic, name="detect-inference")(_detect_agent("inference"))
    detect_stage: DetectStage | None = None
else:
    # At-least-once (the default): the leaner batch consumer of streams/detect.py (why: its docstring).
    detect_stage = DetectStage(settings, lambda: runtime.pipeline, containment_backlog=lambda: containment_backlog())

    @app.task
    async def run_detect_stage() -> None:
        assert detect_stage is not None
        await detect_stage.run()


def containment_backlog() -> int:
    """Records this worker's fan-out and correlate agents have yet to take: on their
    assigned partitions past the offset Faust last handed to a stream, plus those waiting
    in the streams' queues. The detect stage waits while it is high (streams/detect.py).
    Faust's consumer fetches on a thread of its own: under load the backlog is mostly
    still in Kafka, so the queues alone would not show it. Respond is left out: it waits
    on the identity server, registry and on-call, and their outage must not slow detection."""
    consumer = app.consumer
    total = 0
    topics = {findings_topic.get_topic_name(), security_topic.get_topic_name(),
              correlate_topic.get_topic_name()}
    for tp in consumer.assignment():
        if tp.topic in topics:
            highwater, read = consumer.highwater(tp), consumer._read_offset[tp]
            if highwater is not None and read is not None:
                total += max(0, highwater - read - 1)
    for agent in (fan_out_findings, fan_out_security, correlate):
        for actor in list(agent._actors):  # Faust keeps no public list of an agent's streams
            total += actor.stream.channel.queue.qsize()
    return total


metrics.CONTAINMENT_BACKLOG.set_function(metrics.or_minus_one(containment_backlog))


def _in_order() -> InOrder:
    options = kafka_client_options(settings)
    return InOrder(app, lambda tp, start, end: read_range(options, tp, start, end))


def _records(event: faust.types.EventT) -> Record:
    message = event.message
    return Record(message.partition, message.offset, event.key, event.value, dict(event.headers or {}))


async def _in_offset_order(event: faust.types.EventT, order: InOrder) -> list[Record]:
    """The records Faust dropped before ``event`` on its partition (read from Kafka), then it:
    correlation recognises replays by offset, so each partition goes in order (streams/offsets.py)."""
    return [*await order.missing_before(event.message.tp, event.message.offset), _records(event)]


async def _fan_out_security_one(record: Record) -> None:
    metrics.EVENTS_IN.labels(settings.topics.security).inc()
    try:
        security_event = decode_security(record.value)
    except DecodeError as exc:
        await publish_dead_letter(dead_letter(settings.topics.security, record.value, exc.reason,
                                              partition=record.partition, offset=record.offset, key=record.key))
        return
    source = _source(b"s", record.partition, record.offset)
    for key in runtime.correlator.keys_for_event(security_event):
        await correlate_topic.send(key=key.encode(), value=record.value, headers={**_SECURITY, **source})


@app.agent(security_topic, name="fan-out-security")
async def fan_out_security(stream: faust.StreamT[bytes]) -> None:
    order = _in_order()
    async for event in stream.events():
        for record in await _in_offset_order(event, order):
            await _fan_out_security_one(record)


@app.agent(findings_topic, name="fan-out-findings")
async def fan_out_findings(stream: faust.StreamT[bytes]) -> None:
    """One record per correlation key, so each key's state changes on its own partition."""
    order = _in_order()
    async for event in stream.events():
        for record in await _in_offset_order(event, order):
            finding = _finding_decoder.decode(record.value)
            source = _source(b"f", record.partition, record.offset)
            for key in runtime.correlator.keys_for(finding):
                await correlate_topic.send(key=key.encode(), value=record.value, headers={**_FINDING, **source})


async def _correlate_one(record: Record) -> None:
    headers, key = record.headers, (record.key or b"").decode()
    kind = headers.get("aisoar-kind", b"")
    correlator, stamps = runtime.correlator, runtime.stamps
    stamps.source = None
    if kind in (b"finding", b"security"):
        # A replay after a crash (at-least-once) of a record this key already includes.
        source, offset = headers["aisoar-src"].decode(), int(headers["aisoar-src-offset"])
        if stamps.applied(key, source) >= offset:
            return
        stamps.source, stamps.offset = source, offset
    if kind == b"finding":
        finding = _finding_decoder.decode(record.value)
        runtime.saw_event_time(finding.timestamp)
        incidents = correlator.process_finding(finding, keys=[key])
    elif kind == b"security":
        incidents = correlator.process_security_event(decode_security(record.value), keys=[key])
    elif kind == b"suppress":  # an analyst mutes a rule on this key (aisoar incidents suppress)
        suppression = _suppression_decoder.decode(record.value)
        correlator.suppress(suppression.rule_id, suppression.correlation_key, suppression.until)
        log.info("rule %s suppressed on %s until %s by %s", suppression.rule_id, suppression.correlation_key,
                 suppression.until.isoformat(), suppression.actor)
        return
    elif kind == b"tick":  # housekeeping for the keys of this partition, in stream context
        now = datetime.fromisoformat(record.value.decode())
        incidents = correlator.close_stale(now, keys=runtime.keys_of_partition(record.partition))
    else:
        return
    await publish_incidents(incidents)


@app.agent(correlate_topic, name="correlate")
async def correlate(stream: faust.StreamT[bytes]) -> None:
    """One record at a time. Its table changes are held (``StampedTable.hold``) while it is
    processed, so the key's stamps and state are read and decoded once, and written
    (encoded, one changelog record) once, after its incidents are sent: before, the
    replay check, the state read, the suppression reads and the write each read the table
    and split the stamps again. Holding the writes of a run of records and acknowledging
    them together was tried and dropped: in the bench's mix a key rarely repeats within a
    run (9,122 changelog records for 9,148 fanned-out records, against 9,130 one record at a
    time), so it saved no writes and only held commits back."""
    order = _in_order()
    stamps = runtime.stamps
    async for event in stream.events():
        stamps.hold()
        try:
            for record in await _in_offset_order(event, order):
                await _correlate_one(record)
            stamps.flush()
        finally:
            stamps.drop()  # after an error: nothing of the record is written


async def _respond_one(event: faust.types.EventT) -> None:
    kind = dict(event.headers or {}).get("aisoar-kind", b"incident")
    if kind == b"incident":
        await runtime.respond(_incident_decoder.decode(event.value))
    elif kind == b"decision":
        await runtime.decide(_decision_decoder.decode(event.value))


class _Lanes:
    """Each key's records in order, independent keys concurrently, every record acknowledged
    as soon as it is done.

    A record is acknowledged only after the playbook engine finished it, so a crash replays
    what was unfinished (the ledger makes that safe), and the worker's commit never passes
    an unfinished record (streams/offsets.py holds it back behind the lowest one). Unlike
    batches that wait for all of their incidents, a slow action (a registry rollback takes
    ~1-2 s) holds up only the later records of its own key, not the revocations of others.
    Faust writes a table change to the changelog partition of the *current event*, a
    context variable: each key's task sets it to its own event (the task's context is a
    copy), so the ledger entries of incidents on different partitions never mix."""

    def __init__(self, stream: faust.StreamT[bytes], concurrency: int, max_in_flight: int,
                 handle: Callable[[faust.types.EventT], Awaitable[None]]) -> None:
        self.stream = stream
        self.handle = handle
        self.slots = asyncio.Semaphore(concurrency)
        self.room = asyncio.Semaphore(max_in_flight)  # bounded: past it the agent stops taking records
        self.lanes: dict[bytes | None, collections.deque[faust.types.EventT]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.failure: BaseException | None = None

    async def submit(self, event: faust.types.EventT) -> None:
        if self.failure is not None:
            raise self.failure
        await self.room.acquire()
        lane = self.lanes.get(event.key)
        if lane is not None:
            lane.append(event)
            return
        self.lanes[event.key] = collections.deque([event])
        task = asyncio.ensure_future(self._drain(event.key))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _drain(self, key: bytes | None) -> None:
        lane = self.lanes[key]
        try:
            while lane:
                event = lane[0]
                async with self.slots:
                    _current_event.set(weakref.ref(event))
                    await self.handle(event)
                await self.stream.ack(event)
                lane.popleft()
                self.room.release()
        except Exception as exc:  # raised by the agent at its next record: Faust restarts it
            self.failure = exc
        finally:
            del self.lanes[key]

    def cancel(self) -> None:
        for task in list(self.tasks):
            task.cancel()


@app.agent(incidents_topic, name="respond")
async def respond_to_incidents(stream: faust.StreamT[bytes]) -> None:
    """Incidents, and approval decisions about them (same key, so the same partition
    holds the incident's ledger), through the playbook engine.

    Independent incidents proceed concurrently (a revocation waits ~0.2-1 s on the
    identity server; one at a time, a burst of incidents queued behind each other): each
    key's records in order, up to ``playbooks.concurrency`` keys at once (``_Lanes``).
    The engine locks per idempotency / effect key, so incidents naming the same
    credential still act once."""
    concurrency = max(1, settings.playbooks.concurrency)
    manual = stream.noack()  # acknowledged by _Lanes, each record once done
    lanes = _Lanes(manual, concurrency, max_in_flight=4 * concurrency, handle=_respond_one)
    try:
        async for event in manual.events():
            await lanes.submit(event)
    finally:
        lanes.cancel()


runtime.emit = publish_action


#: Indexing runs outside Faust, in a consumer group of its own (why: streams/index.py).
index_stage: IndexStage | None = IndexStage(settings, runtime) if settings.siem.url else None


@app.task
async def run_index_stage() -> None:
    if index_stage is not None:
        await index_stage.run()


@app.timer(interval=30.0)
async def housekeeping() -> None:
    """Ask this worker's correlation partitions to close idle incidents: tables change only
    while a record is processed, so this sends a tick record rather than writing here."""
    if runtime.latest_event_time is None:
        return
    now = runtime.latest_event_time.isoformat().encode()
    assigned = app.consumer.assignment() if app.consumer is not None else set()
    for tp in assigned:
        if tp.topic == correlate_topic.get_topic_name():
            try:
                await runtime.send_control(tp.topic, now, partition=tp.partition, kind=b"tick")
            except KafkaError as exc:
                # Broker unreachable (restart, outage): an exception here would crash the whole
                # app (Faust timers are app tasks). A skipped tick is harmless: the next one
                # (30 s) closes the same idle incidents.
                log.warning("housekeeping: tick not sent (%s); retried at the next interval", type(exc).__name__)
                return


#: Playbook control records (approval decisions, timer ticks), keyed / partitioned like the
#: incidents topic and so like the ledger table: the tick of partition p touches only partition
#: p's approvals and verifications, in stream context (tables change only while a record is processed).
playbook_control_topic = app.topic(f"{settings.topics.incidents}.control", key_type=bytes, value_type=bytes,
                                   key_serializer="raw", value_serializer="raw",
                                   partitions=settings.topics.partitions)


@app.agent(playbook_control_topic, name="playbook-control")
async def playbook_control(stream: faust.StreamT[bytes]) -> None:
    """Approval decisions and timer ticks, one at a time: a decision and the expiry of the
    same approval never interleave."""
    async for event in stream.events():
        kind = dict(event.headers or {}).get("aisoar-kind")
        if kind == b"decision":
            await runtime.decide(_decision_decoder.decode(event.value))
        elif kind == b"tick":
            await runtime.playbook_tick(event.message.partition, datetime.fromisoformat(event.value.decode()))


@app.timer(interval=settings.playbooks.check_interval_s)
async def playbook_housekeeping() -> None:
    """Pending approvals expire and verifications fall due on wall-clock time."""
    now = datetime.now(timezone.utc).isoformat().encode()
    assigned = app.consumer.assignment() if app.consumer is not None else set()
    for tp in assigned:
        if tp.topic == playbook_control_topic.get_topic_name():
            try:
                await runtime.send_control(tp.topic, now, partition=tp.partition, kind=b"tick")
            except Exception as exc:  # noqa: BLE001 -- a timer that raises stops the app; the next tick retries
                log.warning("playbook tick not sent (%s); retried at the next interval", type(exc).__name__)
                return
