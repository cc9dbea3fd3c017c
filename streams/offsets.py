"""What the worker's Faust consumer may commit, and the re-read of records it dropped.

At-least-once rests on one rule: the committed offset of a partition never passes a
record that no agent has finished. faust-streaming 0.15 breaks it in three ways, all
fixed here by :class:`SafeCommits`, mixed into the worker's consumer (streams/app.py):

1. **Commit over a hole at the head** (faust-streaming#606). Faust commits the run of
   acknowledged offsets that follows the committed one, and tolerates a hole of one
   offset at its head (meant for transaction markers). When the record at the committed
   offset is still being processed, or was dropped, and the next ones are done, it
   commits past it: a crash then loses it. Here, on the worker's own topics (written
   without transactions, so every offset is a record) any hole at the head holds the
   commit back; on topics other producers write, the commit is at least capped below
   the oldest record a stream still holds (``_unacked_messages``).

2. **No head at all before the first commit.** Faust checks the head only against a
   committed offset, and takes 0 for none: on a partition never committed it commits
   whatever run it acknowledged first. Seen in a SIGKILL test: offsets 0 and 1 of a
   findings partition dropped, 2.. acknowledged and committed, two findings never
   indexed. Here such a partition's head is its first offset, which the seek to its
   beginning records (``log_starts``; streams/app.py).

3. **A record dropped during recovery blocks the partition for good**
   (faust-streaming#596). Records fetched while a rebalance or the table recovery holds
   the flow are dropped, and Faust seeks back to the committed offset to read them
   again; a race lets some be dropped after that seek. Later records are processed and
   acknowledged, the hole at the head is never filled, and the partition's commits stop
   (seen once in CI: a findings partition stuck 10 minutes, one finding never indexed).
   In the SIGKILL test it happens at most restarts: the record or two at a partition's
   committed offset, fetched as the group assignment lands, never reach a stream (Faust's
   streams skip records of another consumer generation, and nothing seeks back).
   Here a hole that nothing in the process holds any more, and that stays for
   ``grace_s``, is re-read by seeking the partition back to its committed offset.
   Records after the hole are processed a second time: downstream dedupes them
   (deterministic finding ids, correlation source stamps, document ``_id``, the
   playbook ledger), as after any crash.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, MutableSequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

__all__ = ["HeadHole", "InOrder", "Record", "SafeCommits", "head_hole", "in_flight_floors", "read_range"]

log = logging.getLogger(__name__)

STALL_REPAIRS = Counter("aisoar_stream_partition_rereads_total",
                        "Partitions sought back to their committed offset to re-read dropped records", ["topic"])


def in_flight_floors(messages: Iterable[Any], head_of: Callable[[Any], int | None]) -> dict[Any, int]:
    """The lowest offset per partition that a stream still holds unfinished, in one pass.

    ``messages`` are Faust's tracked messages; one already acknowledged, or below its
    partition's head ``head_of(tp)`` (a replay of a committed record), holds nothing back."""
    floors: dict[Any, int] = {}
    heads: dict[Any, int | None] = {}
    for message in messages:
        if message.acked:
            continue
        tp, offset = message.tp, message.offset
        head = heads[tp] if tp in heads else heads.setdefault(tp, head_of(tp))
        if head is not None and offset < head:
            continue
        if offset < floors.get(tp, offset + 1):
            floors[tp] = offset
    return floors


@dataclass(frozen=True)
class HeadHole:
    """Offsets ``[start, end)`` of a partition: after its committed offset, before its
    first acknowledged one, neither acknowledged nor held by any stream."""

    start: int
    end: int


def head_hole(committed: int | None, acked: MutableSequence[int], gaps: Any, floor: int | None) -> HeadHole | None:
    """The hole blocking a partition's commits, if nothing in the process can fill it.

    ``gaps`` is Faust's interval tree of offsets known to have no record (transaction
    markers, compaction); offsets it covers are not missing."""
    if committed is None or not acked:
        return None
    head = min(acked)
    if head <= committed:
        return None
    if floor is not None and floor < head:
        return None  # a stream still has it: slow, not lost
    missing = head - committed
    if gaps:
        for interval in gaps.overlap(committed, head):
            missing -= min(interval.end, head) - max(interval.begin, committed)
    return HeadHole(committed, head) if missing > 0 else None


