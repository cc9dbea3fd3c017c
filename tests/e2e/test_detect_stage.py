"""The detect stage (streams/detect.py) against the real Kafka: a batch's input offsets are
committed only once every finding and dead letter of it was acknowledged.

The stage runs in this process (not the worker) so the test can stop between batches and
read the group's committed offsets. The one stand-in: the first produce call raises
aiokafka's ``KafkaTimeoutError``, as when the broker does not acknowledge in time; a real
broker cannot be made to time out one request on cue here.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaTimeoutError

from aisoar.config import load_settings
from aisoar.events import DeadLetter
from aisoar.findings import Finding
from aisoar.pipeline import Pipeline
from streams.detect import DetectStage
from tests.e2e.conftest import run
from tests.e2e.kafka_io import produce, read_topic
from tests.e2e.test_pipeline import MALFORMED, planted_secret, prompt_record

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_a_batch_is_committed_only_after_its_outputs_are_acknowledged(worker_env: dict[str, str]) -> None:
    settings = load_settings(env=worker_env)
    t = settings.topics
    rng = random.Random(11)
    at = datetime.now(timezone.utc) - timedelta(minutes=2)
    secrets = [planted_secret(rng, i) for i in range(12)]
    planted = {f"ds-{i:03d}": rule for i, (rule, _) in enumerate(secrets)}
    records: list[tuple[str, bytes | None, bytes]] = [
        (t.prompts, f"sess-{i % 3}".encode(), prompt_record(f"ds-{i:03d}", text, "ok", at))
        for i, (_, text) in enumerate(secrets)
    ]
    records += [(t.prompts, b"bad", raw) for raw, _ in MALFORMED]
    run(produce(settings, records))
    failures: list[str] = []  # the topic of the send that "timed out"

    async def scenario() -> tuple[dict[TopicPartition, int | None], dict[TopicPartition, int | None], dict[Any, int]]:
        stage = DetectStage(settings, lambda: Pipeline.default(
            topics={"prompt": t.prompts, "inference": t.inference, "security": t.security}))
        await stage.start()
        assert stage.producer is not None and stage.consumer is not None
        real_send = stage.producer.send

        async def send(*args: Any, **kwargs: Any) -> Any:
            if not failures:
                failures.append(args[0])
                raise KafkaTimeoutError()
            return await real_send(*args, **kwargs)

        stage.producer.send = send  # type: ignore[method-assign]
        partitions = [TopicPartition(t.prompts, p) for p in range(t.partitions)]
        try:
            deadline = time.monotonic() + 120
            after_failure: dict[TopicPartition, int | None] | None = None
            while time.monotonic() < deadline:
                batches = await stage.consumer.getmany(timeout_ms=500, max_records=1000)
                if not batches:
                    continue
                await stage.process(batches)
                if after_failure is None:
                    after_failure = {tp: await stage.consumer.committed(tp) for tp in partitions}
                ends = await stage.consumer.end_offsets(partitions)
                committed = {tp: await stage.consumer.committed(tp) for tp in partitions}
                if all((committed[tp] or 0) >= ends[tp] for tp in partitions):
                    return after_failure, committed, ends
            raise AssertionError("the detect stage did not commit every input record within 120 s")
        finally:
            await stage.stop()

    after_failure, committed, ends = run(scenario())
    # The failed batch committed nothing; afterwards every input record is committed.
    assert all(offset is None for offset in after_failure.values()), after_failure
    assert committed == ends and sum(ends.values()) == len(records)
    # ... and everything the batch should have produced is there (at least once).
    findings = [msgspec.json.decode(r.value, type=Finding) for r in run(read_topic(settings, t.findings, expect=12))]
    secret_rules = {f.event_id: f.rule_id for f in findings if f.rule_id.startswith("secret.")}
    assert secret_rules == planted
    dead = [msgspec.json.decode(r.value, type=DeadLetter) for r in run(read_topic(settings, t.deadletter, expect=5))]
    assert {d.topic for d in dead} == {t.prompts}
    assert len({(d.partition, d.offset) for d in dead}) == len(MALFORMED)
    assert failures == [t.findings] or failures == [t.deadletter]  # the stand-in did fail a send
