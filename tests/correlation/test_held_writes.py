"""``StampedTable.hold`` / ``flush`` / ``drop``: writes held and made once per key.

The correlate agent holds the changes of each record (``streams.agents.correlate``); the
class allows a run of records, and these tests hold runs that span partitions, so that
what batching must keep is pinned: each key's write lands on the changelog partition of
its own records (Faust takes it from the *current event*), the replay stamps recognise
every record already applied (also within the run), and a crash before the flush loses
nothing: the records come again and are counted once.

The Faust table is stood in for by a dict that records, for every write, the partition
of the event current at that moment: that is what Faust's ``Table.on_key_set`` uses.
The real table and changelog are exercised by ``tests/e2e/test_correlation.py`` (SIGKILL,
exact counts) and ``tests/reliability/test_faults.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aisoar.findings import Entities, Finding
from streams.correlation import Correlator, EntityState, decode_state, encode_state
from streams.tables import StampedTable

T0 = datetime(2026, 11, 25, 10, tzinfo=UTC)


@dataclass(frozen=True)
class _Event:
    partition: int
    offset: int


class _Table(dict[str, bytes]):
    """A bytes table that logs each write with the current event's partition."""

    def __init__(self) -> None:
        super().__init__()
        self.current: _Event | None = None
        self.writes: list[tuple[str, int | None]] = []

    def __setitem__(self, key: str, value: bytes) -> None:
        self.writes.append((key, None if self.current is None else self.current.partition))
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.writes.append((key, None if self.current is None else self.current.partition))
        super().__delitem__(key)


def _store(table: _Table, events: dict[str, Any]) -> StampedTable:
    def set_current(event: Any) -> None:
        table.current = event

    return StampedTable(table, encode=encode_state, decode=decode_state,
                        current_event=lambda: events["current"], set_current_event=set_current)


def _finding(i: int, session: str) -> Finding:
    return Finding(id=f"{session}-f{i}", rule_id="r.pii", rule_name="pii", category="pii", severity="low",
                   confidence=0.5, timestamp=T0 + timedelta(seconds=i), event_id=f"e{i}", event_kind="prompt",
                   entities=Entities(user_id="u", session_id=session), detector="d", detector_version="1")


#: (fanned-out record partition, offset, source findings partition, source offset, session)
#: Two sessions on two by-key partitions, interleaved, one of them replayed inside the batch.
_RECORDS = [(0, 10, "f0", 100, "a"), (1, 20, "f1", 200, "b"), (0, 11, "f0", 101, "a"),
            (1, 21, "f1", 201, "b"), (0, 12, "f0", 100, "a"),  # a replay of offset 100
            (0, 13, "f0", 102, "a")]


def _correlate(store: StampedTable, correlator: Correlator, events: dict[str, Any],
               records: list[tuple[int, int, str, int, str]]) -> int:
    """What ``streams.agents._correlate_one`` does per record; returns records applied."""
    applied = 0
    for partition, offset, source, source_offset, session in records:
        events["current"] = _Event(partition, offset)
        key = f"session:{session}"
        store.source = None
        if store.applied(key, source) >= source_offset:
            continue
        store.source, store.offset = source, source_offset
        correlator.process_finding(_finding(source_offset, session), keys=[key])
        applied += 1
    return applied


def test_a_batch_across_partitions_writes_each_key_once_on_its_own_partition() -> None:
    table, events = _Table(), {"current": None}
    store = _store(table, events)
    correlator = Correlator(store)
    store.hold()
    applied = _correlate(store, correlator, events, _RECORDS)
    assert table.writes == []  # nothing reaches the table before the flush
    assert store.flush() == 2
    assert applied == 5  # the replay of source offset 100 was recognised inside the batch
    assert sorted(table.writes) == [("session:a", 0), ("session:b", 1)]
    state_a, state_b = store["session:a"], store["session:b"]
    assert isinstance(state_a, EntityState) and isinstance(state_b, EntityState)
    assert (state_a.findings, state_b.findings) == (3, 2)
    assert (store.applied("session:a", "f0"), store.applied("session:b", "f1")) == (102, 201)
    assert store.applied("session:a", "f1") == -1


def test_held_state_equals_record_by_record_state() -> None:
    held_table, plain_table = _Table(), _Table()
    held_events: dict[str, Any] = {"current": None}
    plain_events: dict[str, Any] = {"current": None}
    held, plain = _store(held_table, held_events), _store(plain_table, plain_events)
    held.hold()
    _correlate(held, Correlator(held), held_events, _RECORDS)
    held.flush()
    _correlate(plain, Correlator(plain), plain_events, _RECORDS)
    assert dict(held_table) == dict(plain_table)  # same bytes: same state and same stamps
    assert len(plain_table.writes) == 5 and len(held_table.writes) == 2


@pytest.mark.parametrize("crash_after", [1, 3, 5])
def test_a_crash_mid_batch_loses_nothing_and_counts_once(crash_after: int) -> None:
    table, events = _Table(), {"current": None}
    store = _store(table, events)
    store.hold()
    _correlate(store, Correlator(store), events, _RECORDS[:2])
    store.flush()  # a first batch, written and acknowledged
    before = dict(table)
    store.hold()
    _correlate(store, Correlator(store), events, _RECORDS[2:2 + crash_after])
    store.drop()  # SIGKILL: nothing written, nothing acknowledged
    assert dict(table) == before
    # The restarted worker gets the unacknowledged records again (and, at-least-once, may
    # get the acknowledged ones too): each finding counts once.
    restarted = _store(table, events)
    restarted.hold()
    _correlate(restarted, Correlator(restarted), events, _RECORDS)
    restarted.flush()
    assert (restarted["session:a"].findings, restarted["session:b"].findings) == (3, 2)


def test_a_key_deleted_and_created_again_in_one_batch_starts_without_old_stamps() -> None:
    table, events = _Table(), {"current": _Event(0, 1)}
    store = _store(table, events)
    store.source, store.offset = "f0", 5
    store["session:a"] = EntityState(first_seen=0.0, last_seen=0.0)
    store.hold()
    del store["session:a"]
    assert "session:a" not in store and list(store) == []
    store.source, store.offset = "f0", 7
    store["session:a"] = EntityState(first_seen=1.0, last_seen=1.0)
    store.flush()
    assert store.applied("session:a", "f0") == 7
    assert store["session:a"].first_seen == 1.0
    store.hold()
    del store["session:a"]
    store.flush()
    assert "session:a" not in table
