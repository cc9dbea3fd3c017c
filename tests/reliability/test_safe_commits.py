"""The worker's Faust consumer never commits past an unfinished record, and re-reads a
partition whose commits a dropped record blocks (streams/offsets.py).

These run Faust's real ``Consumer`` bookkeeping (``_acked``, ``_committed_offset``,
``_unacked_messages``, the gap tree) without a broker: the commit decision is pure
bookkeeping. Only ``seek`` and ``assignment``, which would talk to Kafka, are replaced
by recorders in the re-read tests. The end-to-end proof is
``tests/reliability/test_faults.py::test_worker_sigkilled_three_times_mid_stream``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import faust
import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import Message

from aisoar.config import load_settings
from streams.app import create_app
from streams.offsets import (
    HeadHole,
    InOrder,
    Record,
    head_hole,
    in_flight_floors,
    read_range,
)

TOPIC = TP("t.findings", 0)


def message(offset: int, tp: TP = TOPIC) -> Message:
    return Message(tp.topic, tp.partition, offset, 0.0, 0, None, None, b"{}", None)


@pytest.fixture(scope="module")
def app() -> faust.App:
    return create_app(load_settings())


@pytest.fixture
def consumer(app: faust.App) -> Any:
    consumer = app._new_consumer()  # the worker's own consumer class, not started
    assert type(consumer).__name__ == "Consumer" and type(consumer).__module__ == "streams.app"
    return consumer


def plain_faust_consumer(app: faust.App) -> Any:
    return faust_aiokafka.Consumer(app.transport, callback=app.topics.on_message,
                                   on_partitions_revoked=app._on_partitions_revoked,
                                   on_partitions_assigned=app._on_partitions_assigned)


def test_faust_alone_commits_over_the_record_in_flight_at_its_head(app: faust.App) -> None:
    """faust-streaming#606, the bug the override exists for: 43 still processing, 44-46 done."""
    consumer = plain_faust_consumer(app)
    consumer._committed_offset[TOPIC] = 43
    consumer._acked[TOPIC].extend([44, 45, 46])
    held = message(43)
    consumer._unacked_messages.add(held)
    assert consumer._new_offset(TOPIC) == 47  # a crash now loses offset 43


def test_no_commit_past_a_record_still_in_a_stream(consumer: Any) -> None:
    consumer._committed_offset[TOPIC] = 43
    consumer._acked[TOPIC].extend([44, 45, 46])
    held = message(43)
    consumer._unacked_messages.add(held)
    assert consumer._filter_committable_offsets([TOPIC]) == {}  # the commit timer's path
    assert sorted(consumer._acked[TOPIC]) == [44, 45, 46]  # kept for when 43 is done
    held.acked = True
    consumer._acked[TOPIC].append(43)
    consumer._unacked_messages.discard(held)
    assert consumer._filter_committable_offsets([TOPIC]) == {TOPIC: 47}


def test_commit_is_capped_below_the_oldest_unfinished_record(consumer: Any) -> None:
    consumer._committed_offset[TOPIC] = 43
    consumer._acked[TOPIC].extend([43, 44, 46, 47])
    held = message(45)
    consumer._unacked_messages.add(held)
    assert consumer._new_offset(TOPIC) == 45
    assert sorted(consumer._acked[TOPIC]) == [46, 47]


def test_no_commit_past_a_dropped_record_on_the_workers_own_topics(consumer: Any) -> None:
    consumer._committed_offset[TOPIC] = 43
    consumer._acked[TOPIC].extend([44, 45, 46])  # 43 is in no stream: dropped
    assert consumer._new_offset(TOPIC) is None


def test_a_partition_never_committed_starts_at_its_first_offset(consumer: Any, app: faust.App) -> None:
    """Faust alone commits 4 here (no committed offset, so no head to check): 0 and 1 lost."""
    plain = plain_faust_consumer(app)
    plain._acked[TOPIC].extend([2, 3])
    assert plain._new_offset(TOPIC) == 4
    consumer.log_starts[TOPIC] = 0  # recorded by the seek to the partition's beginning
    consumer._acked[TOPIC].extend([2, 3])
    assert consumer._new_offset(TOPIC) is None
    assert consumer.stalled_partitions() == {TOPIC: HeadHole(0, 2)}
    consumer._acked[TOPIC].extend([0, 1])
    assert consumer._new_offset(TOPIC) == 4


