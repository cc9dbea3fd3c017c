"""EntityStore and SlotStore: LRU capacity and TTL in event time (not the clock), slot reuse."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.state import EntityStore, SlotStore, SlotTable


def test_lru_evicts_least_recently_seen() -> None:
    store: EntityStore[str, int] = EntityStore(capacity=2, ttl=None)
    store.put("a", 1, now=0)
    store.put("b", 2, now=1)
    assert store.get("a", now=2) == 1  # a is now the most recent
    store.put("c", 3, now=3)
    assert sorted(store) == ["a", "c"] and store.evictions == 1


def test_ttl_uses_event_time_watermark() -> None:
    store: EntityStore[str, int] = EntityStore(capacity=10, ttl=60)
    store.put("a", 1, now=100)
    store.put("b", 2, now=150)
    assert store.get("b", now=90) == 2  # a late event: the watermark stays at 150
    assert "a" in store
    store.get("zzz", now=161)  # watermark 161: a (seen at 100) is idle 61 s
    assert "a" not in store and "b" in store and store.expirations == 1


def test_late_event_refreshes_at_the_watermark() -> None:
    store: EntityStore[str, int] = EntityStore(capacity=10, ttl=60)
    store.put("a", 1, now=1000)
    store.put("b", 1, now=0)  # late: stamped with the watermark 1000, not 0
    store.get("x", now=1050)
    assert "b" in store


def test_setdefault_creates_once() -> None:
    store: EntityStore[str, list[int]] = EntityStore(capacity=10, ttl=10)
    store.setdefault("k", list, now=0).append(1)
    store.setdefault("k", list, now=1).append(2)
    assert store.peek("k") == [1, 2] and store.pop("k") == [1, 2] and len(store) == 0


def test_validation() -> None:
    with pytest.raises(ValueError, match="capacity"):
        EntityStore(capacity=0)
    with pytest.raises(ValueError, match="ttl"):
        EntityStore(ttl=0)


@given(st.lists(st.tuples(st.integers(0, 50), st.floats(0, 1e4)), max_size=300), st.integers(1, 20))
def test_never_exceeds_capacity_and_never_holds_expired(ops: list[tuple[int, float]], capacity: int) -> None:
    store: EntityStore[int, float] = EntityStore(capacity=capacity, ttl=100.0)
    watermark = float("-inf")
    for key, now in ops:
        store.put(key, now, now)
        watermark = max(watermark, now)
        assert len(store) <= capacity
    if ops:
        store.get(-1, now=watermark)
        seen = [entry.seen for entry in store._data.values()]
        assert all(t >= watermark - 100.0 for t in seen)
        assert seen == sorted(seen)  # LRU order is also TTL order


# -- SlotStore: the compact store the behaviour detectors share ---------------------------------
def counter_store(capacity: int, ttl: float | None, evict_fraction: float = 1e-9) -> tuple[SlotStore, SlotTable]:
    store = SlotStore(capacity=capacity, ttl=ttl, evict_fraction=evict_fraction)
    return store, store.table([("n", "I"), ("total", "d")], init=(0, -1.0))


def bump(store: SlotStore, table: SlotTable, key: str, now: float) -> tuple[int, int]:
    """Count one touch of ``key``; returns (slot, count so far)."""
    slot = store.slot(key, now)
    n, total = table.unpack(table.buffer, slot * table.size)
    table.pack(table.buffer, slot * table.size, n + 1, max(total, 0.0) + 1.0)
    return slot, n + 1


def test_slot_of_the_least_recently_seen_is_reused_with_a_fresh_row() -> None:
    store, table = counter_store(capacity=3, ttl=None)
    slots = {key: bump(store, table, key, now)[0] for key, now in [("a", 0), ("b", 1), ("c", 2)]}
    bump(store, table, "a", 3)  # a is recent again: b is now the least recently seen
    slot, n = bump(store, table, "d", 4)
    assert slot == slots["b"] and n == 1  # b's slot, reset to init (n 0, total -1) before the bump
    assert table.row(slot) == {"n": 1, "total": 1.0}
    assert "b" not in store and {"a", "c", "d"} == {k for k in "abcd" if k in store}
    assert store.evictions == 1 and len(store) == 3
    assert bump(store, table, "a", 5) == (slots["a"], 3)  # a kept its slot and its count


def test_full_store_evicts_the_oldest_fraction_at_once() -> None:
    store, table = counter_store(capacity=100, ttl=None, evict_fraction=0.1)
    for i in range(100):
        bump(store, table, f"k{i}", float(i))
    for i in range(5):  # k0..k4 touched again: the ten oldest are now k5..k14
        bump(store, table, f"k{i}", 100.0 + i)
    bump(store, table, "new", 200.0)
    assert store.evictions == 10 and len(store) == 91
    assert [i for i in range(100) if f"k{i}" not in store] == list(range(5, 15))
    for i in range(9):  # the next nine new keys reuse freed slots: no further eviction
        bump(store, table, f"more{i}", 300.0 + i)
    assert store.evictions == 10 and len(store) == 100 and store._high == 100


def test_ttl_expires_on_touch_and_by_sweep_in_event_time() -> None:
    store, table = counter_store(capacity=10, ttl=100.0)
    bump(store, table, "a", 1000.0)
    bump(store, table, "b", 1050.0)
    assert bump(store, table, "b", 900.0)[1] == 2  # a late event: stamped at the watermark 1050
    assert store.find("a") >= 0
    assert bump(store, table, "a", 1101.0)[1] == 1  # idle 101 s: expired when touched, counted anew
    assert store.expirations == 1
    store.slot("c", 1200.0)  # watermark 1200: b (seen 1050) idle 150 s; a sweep is due
    assert "b" not in store and len(store) == 2 and store.expirations == 2


def test_table_added_later_starts_existing_keys_at_init() -> None:
    store, _ = counter_store(capacity=10, ttl=None)
    slot = store.slot("a", 0.0)
    late = store.table([("x", "d")], init=(7.5,))
    assert late.row(slot) == {"x": 7.5}


def test_slot_store_validation() -> None:
    with pytest.raises(ValueError, match="capacity"):
        SlotStore(capacity=0)
    with pytest.raises(ValueError, match="ttl"):
        SlotStore(ttl=-1.0)
    with pytest.raises(ValueError, match="evict_fraction"):
        SlotStore(evict_fraction=0.0)
    with pytest.raises(ValueError, match="field codes"):
        SlotStore(capacity=4).table([("x", "s")], init=(0,))
    with pytest.raises(ValueError, match="init"):
        SlotStore(capacity=4).table([("x", "d")], init=(0.0, 1.0))


@given(st.lists(st.tuples(st.integers(0, 40), st.floats(0.001, 30.0)), max_size=400),
       st.integers(1, 25), st.sampled_from([None, 50.0]))
def test_slot_store_keeps_what_entity_store_keeps(ops: list[tuple[int, float]], capacity: int,
                                                 ttl: float | None) -> None:
    """With single evictions and increasing times, SlotStore holds exactly EntityStore's keys and
    counts (LRU + TTL), while slots are reused and the index stays consistent."""
    reference: EntityStore[str, list[int]] = EntityStore(capacity=capacity, ttl=ttl)
    store, table = counter_store(capacity=capacity, ttl=ttl)
    now = 0.0
    for key_id, step in ops:
        now += step
        key = f"key-{key_id}"
        counts = reference.setdefault(key, lambda: [0], now)
        counts[0] += 1
        assert bump(store, table, key, now)[1] == counts[0]
        live = {k for k in (f"key-{i}" for i in range(41)) if k in store}
        assert live == set(reference)
        assert len(live) <= capacity and store._high <= capacity
        slots = [store.find(k) for k in live]
        assert len(set(slots)) == len(slots)  # no two keys share a slot


def test_index_survives_growth_and_heavy_churn() -> None:
    """The open-addressing index grows from 16 cells and deletes by backward shifts: 20,000
    touches of 3,000 keys through 300 slots keep exactly EntityStore's keys and counts."""
    rng = random.Random(11)
    reference: EntityStore[str, list[int]] = EntityStore(capacity=300, ttl=400.0)
    store, table = counter_store(capacity=300, ttl=400.0)
    now = 0.0
    for t in range(20_000):
        now += 250.0 if t % 1000 == 999 else 0.5  # now and then a quiet spell: entries expire
        key = f"p{rng.randrange(3000)}"
        counts = reference.setdefault(key, lambda: [0], now)
        counts[0] += 1
        assert bump(store, table, key, now)[1] == counts[0]
    held = {f"p{i}" for i in range(3000) if f"p{i}" in store}
    assert held == set(reference) and len(held) > 200
    assert len({store.find(k) for k in held}) == len(held)
    assert store.evictions > 0 and store.expirations > 0 and store._mask + 1 == 1024
