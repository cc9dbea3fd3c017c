"""The consumer of a batch stage (``streams/detect.py``, ``streams/index.py``): a plain
aiokafka consumer in a group of its own, committing by hand after its outputs are safe."""

from __future__ import annotations

from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

from aisoar.config import Settings
from streams.produce import kafka_client_options

__all__ = ["ReadyOnJoin", "stage_consumer"]


def stage_consumer(settings: Settings, group_id: str, **overrides: Any) -> AIOKafkaConsumer:
    """Manual commits from the earliest offset, with the Faust consumer's group timing
    (streams/app.py): fast joins on a small cluster. ``overrides`` adds or replaces options."""
    options: dict[str, Any] = {
        **kafka_client_options(settings),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 10_000,
        "heartbeat_interval_ms": 1_000,
        "rebalance_timeout_ms": 20_000,
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        **overrides,
    }
    return AIOKafkaConsumer(**options)


class _Stage(Protocol):
    ready: bool


class ReadyOnJoin(ConsumerRebalanceListener):  # type: ignore[misc]
    """Marks the stage ready (for /healthz) once the group gave it its partitions (possibly none)."""

    def __init__(self, stage: _Stage) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: Any) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.stage.ready = True
