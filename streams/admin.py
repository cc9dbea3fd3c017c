"""Topic administration: create aisoar's topics with the right partition count.

Faust only declares its internal topics; source topics auto-created by the
broker would get the broker's default partition count, and a table whose
changelog has a different count than its source makes Faust crash-loop
(``PartitionsMismatch``). So every topic is created up front, explicitly.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from aisoar.config import Settings
from streams.produce import kafka_client_options

__all__ = ["ensure_topics", "topic_names"]

log = logging.getLogger(__name__)


def topic_names(settings: Settings) -> list[str]:
    t = settings.topics
    return [t.prompts, t.inference, t.security, t.findings, t.incidents, t.actions, t.deadletter,
            f"{t.findings}.by-key", f"{t.incidents}.control"]


async def ensure_topics(settings: Settings, *, retries: int = 30) -> None:
    """Create missing topics (idempotent); waits for the broker to answer."""
    options = kafka_client_options(settings)
    for attempt in range(retries):
        admin = AIOKafkaAdminClient(**options)  # type: ignore[arg-type]
        try:
            await admin.start()
            break
        except Exception:  # broker not up yet
            await admin.close()
            if attempt == retries - 1:
                raise
            await asyncio.sleep(1.0)
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=settings.topics.partitions,
                     replication_factor=settings.topics.replication_factor)
            for name in topic_names(settings) if name not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:  # a concurrent worker won the race
                pass
            log.info("created topics %s", ", ".join(t.name for t in wanted))
    finally:
        await admin.close()
