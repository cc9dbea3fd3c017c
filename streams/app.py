"""The Faust application: one per worker process, configured from :mod:`aisoar.config`.

Agents, topics and tables live in their own modules and import ``app`` from here.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import ssl

import faust

from aisoar.config import Settings, load_settings, read_secret
from aisoar.logs import logging_config

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


def create_app(settings: Settings) -> faust.App:
    brokers = [f"kafka://{host.strip()}" for host in settings.kafka.bootstrap_servers.split(",")]
    return faust.App(
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


settings = load_settings()
app = create_app(settings)
