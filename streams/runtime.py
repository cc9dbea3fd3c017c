"""The plain objects the agents call: pipeline, SIEM sink, correlator, playbook engine.

Built once per worker process, lazily (HTTP clients need the running loop).
Agents stay thin: they move bytes between topics and call these.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any

import msgspec

from aisoar.actions import ActionRecord, Decision
from aisoar.config import Settings, read_secret
from aisoar.errors import SinkError
from aisoar.events import DeadLetter, dead_letter
from aisoar.findings import Finding
from aisoar.incidents import Incident
from aisoar.pipeline import Pipeline
from streams import metrics
from streams.app import settings

__all__ = ["Runtime", "runtime"]

log = logging.getLogger(__name__)

PublishIncidents = Callable[[list[Incident]], Awaitable[None]]
PublishAction = Callable[[ActionRecord], Awaitable[None]]


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sink_installed = False
        self._control: Any = None
        t = settings.topics
        self._decoders: dict[str, tuple[str, msgspec.json.Decoder[Any]]] = {
            t.findings: ("finding", msgspec.json.Decoder(Finding)),
            t.incidents: ("incident", msgspec.json.Decoder(Incident)),
            t.actions: ("action", msgspec.json.Decoder(ActionRecord)),
            t.deadletter: ("deadletter", msgspec.json.Decoder(DeadLetter)),
        }

    @cached_property
    def pipeline(self) -> Pipeline:
        t = self.settings.topics
        return Pipeline.default(policy_dir=self.settings.worker.policy_dir,
                                topics={"prompt": t.prompts, "inference": t.inference, "security": t.security})

    @cached_property
    def sink(self) -> Any:
        if not self.settings.siem.url:
            return None
        from streams.siem import IndexLayout, SiemSink, make_client

        s = self.settings.siem
        client = make_client(s.url, username=s.username, password=read_secret("siem", "password", self.settings),
                             api_key=read_secret("siem", "api_key", self.settings), ca_file=s.ca_file, verify=s.verify)
        return SiemSink(client, layout=IndexLayout(prefix=s.index_prefix), max_docs=s.flush_max_docs,
                        max_age=s.flush_interval_s, max_buffer_docs=4 * max(s.flush_max_docs, self.settings.worker.batch_max))

    @cached_property
    def stamps(self) -> Any:
        from streams.tables import correlation_store

        return correlation_store()

    @cached_property
    def correlator(self) -> Any:
        from streams.correlation import Correlator, EncodedStore
        from streams.tables import context_table

        return Correlator(self.stamps, context=EncodedStore(context_table))

    def keys_of_partition(self, partition: int) -> list[str]:
        """Store keys owned by ``partition``: those whose correlation key Kafka's default
        partitioner puts there (``suppress:<rule>:<key>`` belongs to ``<key>``)."""
        from aiokafka.partitioner import murmur2

        from streams.correlation import Correlator
        from streams.tables import correlation_table

        n = self.settings.topics.partitions
        return [key for key in list(correlation_table.keys())
                if (murmur2(Correlator.owner(key).encode()) & 0x7FFFFFFF) % n == partition]

    #: The newest event time correlated by this worker: incidents age on event time, so a
    #: backlog being worked off does not close incidents early.
    latest_event_time: datetime | None = None

    def saw_event_time(self, at: datetime) -> None:
        if self.latest_event_time is None or at > self.latest_event_time:
            self.latest_event_time = at

    async def send_control(self, topic: str, value: bytes, *, key: bytes | None = None,
                           partition: int | None = None, kind: bytes) -> None:
        """Send a control record (housekeeping tick, approval decision) outside Faust.

        Faust in exactly-once mode puts a send that happens outside a stream event into
        a transaction it never commits; the open transaction would pin the partition's
        last stable offset and hide every later record from read_committed readers.
        """
        if self._control is None:
            from aiokafka import AIOKafkaProducer

            from streams.produce import kafka_client_options

            producer = AIOKafkaProducer(**kafka_client_options(self.settings), acks="all",  # type: ignore[arg-type]
                                        enable_idempotence=True)
            try:
                await producer.start()
            except BaseException:
                await producer.stop()  # not kept: the next call starts a fresh one (broker back)
                raise
            self._control = producer
        await self._control.send_and_wait(topic, value, key=key, partition=partition,
                                          headers=[("aisoar-kind", kind)])

    # -- playbooks ------------------------------------------------------------

    #: Where action audit records go (set by the agents module: Kafka ``aisoar.actions``).
    emit: PublishAction | None = None

    @cached_property
    def engine(self) -> Any:
        import httpx

        from playbooks.connections import AlertmanagerSettings, Connections, MlflowSettings, OAuthSettings
        from playbooks.credentials import FileCredentialStore, InMemoryCredentialStore
        from playbooks.engine import Engine
        from playbooks.loader import DEFAULT_DIR, load_playbooks
        from playbooks.policy import Policy
        from streams.tables import PrefixedTable, ledger_table

        s = self.settings
        oauth = None
        secret = read_secret("identity", "client_secret", s)
        if s.identity.issuer_url and s.identity.client_id and secret:
            oauth = OAuthSettings.from_issuer(s.identity.issuer_url, s.identity.client_id, secret)
            if s.identity.revocation_endpoint or s.identity.introspection_endpoint:
                oauth = msgspec.structs.replace(
                    oauth, revocation_endpoint=s.identity.revocation_endpoint or oauth.revocation_endpoint,
                    introspection_endpoint=s.identity.introspection_endpoint or oauth.introspection_endpoint)
        connections = Connections(
            oauth=oauth,
            mlflow=MlflowSettings(url=s.registry.mlflow_url) if s.registry.mlflow_url else None,
            alertmanager=AlertmanagerSettings(
                url=s.oncall.alertmanager_url,
                approvals_url=s.oncall.approval_base_url
                or f"{s.playbooks.approvals_url}/approvals",  # https when the listener has TLS
            ) if s.oncall.alertmanager_url else None,
        )
        vault = os.environ.get("AISOAR_CREDENTIAL_VAULT")
        credentials = FileCredentialStore(vault) if vault else InMemoryCredentialStore()
        return Engine(
            load_playbooks([s.playbooks.dir or DEFAULT_DIR]),
            client=httpx.AsyncClient(timeout=10.0),
            connections=connections,
            credentials=credentials,
            emit=self._emit,
            policy=Policy(kill_switch=s.playbooks.kill_switch, dry_run=s.playbooks.dry_run,
                          approval_ttl_s=s.playbooks.approval_ttl_s),
            ledger_store=PrefixedTable(ledger_table, "ledger:"),
            approvals_store=PrefixedTable(ledger_table, "approval:"),
            verifications_store=PrefixedTable(ledger_table, "verify:"),
            write_ahead=self._flush_changelog,
        )

    async def _flush_changelog(self) -> None:
        """The ledger's "pending" reaches its Kafka changelog before the engine acts: after a
        crash right after acting, the restarted worker finds "pending" and re-checks the target."""
        from streams.app import app

        await app.producer.flush()

    async def _emit(self, record: ActionRecord) -> None:
        if self.emit is not None:
            await self.emit(record)

    async def respond(self, incident: Incident) -> None:
        await self.engine.handle_incident(incident)

    async def decide(self, decision: Decision) -> None:
        """Apply an approval decision; an unknown or already decided action is logged, not fatal."""
        try:
            if decision.approve:
                await self.engine.approve(decision.action_id, decision.actor, now=decision.at)
            else:
                await self.engine.deny(decision.action_id, decision.actor, now=decision.at)
        except KeyError:
            log.warning("decision for unknown or already decided action %s by %s", decision.action_id, decision.actor)

    async def playbook_tick(self, partition: int, now: datetime) -> None:
        """Expire pending approvals and run due verifications of the incidents of ``partition``
        of the incidents topic. Only those: Faust writes a table change to the changelog
        partition of the event being processed (this tick's), so touching another
        partition's ledger entries would resurrect them at the next recovery."""
        from aiokafka.partitioner import murmur2

        n = self.settings.topics.partitions

        def owns(incident_id: str) -> bool:  # Kafka's default partitioner on the incident key
            return (murmur2(incident_id.encode()) & 0x7FFFFFFF) % n == partition

        await self.engine.expire(now, owns=owns)
        await self.engine.verify_due(now, self.signals, owns=owns)

    @cached_property
    def signals(self) -> Any:
        """Verify-after-acting reads the findings the SIEM holds (the same on every worker)."""
        from playbooks.verification import FindingsSignals

        sink = self.sink

        async def count(query: Any) -> int:
            if sink is None:
                raise LookupError("no SIEM configured: verification has no signal to read")
            return int(await sink.count("finding", query))

        return FindingsSignals(count)

    # -- SIEM -----------------------------------------------------------------

    async def start_sink(self) -> None:
        """Install index templates; retried until the SIEM answers."""
        if self.sink is None:
            return
        delay = 1.0
        while True:
            try:
                await self.sink.install()
                return
            except SinkError as exc:
                log.warning("SIEM not ready (%s); retrying in %.0fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def index(self, batch: Sequence[tuple[str, bytes]], publish_dead: Callable[[DeadLetter], Awaitable[None]]) -> None:
        """Index one batch of output records; returns only once the SIEM acknowledged all
        of it, so the caller's offsets are committed after the documents are safe."""
        await self.buffer_for_index(batch, publish_dead, flush_when_full=True)
        await self.flush_index(publish_dead)

    #: Records mapped between two yields to the event loop: the index stage shares the
    #: worker's loop with Faust, and a 2,000-record batch mapped in one go held it ~100 ms.
    MAP_SLICE = 200

    async def buffer_for_index(self, batch: Sequence[tuple[str, bytes]],
                               publish_dead: Callable[[DeadLetter], Awaitable[None]], *,
                               flush_when_full: bool = False) -> None:
        """Decode ``batch`` and buffer its ECS documents in the sink, without sending them
        (:meth:`flush_index` does): the index stage maps a batch while the previous one is
        being sent. Undecodable records go to ``publish_dead``. A full buffer (the SIEM
        away) waits for the sender, or with ``flush_when_full`` is flushed here."""
        sink = self.sink
        if not self._sink_installed:  # templates before the first document, or mappings go dynamic
            await self.start_sink()
            self._sink_installed = True
        records: list[tuple[str, Any]] = []
        newest: dict[str, int] = {}  # incident id → its newest revision in this batch
        for topic, raw in batch:
            kind, decoder = self._decoders[topic]
            try:
                record = decoder.decode(raw)
            except msgspec.DecodeError as exc:  # our own topics: only a foreign producer gets here
                await publish_dead(dead_letter(topic, raw, f"not an aisoar {kind} record: {exc}"))
                continue
            records.append((kind, record))
            if kind == "incident":
                newest[record.id] = max(record.revision, newest.get(record.id, 0))
        mapped = 0
        for kind, record in records:
            # An incident is re-sent on every update and is one document: map only its newest
            # revision (the ECS mapping of superseded revisions was ~18% of this agent, py-spy).
            if kind == "incident" and record.revision < newest[record.id]:
                continue
            while True:
                try:
                    sink.put(kind, record)
                    break
                except SinkError:  # buffer full: the SIEM is not accepting
                    if flush_when_full:
                        await self._flush_until_acknowledged(publish_dead)
                    else:  # the index stage's sender is retrying; it takes the buffer when it can
                        await asyncio.sleep(0.5)
            mapped += 1
            if mapped % self.MAP_SLICE == 0:
                await asyncio.sleep(0)

    async def flush_index(self, publish_dead: Callable[[DeadLetter], Awaitable[None]]) -> None:
        """Send what :meth:`buffer_for_index` buffered; return once the SIEM acknowledged all
        of it (retrying while it is away), refused documents handed to ``publish_dead``."""
        await self._flush_until_acknowledged(publish_dead)

    async def _flush_until_acknowledged(self, publish_dead: Callable[[DeadLetter], Awaitable[None]]) -> None:
        delay = 0.5
        while True:
            try:
                result = await self.sink.flush()
                break
            except SinkError as exc:
                # The SIEM is down: keep the documents, stop consuming; Kafka buffers the rest.
                log.error("SIEM flush failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        metrics.SIEM_DOCS.labels("all", "indexed").inc(result.indexed)
        for rejected in result.rejected:
            metrics.SIEM_DOCS.labels(rejected.index, "rejected").inc()
            if rejected.kind != "deadletter":  # never loop a refused dead letter
                reason = f"SIEM refused the {rejected.kind} document: HTTP {rejected.status}"
                await publish_dead(dead_letter(f"siem:{rejected.index}", msgspec.json.encode(rejected.record), reason))


runtime = Runtime(settings)
