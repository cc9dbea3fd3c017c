"""The Faust application: one per worker process, configured from :mod:`aisoar.config`.

Agents, topics and tables live in their own modules and import ``app`` from here.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import Any

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from mode import Service

from aisoar.config import Settings, load_settings, read_secret
from aisoar.logs import logging_config
from streams.offsets import SafeCommits

__all__ = ["app", "settings"]


def _credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    kafka = settings.kafka
    context = ssl.create_default_context(cafile=kafka.ssl_cafile) if "SSL" in kafka.security_protocol else None
    if kafka.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=read_secret("kafka", "sasl_password", settings),
            mechanism=kafka.sasl_mechanism or "PLAIN",
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


class Worker(faust.Worker):
    """Faust's worker, announcing its start as one log record.

    With ``worker.log_format = "json"`` the worker runs with Faust's ``--quiet``
    (see :func:`streams.main.run_worker`): no banner table, no spinner, no
    "OK ^" on stdout, so every line the process writes is JSON. This record
    carries the facts the banner showed.
    """

    async def on_startup_finished(self) -> None:
        await super().on_startup_finished()
        conf = self.app.conf
        logging.getLogger("aisoar.worker").info("worker started", extra={"labels": {
            "id": conf.id, "broker": ",".join(str(url) for url in conf.broker), "store": str(conf.store),
            "web": str(self.app.web_server_url) if conf.web_enabled else None, "pid": os.getpid(),
            "hostname": socket.gethostname(), "faust": faust.__version__,
            "platform": f"{platform.python_implementation()} {platform.python_version()} ({platform.system()})",
            "datadir": str(conf.datadir.absolute()),
        }})


async def seek_to_committed_or_beginning(consumer: aiokafka.AIOKafkaConsumer, keep: Callable[[Any], bool],
                                         starts: dict[Any, int] | None = None) -> Mapping[Any, Any]:
    """aiokafka's ``seek_to_committed``, plus: a partition with no committed offset (or 0)
    goes back to its beginning, unless ``keep(tp)``.

    Faust drops records it fetched while a rebalance or recovery held the flow (and
    records of partitions not yet resumed) and relies on this seek to read them again.
    aiokafka seeks only to a committed offset > 0, so on a partition nothing was ever
    committed on the position stayed after the dropped records: a restarted worker never
    saw an incident that was first on its partition and in flight when the previous
    worker died (no commit yet), and its playbook stayed half done.

    ``starts`` receives the first offset of each partition sought to its beginning: the
    offset its first commit must not pass (streams/offsets.py)."""
    committed = await consumer.seek_to_committed()
    rewind = [tp for tp, offset in committed.items() if not offset and not keep(tp)]
    if rewind:
        assignment = consumer._subscription.subscription.assignment  # private: only for the log line
        ahead = {f"{tp.topic}/{tp.partition}": state.position for tp in rewind
                 if (state := assignment.state_value(tp)) is not None and state.has_valid_position and state.position}
        if ahead:
            logging.getLogger(__name__).info("rewinding partitions with no committed offset to their beginning "
                                             "(positions were %s)", ahead)
        await consumer.seek_to_beginning(*rewind)
        if starts is not None:
            starts.update(await consumer.beginning_offsets(rewind))
    return committed


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def seek_to_committed(self) -> Mapping[TP, int]:
        # Changelog partitions keep Faust's own positioning (recovery reads them explicitly).
        return await self.call_thread(seek_to_committed_or_beginning, self._ensure_consumer(),
                                      self.consumer._is_changelog_tp,
                                      self.consumer.log_starts)  # type: ignore[attr-defined]


class Consumer(SafeCommits, faust_aiokafka.Consumer):
    """Faust's consumer, with the commit rules of :mod:`streams.offsets`."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    @Service.task
    async def _reread_stalled_partitions(self) -> None:
        async for _ in self.itertimer(self.check_interval_s, name="reread-stalled"):
            try:
                await self.reread_stalled()
            except Exception:
                logging.getLogger(__name__).exception("re-reading stalled partitions failed")


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


class App(faust.App):
    #: Topics other producers write (maybe in transactions, whose markers leave offsets
    #: without a record): their commits keep Faust's tolerance of a one-offset hole.
    external_topics: frozenset[str] = frozenset()

    def _new_transport(self) -> faust_aiokafka.Transport:
        return Transport(self.conf.broker_consumer, self)


def create_app(settings: Settings) -> faust.App:
    brokers = [f"kafka://{host.strip()}" for host in settings.kafka.bootstrap_servers.split(",")]
    app = App(
        settings.worker.id,
        broker=brokers,
        broker_credentials=_credentials(settings),
        processing_guarantee=settings.worker.processing_guarantee,
        store=settings.worker.store,
        datadir=settings.worker.data_dir,
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        # Faust's 60 s session timeout makes every group join on a small cluster slow.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=1.0,
        broker_rebalance_timeout=20.0,
        broker_commit_interval=1.0,
        producer_linger=0.005,
        stream_wait_empty=False,
        web_host=settings.worker.web_host,
        web_port=settings.worker.web_port,
        web_in_thread=False,
        autodiscover=False,
        Worker=Worker,
        **({"logging_config": logging_config()} if settings.worker.log_format == "json" else {}),
    )
    app.external_topics = frozenset({settings.topics.security})
    return app


settings = load_settings()
app = create_app(settings)
