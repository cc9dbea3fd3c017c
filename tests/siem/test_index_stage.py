"""The index stage (streams/index.py) against the real Kafka and OpenSearch of the stack.

The SIEM is reached through a TCP relay this test can close and reopen: an outage with
real connections refused, in front of a real OpenSearch node (shared with other tests, so
it cannot be stopped here). What is checked is the stage's promise: offsets are committed
only for documents ``_bulk`` acknowledged, refused or undecodable records are
dead-lettered, while the SIEM is away the stage reads at most one batch ahead (Kafka
buffers the rest), and afterwards everything is indexed once, by ``_id``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from aisoar.config import KafkaSettings, Settings, SiemSettings, TopicSettings, WorkerSettings
from aisoar.findings import Entities
from aisoar.incidents import Incident
from stack.services.base import free_port
from streams.admin import ensure_topics
from streams.index import IndexStage, index_group
from streams.produce import kafka_client_options, produce_records
from streams.siem import IndexLayout, SiemSink, make_client
from tests.e2e.kafka_io import read_topic

from .conftest import make_finding

pytestmark = pytest.mark.integration


@dataclass
class Relay:
    """A TCP relay to the SIEM that can be taken down (connections refused) and brought back."""

    target_host: str
    target_port: int
    port: int = field(default_factory=free_port)
    server: asyncio.base_events.Server | None = None
    open_streams: list[asyncio.StreamWriter] = field(default_factory=list)

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def down(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.open_streams:  # the keep-alive connections die too
            writer.close()
        self.open_streams.clear()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.close()
            return
        self.open_streams += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        with contextlib.suppress(asyncio.CancelledError):  # the test's loop closing
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def relay(opensearch_url: str) -> AsyncIterator[Relay]:
    host, port = opensearch_url.rsplit("//", 1)[1].rstrip("/").split(":")
    relay = Relay(host, int(port))
    await relay.up()
    yield relay
    if relay.server is not None and relay.server.is_serving():
        await relay.down()


def _settings(kafka_bootstrap: str, siem_url: str, *, flush_max_docs: int) -> Settings:
    tag = f"ix{uuid.uuid4().hex[:10]}"
    topics = {name: f"{tag}.{name}" for name in ("prompts", "inference", "security", "findings", "incidents",
                                                  "actions", "deadletter")}
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=kafka_bootstrap),
        topics=TopicSettings(**topics, partitions=2),
        siem=SiemSettings(url=siem_url, index_prefix=tag, flush_max_docs=flush_max_docs, flush_interval_s=0.05),
        worker=WorkerSettings(id=f"aisoar-{tag}"),
    )


def _incident(n: int, revision: int) -> Incident:
    at = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    return Incident(
        id=f"inc-{n}", rule_id="incident.secret_leak", rule_name="Secret leak", status="open", severity="high",
        risk_score=73.0, first_seen=at, last_seen=at + timedelta(seconds=revision), entities=Entities(user_id="alice"),
        correlation_key=f"session:s{n}", finding_count=revision, revision=revision,
    )


async def _committed(settings: Settings) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(**kafka_client_options(settings))  # type: ignore[arg-type]
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(index_group(settings))
        return {tp: meta.offset for tp, meta in offsets.items() if meta is not None and meta.offset >= 0}
    finally:
        await admin.close()


async def _count(settings: Settings, kind: str) -> int:
    assert settings.siem.url
    sink = SiemSink(make_client(settings.siem.url), layout=IndexLayout(prefix=settings.siem.index_prefix))
    try:
        await sink.refresh(kind)
        return await sink.count(kind)
    finally:
        await sink.aclose()


async def _drop_indices(settings: Settings) -> None:
    assert settings.siem.url
    client = make_client(settings.siem.url)
    try:
        await client.delete(f"/{settings.siem.index_prefix}-*")
        await client.delete(f"/_index_template/{settings.siem.index_prefix}-*")
    finally:
        await client.aclose()


async def _wait_committed(settings: Settings, total: int, timeout: float) -> dict[TopicPartition, int]:
    """The group's committed offsets once they add up to ``total`` records."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            committed = await _committed(settings)
        except KafkaError:  # a fresh broker: the group coordinator is not elected yet
            committed = {}
        if sum(committed.values()) == total:
            return committed
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"committed {sum(committed.values())} of {total} records after {timeout:.0f}s")
        await asyncio.sleep(0.25)


async def _search(settings: Settings, kind: str) -> list[dict[str, Any]]:
    assert settings.siem.url
    sink = SiemSink(make_client(settings.siem.url), layout=IndexLayout(prefix=settings.siem.index_prefix))
    try:
        await sink.refresh(kind)
        return await sink.search(kind, size=1000)
    finally:
        await sink.aclose()


async def test_outage_commits_nothing_unacknowledged_reads_one_batch_ahead_then_indexes_everything(
    kafka_bootstrap: str, opensearch_url: str, relay: Relay
) -> None:
    from streams.runtime import Runtime

    batch = 200
    settings = _settings(kafka_bootstrap, f"http://127.0.0.1:{relay.port}", flush_max_docs=batch)
    direct = msgspec.structs.replace(settings, siem=msgspec.structs.replace(settings.siem, url=opensearch_url))
    t = settings.topics
    await ensure_topics(settings)
    stage = IndexStage(settings, Runtime(settings))
    running = asyncio.create_task(stage.run())
    try:
        # Warm-up: templates installed, one finding indexed and committed through the relay.
        await produce_records(settings, [(t.findings, b"warm", msgspec.json.encode(make_finding(-1)))])
        before = await _wait_committed(settings, 1, 60)
        assert await _count(direct, "finding") == 1

        await relay.down()
        findings = [make_finding(n) for n in range(1500)]
        revisions = [_incident(n, revision) for n in range(40) for revision in (1, 2, 3)]
        garbage = [b"not json", b'{"id": 1}']  # undecodable: dead-lettered, never indexed
        records = [(t.findings, f.id.encode(), msgspec.json.encode(f)) for f in findings]
        records += [(t.incidents, i.id.encode(), msgspec.json.encode(i)) for i in revisions]
        records += [(t.findings, b"bad", raw) for raw in garbage]
        await produce_records(settings, records)
        await asyncio.sleep(5.0)  # the sender retries its batch; the reader maps one more and waits

        assert await _committed(settings) == before, "nothing may be committed while the SIEM acknowledged nothing"
        assert stage.consumer is not None
        read = sum([await stage.consumer.position(tp) for tp in stage.consumer.assignment()])
        # The warm-up record, the batch being retried and one batch mapped ahead: Kafka holds the rest.
        assert 1 + batch <= read <= 1 + 2 * batch, f"the stage read {read} records while the SIEM was away"
        assert await _count(direct, "finding") == 1

        await relay.up()
        # Every record, and the dead letters too: the stage indexes the dead-letter topic as well.
        await _wait_committed(settings, 1 + len(records) + len(garbage), 120)
        assert await _count(direct, "finding") == 1 + len(findings)
        assert await _count(direct, "deadletter") == len(garbage)
        incidents = await _search(direct, "incident")
        assert len(incidents) == 40  # one document per incident id: revisions overwrite
        assert {hit["_source"]["aisoar"]["incident"]["revision"] for hit in incidents} == {3}
        dead = await read_topic(settings, t.deadletter, expect=len(garbage), timeout=30)
        assert sorted(base64.b64decode(msgspec.json.decode(r.value)["payload_b64"]) for r in dead) == sorted(garbage)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await _drop_indices(direct)