class SafeCommits:
    """Mixin for a ``faust.transport.consumer.Consumer`` (see the module docstring)."""

    #: Seconds a hole must persist before the partition is re-read (a record between
    #: the fetch and its delivery to a stream is briefly in no stream).
    grace_s: float = 10.0
    #: Re-reads of one hole (one committed offset) before giving up and saying so: a
    #: hole that re-reading never fills is not a dropped record.
    max_rereads: int = 3
    check_interval_s: float = 2.0

    # Faust's bookkeeping, read here: offsets acknowledged per partition, the committed
    # offset per partition, the messages streams still hold (a WeakSet), offsets without
    # a record (an interval tree per partition).
    _acked: Any
    _acked_index: Any
    _committed_offset: Any
    _unacked_messages: Any
    _gap: Any

    @property
    def log_starts(self) -> dict[Any, int]:
        """First offset of each partition that had no commit when it was assigned."""
        return self.__dict__.setdefault("_log_starts", {})  # type: ignore[no-any-return]

    def head_of(self, tp: Any) -> int | None:
        """The offset the next commit of ``tp`` must start from, if known."""
        return self._committed_offset.get(tp) or self.log_starts.get(tp)

    def _strict(self, tp: Any) -> bool:
        app = self.app  # type: ignore[attr-defined]
        if app.conf.processing_guarantee.value == "exactly_once":
            return False  # transactions: markers take offsets
        return tp.topic not in getattr(app, "external_topics", ())

    def _filter_committable_offsets(self, tps: Iterable[Any]) -> dict[Any, int]:
        # One pass over the messages in flight for all partitions of this commit.
        self.__dict__["_floors"] = in_flight_floors(self._unacked_messages, self.head_of)
        try:
            return super()._filter_committable_offsets(tps)  # type: ignore[misc, no-any-return]
        finally:
            self.__dict__["_floors"] = None

    def _new_offset(self, tp: Any) -> int | None:
        acked = self._acked[tp]
        if not acked:
            return None
        head = self.head_of(tp)
        floors: Mapping[Any, int] | None = self.__dict__.get("_floors")
        floor = (floors if floors is not None else in_flight_floors(self._unacked_messages, self.head_of)).get(tp)
        if head is not None and self._strict(tp) and head_hole(head, acked, self._gap.get(tp), None) is not None:
            return None  # the head is still processing, or was dropped: reread_stalled fills it
        if floor is None or max(acked) < floor:
            return super()._new_offset(tp)  # type: ignore[misc, no-any-return]
        # Hide the offsets at and after the oldest unfinished record from Faust's run.
        later = [offset for offset in acked if offset >= floor]
        acked[:] = [offset for offset in acked if offset < floor]
        try:
            return super()._new_offset(tp)  # type: ignore[misc, no-any-return]
        finally:
            acked.extend(later)
            acked.sort()

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        # Faust takes a jump in the offsets it reads for offsets with no record. On the
        # worker's own topics every offset is a record, so a jump means dropped records:
        # after the seek of reread_stalled, a record of the batch fetched from the old
        # position still arrives and makes the re-read offsets look like a gap. Counted
        # done, they would be committed past unprocessed, and Faust folds them into
        # ``_acked`` without deduplicating it, so its runs of consecutive offsets shrink
        # to one or two and commits advance by an offset a commit (~1 a second).
        if not self._strict(tp):
            await super()._add_gap(tp, offset_from, offset_to)  # type: ignore[misc]

    def acknowledge_read(self, tp: Any, offsets: Iterable[int]) -> None:
        """Count ``offsets`` of ``tp`` as processed: an agent read them itself (:class:`InOrder`)."""
        acked, index = self._acked[tp], self._acked_index[tp]
        head = self.head_of(tp)
        for offset in offsets:
            if (head is None or offset >= head) and offset not in index:
                index.add(offset)
                acked.append(offset)

    def stalled_partitions(self) -> dict[Any, HeadHole]:
        """Partitions whose commits a hole blocks right now."""
        floors = in_flight_floors(list(self._unacked_messages), self.head_of)
        holes = {}
        for tp, acked in list(self._acked.items()):
            hole = head_hole(self.head_of(tp), acked, self._gap.get(tp), floors.get(tp))
            if hole is not None:
                holes[tp] = hole
        return holes

    async def reread_stalled(self, now: float | None = None) -> list[Any]:
        """Seek each assigned partition whose hole persisted ``grace_s`` back to its
        committed offset; returns the partitions sought. Called every ``check_interval_s``."""
        if self.app.rebalancing or not self.flow_active:  # type: ignore[attr-defined]
            return []  # Faust seeks every partition back itself when the flow resumes
        now = time.monotonic() if now is None else now
        seen: dict[Any, tuple[HeadHole, float, int]] = self.__dict__.setdefault("_holes_seen", {})
        assigned = self.assignment()  # type: ignore[attr-defined]
        holes = {tp: hole for tp, hole in self.stalled_partitions().items() if tp in assigned}
        for tp in [tp for tp in seen if tp not in holes or seen[tp][0].start != holes[tp].start]:
            del seen[tp]  # filled, or the partition moved on
        sought = []
        for tp, hole in holes.items():
            _, since, rereads = seen.get(tp, (hole, now, 0))
            seen[tp] = (hole, since, rereads)
            if now - since < self.grace_s * (rereads + 1):
                continue
            if rereads >= self.max_rereads:
                if rereads == self.max_rereads:
                    log.error("partition %s/%s: offsets %d..%d still missing after %d re-reads; commits on it "
                              "stay blocked until the worker restarts", tp.topic, tp.partition, hole.start,
                              hole.end - 1, rereads)
                    seen[tp] = (hole, since, rereads + 1)
                continue
            first = (await self.earliest_offsets(tp)).get(tp)  # type: ignore[attr-defined]
            if first is not None and first > hole.start:
                # Retention deleted them while no worker ran: nothing to re-read, say so.
                log.error("partition %s/%s: offsets %d..%d were deleted by retention before any worker "
                          "processed them; they are lost and commits go on from offset %d", tp.topic,
                          tp.partition, hole.start, first - 1, first)
                self._gap[tp].addi(hole.start, first)
                del seen[tp]
                continue
            log.warning("partition %s/%s: offsets %d..%d were dropped before reaching an agent and block its "
                        "commits; re-reading it from offset %d", tp.topic, tp.partition, hole.start,
                        hole.end - 1, hole.start)
            await self.seek(tp, hole.start)  # type: ignore[attr-defined]
            STALL_REPAIRS.labels(tp.topic).inc()
            seen[tp] = (hole, since, rereads + 1)
            sought.append(tp)
        return sought