def test_topics_of_other_producers_keep_fausts_one_offset_tolerance(consumer: Any, app: faust.App) -> None:
    """A transaction marker takes an offset: on the security topic (written by the IdP's
    producers) a one-offset hole at the head may be one; a record still in a stream is not."""
    security = TP(app.external_topics and next(iter(app.external_topics)), 0)
    consumer._committed_offset[security] = 43
    consumer._acked[security].extend([44, 45])
    assert consumer._new_offset(security) == 46
    consumer._committed_offset[security] = 46
    consumer._acked[security].extend([47, 48])
    held = message(46, security)
    consumer._unacked_messages.add(held)
    assert consumer._new_offset(security) is None


def test_records_of_other_partitions_and_finished_replays_hold_nothing_back(consumer: Any) -> None:
    consumer._committed_offset[TOPIC] = 43
    consumer._acked[TOPIC].extend([43, 44, 45])
    other, replayed = message(40, TP("t.findings", 1)), message(41)
    replayed.acked = True
    consumer._unacked_messages.add(other)
    consumer._unacked_messages.add(replayed)
    assert consumer._new_offset(TOPIC) == 46


def test_in_flight_floors() -> None:
    held = [message(50), message(47), message(45, TP("x", 0)), message(40)]
    done = message(30, TP("y", 0))
    done.acked = True
    heads = {TOPIC: 43}
    assert in_flight_floors([*held, done], heads.get) == {TOPIC: 47, TP("x", 0): 45}  # 40: below the head
    assert in_flight_floors(held, lambda tp: None) == {TOPIC: 40, TP("x", 0): 45}
    assert in_flight_floors([], heads.get) == {}


def test_head_hole() -> None:
    from intervaltree import IntervalTree

    assert head_hole(43, [45, 46], None, floor=None) == HeadHole(43, 45)
    assert head_hole(43, [45, 46], None, floor=43) is None  # in a stream: slow, not lost
    assert head_hole(43, [43, 44], None, floor=None) is None  # no hole
    assert head_hole(None, [45], None, floor=None) is None  # never committed: the seek rewinds those
    assert head_hole(43, [], None, floor=None) is None
    markers = IntervalTree()
    markers.addi(43, 45)  # offsets with no record (transaction markers)
    assert head_hole(43, [45], markers, floor=None) is None
    markers = IntervalTree()
    markers.addi(43, 44)
    assert head_hole(43, [45], markers, floor=None) == HeadHole(43, 45)


class _Recorder:
    def __init__(self) -> None:
        self.seeks: list[tuple[TP, int]] = []
        self.first_offset = 0

    async def earliest_offsets(self, *partitions: TP) -> dict[TP, int]:
        return dict.fromkeys(partitions, self.first_offset)

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))


@pytest.fixture
def stalled(consumer: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, _Recorder]:
    """Offsets 43-44 dropped, 45-47 acknowledged: Faust's commits on TOPIC stop for good."""
    recorder = _Recorder()
    monkeypatch.setattr(consumer, "seek", recorder.seek)  # these two stand in for the broker
    monkeypatch.setattr(consumer, "earliest_offsets", recorder.earliest_offsets)
    monkeypatch.setattr(consumer, "assignment", lambda: {TOPIC})
    monkeypatch.setattr(type(consumer.app), "rebalancing", property(lambda self: False), raising=False)
    consumer.flow_active = True
    consumer._committed_offset[TOPIC] = 43
    consumer._acked[TOPIC].extend([45, 46, 47])
    return consumer, recorder


async def test_a_dropped_record_is_re_read_after_the_grace_period(stalled: tuple[Any, _Recorder],
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    consumer, recorder = stalled
    assert consumer._new_offset(TOPIC) is None  # blocked
    assert await consumer.reread_stalled(now=100.0) == []
    assert await consumer.reread_stalled(now=100.0 + consumer.grace_s - 1) == []
    with caplog.at_level(logging.WARNING, logger="streams.offsets"):
        assert await consumer.reread_stalled(now=100.0 + consumer.grace_s) == [TOPIC]
    assert recorder.seeks == [(TOPIC, 43)]
    assert "offsets 43..44 were dropped" in caplog.text
    # The re-read delivers 43 and 44 again; once acknowledged the partition commits on.
    consumer._acked[TOPIC].extend([43, 44])
    assert consumer.stalled_partitions() == {}
    assert consumer._new_offset(TOPIC) == 48
    assert await consumer.reread_stalled(now=200.0) == []
    assert recorder.seeks == [(TOPIC, 43)]


async def test_a_hole_that_re_reading_never_fills_is_given_up_loudly(stalled: tuple[Any, _Recorder],
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    consumer, recorder = stalled
    with caplog.at_level(logging.WARNING, logger="streams.offsets"):
        for second in range(400):
            await consumer.reread_stalled(now=float(second))
    assert recorder.seeks == [(TOPIC, 43)] * consumer.max_rereads  # backing off, then no more
    assert caplog.text.count("still missing after") == 1


async def test_nothing_is_re_read_while_a_stream_holds_the_record(stalled: tuple[Any, _Recorder]) -> None:
    consumer, recorder = stalled
    held = message(43)
    consumer._unacked_messages.add(held)
    for second in range(0, 100, 5):
        assert await consumer.reread_stalled(now=float(second)) == []
    assert recorder.seeks == []


async def test_nothing_is_re_read_during_a_rebalance(stalled: tuple[Any, _Recorder],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    consumer, recorder = stalled
    consumer.flow_active = False  # Faust seeks every partition back when the flow resumes
    for second in range(0, 100, 5):
        assert await consumer.reread_stalled(now=float(second)) == []
    assert recorder.seeks == []


async def test_records_deleted_by_retention_are_reported_lost_not_re_read(stalled: tuple[Any, _Recorder],
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """The worker was down longer than the topic's retention: 43-44 no longer exist."""
    consumer, recorder = stalled
    recorder.first_offset = 45
    with caplog.at_level(logging.WARNING, logger="streams.offsets"):
        for second in range(0, 60, 5):
            await consumer.reread_stalled(now=float(second))
    assert recorder.seeks == []
    assert "offsets 43..44 were deleted by retention" in caplog.text
    assert consumer.stalled_partitions() == {}
    assert consumer._new_offset(TOPIC) == 48


async def test_a_record_fetched_before_the_seek_back_neither_slows_nor_skips_commits(
        stalled: tuple[Any, _Recorder]) -> None:
    """After the seek back to 43, Faust's fetcher still delivers a record of the batch it
    fetched from the old position (1001): its read offset is now 43, so ``_drain_messages``
    takes the jump for offsets without a record and calls ``_add_gap(44, 1001)`` (done here
    directly: that loop needs a broker). Bench runs that re-read a partition then saw the
    by-key lag shrink ~2 offsets a second for minutes (2 partitions). Faust folds the gap
    into the acknowledged offsets a second time, and each commit takes only the first run of
    consecutive offsets, which the duplicates cut to one or two; and the gap counts 44, never
    processed, as done."""
    consumer, recorder = stalled
    consumer._acked_index[TOPIC].update([45, 46, 47])  # the fixture's acknowledged offsets, as ack() records them
    consumer.acknowledge_read(TOPIC, range(48, 1001))
    await consumer.reread_stalled(now=0.0)
    await consumer.reread_stalled(now=consumer.grace_s)
    assert recorder.seeks == [(TOPIC, 43)]
    await consumer._add_gap(TOPIC, 44, 1001)
    consumer.acknowledge_read(TOPIC, [1001])
    consumer.acknowledge_read(TOPIC, [43])  # the re-read delivers 43; 44 is dropped again
    assert consumer._new_offset(TOPIC) == 44
    consumer._committed_offset[TOPIC] = 44
    assert consumer._new_offset(TOPIC) is None  # 44 never processed: no commit past it
    assert consumer.stalled_partitions() == {TOPIC: HeadHole(44, 45)}
    consumer.acknowledge_read(TOPIC, range(44, 1002))  # the next re-read
    assert consumer._new_offset(TOPIC) == 1002  # one commit, not one per offset


# ---------------------------------------------------------------------- records dropped before an agent


class _App:
    """The two things :class:`InOrder` reads of the app: its consumer and generation."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.consumer_generation_id = 1


def _reader(log: list[tuple[TP, int, int]]) -> Any:
    async def read(tp: TP, start: int, end: int) -> list[Record]:
        log.append((tp, start, end))
        return [Record(tp.partition, o, b"k", f"v{o}".encode(), {}) for o in range(start, end)]
    return read


async def test_records_dropped_before_an_agent_are_read_and_handed_over_first(consumer: Any) -> None:
    consumer._committed_offset[TOPIC] = 1186
    reads: list[tuple[TP, int, int]] = []
    order = InOrder(_App(consumer), _reader(reads))
    # The agent's first record after the assignment is 1195: 1186-1194 never reached it.
    missing = await order.missing_before(TOPIC, 1195)
    assert [r.offset for r in missing] == list(range(1186, 1195)) and reads == [(TOPIC, 1186, 1195)]
    assert await order.missing_before(TOPIC, 1196) == []  # in order again
    # Acknowledged in Faust's bookkeeping: once 1195-1196 are done too, the commit goes through.
    consumer._acked[TOPIC].extend([1195, 1196])
    assert consumer._new_offset(TOPIC) == 1197


async def test_replays_and_rebalances_reset_what_comes_next(consumer: Any) -> None:
    consumer._committed_offset[TOPIC] = 10
    reads: list[tuple[TP, int, int]] = []
    app = _App(consumer)
    order = InOrder(app, _reader(reads))
    assert await order.missing_before(TOPIC, 10) == []
    assert await order.missing_before(TOPIC, 11) == []
    assert await order.missing_before(TOPIC, 5) == []  # a seek back: replays, recognised downstream
    assert await order.missing_before(TOPIC, 6) == []
    app.consumer_generation_id = 2  # a rebalance: the next record is measured against the commit
    consumer._committed_offset[TOPIC] = 20
    assert [r.offset for r in await order.missing_before(TOPIC, 22)] == [20, 21]
    assert reads == [(TOPIC, 20, 22)]


async def test_a_failed_read_leaves_the_hole_to_the_later_re_read(consumer: Any,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    async def broken(tp: TP, start: int, end: int) -> list[Record]:
        raise TimeoutError("broker away")

    consumer._committed_offset[TOPIC] = 43
    order = InOrder(_App(consumer), broken)
    with caplog.at_level(logging.ERROR, logger="streams.offsets"):
        assert await order.missing_before(TOPIC, 45) == []
    assert "could not read offsets 43..44" in caplog.text
    consumer._acked[TOPIC].append(45)
    assert consumer.stalled_partitions() == {TOPIC: HeadHole(43, 45)}  # not acknowledged


@pytest.mark.integration
async def test_read_range_reads_exactly_the_hole_from_the_broker(kafka_bootstrap: str) -> None:
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = f"itest-range-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"r{i}".encode(), key=b"k", partition=1,
                                         headers=[("aisoar-src", b"f1"), ("aisoar-src-offset", str(i).encode())])
    finally:
        await producer.stop()
    records = await read_range({"bootstrap_servers": kafka_bootstrap}, TP(topic, 1), 3, 7)
    assert [(r.offset, r.value, r.headers["aisoar-src-offset"]) for r in records] == [
        (o, f"r{o}".encode(), str(o).encode()) for o in range(3, 7)]