@dataclass(frozen=True)
class Record:
    """A record of a stream partition, as an agent body needs it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


class InOrder:
    """Hands an agent the records Faust dropped before a record, so that it processes
    every partition in offset order, with no hole.

    Re-reading a hole later (:meth:`SafeCommits.reread_stalled`) restores completeness but
    not order, and correlation needs order: it recognises replays by the highest source
    offset applied per key, so a dropped finding fanned out after later ones would be
    taken for a replay and never counted (seen in CI: a SIGKILL test's incident counts
    stayed short). Here, when an agent's record is past the offset its partition should
    deliver next, the records in between are read straight from Kafka and returned, to be
    processed first; they are then acknowledged in Faust's bookkeeping, so commits go on.
    """

    def __init__(self, app: Any, read: Callable[[Any, int, int], Any]) -> None:
        self.app = app
        self.read = read  # async (tp, start, end) -> list[Record]: offsets [start, end) of tp
        self.expected: dict[Any, int] = {}
        self.generation: int | None = None

    async def missing_before(self, tp: Any, offset: int) -> list[Record]:
        consumer = self.app.consumer
        generation = self.app.consumer_generation_id
        if generation != self.generation:  # a rebalance: positions start again from the commits
            self.expected.clear()
            self.generation = generation
        expected = self.expected.get(tp)
        if expected is None:
            expected = consumer.head_of(tp)
        self.expected[tp] = offset + 1
        if expected is None or offset <= expected:
            return []  # in order, or a replay (downstream recognises those)
        try:
            records = await self.read(tp, expected, offset)
        except Exception as exc:  # noqa: BLE001 -- the re-read of SafeCommits still fills the hole, later
            log.error("partition %s/%s: could not read offsets %d..%d (%s); they will be re-read later, out of "
                      "order", tp.topic, tp.partition, expected, offset - 1, exc)
            return []
        log.warning("partition %s/%s: offsets %d..%d never reached this agent; processing them first, "
                    "read from Kafka (%d records)", tp.topic, tp.partition, expected, offset - 1, len(records))
        STALL_REPAIRS.labels(tp.topic).inc()
        consumer.acknowledge_read(tp, range(expected, offset))
        return records


async def read_range(options: Mapping[str, Any], tp: Any, start: int, end: int, *,
                     timeout_s: float = 30.0) -> list[Record]:
    """Records ``[start, end)`` of partition ``tp``, with a short-lived consumer of no group."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**options, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        partition = TopicPartition(tp.topic, tp.partition)
        consumer.assign([partition])
        consumer.seek(partition, start)
        out: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and await consumer.position(partition) < end:
            for batch in (await consumer.getmany(partition, timeout_ms=500)).values():
                out.extend(Record(r.partition, r.offset, r.key, r.value, dict(r.headers or ()))
                           for r in batch if r.offset < end)
        if await consumer.position(partition) < end:
            raise TimeoutError(f"could not read {tp.topic}/{tp.partition} offsets {start}..{end - 1}")
        return out
    finally:
        await consumer.stop()
