"""A bounded keyed store for per-entity detector state: LRU capacity plus a TTL in event time.

Detectors keep one small state object per principal, model version or (model, principal)
pair. A million principals must not exhaust memory, so the store evicts the least recently
seen entry when it is full and drops entries idle for longer than ``ttl`` seconds.

Time is *event time*, never the clock: every access passes the event's timestamp (seconds),
and the store keeps a watermark (the largest time seen) so that a late, out-of-order event
cannot make entries live forever nor expire them early. This is why ``cachetools.TTLCache``
(which reads a timer on every access) is not used: an ``OrderedDict`` ordered by last access
gives LRU order and, since access times only grow, TTL order too.

>>> store = EntityStore(capacity=2, ttl=60.0)
>>> store.setdefault("alice", list, now=0.0).append(1)
>>> store.setdefault("bob", list, now=10.0).append(2)
>>> store.setdefault("carol", list, now=20.0).append(3)  # full: alice (least recent) goes
>>> sorted(store)
['bob', 'carol']
>>> store.get("bob", now=75.0) is None  # idle 65 s > ttl
True
>>> len(store), store.evictions, store.expirations
(1, 1, 1)
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

__all__ = ["EntityStore", "SlotStore", "SlotTable"]

K = TypeVar("K")
V = TypeVar("V")


class _Entry(Generic[V]):
    __slots__ = ("seen", "value")

    def __init__(self, value: V, seen: float) -> None:
        self.value = value
        self.seen = seen


class EntityStore(Generic[K, V]):
    """An LRU + event-time TTL mapping from entity key to mutable state.

    Parameters
    ----------
    capacity
        Maximum number of entries; inserting beyond it evicts the least recently seen one.
    ttl
        Seconds of event time after which an idle entry expires; ``None`` disables expiry.

    Examples
    --------
    >>> store = EntityStore(capacity=1000, ttl=3600.0)
    >>> store.setdefault("k", dict, now=1.0)["n"] = 1
    >>> store.get("k", now=2.0)
    {'n': 1}
    """

    def __init__(self, capacity: int = 100_000, ttl: float | None = 24 * 3600.0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if ttl is not None and ttl <= 0:
            raise ValueError(f"ttl must be > 0 or None, got {ttl}")
        self.capacity = capacity
        self.ttl = ttl
        self._reset()

    def _reset(self) -> None:
        self._data: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._watermark = float("-inf")
        # A lower bound of every entry's last-seen time (it only grows: a touched or new entry
        # is seen at the watermark), so most calls know that nothing expired without looking.
        self._front_seen = float("-inf")
        self.evictions = 0
        self.expirations = 0

    def _advance(self, now: float) -> float:
        watermark = self._watermark
        if now > watermark:
            self._watermark = watermark = now
        if self.ttl is not None:
            horizon = watermark - self.ttl
            if horizon > self._front_seen:
                data = self._data
                # Entries are in last-seen order, so expired ones are all at the front.
                while data:
                    entry = next(iter(data.values()))
                    if entry.seen >= horizon:
                        self._front_seen = entry.seen
                        break
                    data.popitem(last=False)
                    self.expirations += 1
                else:
                    self._front_seen = watermark
        return watermark

    def get(self, key: K, now: float) -> V | None:
        """The state of ``key`` (marked as seen at ``now``), or ``None`` if absent or expired."""
        seen = self._advance(now)
        entry = self._data.get(key)
        if entry is None:
            return None
        entry.seen = seen
        self._data.move_to_end(key)
        return entry.value

    def setdefault(self, key: K, factory: Callable[[], V], now: float) -> V:
        """The state of ``key``, created with ``factory()`` when absent (evicting if full)."""
        seen = self._advance(now)
        data = self._data
        entry = data.get(key)
        if entry is not None:
            entry.seen = seen
            data.move_to_end(key)
            return entry.value
        if len(data) >= self.capacity:
            data.popitem(last=False)
            self.evictions += 1
        value = factory()
        data[key] = _Entry(value, seen)
        return value

    def put(self, key: K, value: V, now: float) -> None:
        """Set the state of ``key`` (evicting the least recently seen entry if full)."""
        seen = self._advance(now)
        data = self._data
        entry = data.get(key)
        if entry is not None:
            entry.value, entry.seen = value, seen
            data.move_to_end(key)
            return
        if len(data) >= self.capacity:
            data.popitem(last=False)
            self.evictions += 1
        data[key] = _Entry(value, seen)

    def pop(self, key: K) -> V | None:
        entry = self._data.pop(key, None)
        return None if entry is None else entry.value

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def peek(self, key: K) -> V | None:
        """The state of ``key`` without touching its recency (for inspection and tests)."""
        entry = self._data.get(key)
        return None if entry is None else entry.value


class SlotTable:
    """One detector's fixed-width rows in a :class:`SlotStore`, indexed by slot.

    The rows live in one preallocated numpy record array (zero pages cost no memory until a
    slot is first used). Per event a detector reads its whole row with ``unpack(buffer,
    slot * size)`` (a tuple of Python floats and ints, fast to compute with) and writes it back
    with ``pack(buffer, slot * size, *values)``; vectorised inspection goes through ``array``.

    Parameters
    ----------
    capacity
        Rows (the store's capacity).
    fields
        ``(name, struct code)`` pairs: ``"d"`` float64, ``"f"`` float32, ``"B"`` uint8, ``"I"`` uint32,
        ``"Q"`` uint64.
    init
        The values of a new (or reused) row.
    """

    __slots__ = ("array", "buffer", "dtype", "fields", "init", "pack", "size", "unpack")

    _NUMPY: ClassVar[dict[str, str]] = {"d": "<f8", "f": "<f4", "B": "<u1", "I": "<u4", "Q": "<u8"}

    def __init__(self, capacity: int, fields: Sequence[tuple[str, str]], init: Sequence[float]) -> None:
        if len(init) != len(fields):
            raise ValueError(f"init has {len(init)} values for {len(fields)} fields")
        unknown = sorted({code for _, code in fields} - set(self._NUMPY))
        if unknown:
            raise ValueError(f"field codes must be among {sorted(self._NUMPY)}, got {unknown}")
        codec = struct.Struct("<" + "".join(code for _, code in fields))
        self.fields = tuple(name for name, _ in fields)
        self.dtype = np.dtype([(name, self._NUMPY[code]) for name, code in fields])
        self.size = codec.size
        self.unpack = codec.unpack_from
        self.pack = codec.pack_into
        self.init = codec.pack(*init)
        self.array = np.zeros(capacity, self.dtype)
        self.buffer: memoryview = self.array.view(np.uint8).data

    def reset_row(self, slot: int) -> None:
        start = slot * self.size
        self.buffer[start:start + self.size] = self.init

    def row(self, slot: int) -> dict[str, float]:
        """The row of ``slot`` by field name (for inspection and tests)."""
        return dict(zip(self.fields, self.unpack(self.buffer, slot * self.size)))


class SlotStore:
    """Compact per-entity state shared by several detectors: key -> slot over numpy rows.

    A million principals at one small Python object graph each (a dict entry, an entry
    object, an ``array`` and a key per detector) cost ~1.8 KB per principal. Here nothing per
    key is a Python object: the key's 64-bit hash maps to an int slot in an open-addressing
    table of two numpy columns (linear probing, grown by doubling at half load), and each
    detector keeps a fixed-width row per slot (:class:`SlotTable`); a last-seen time and the
    hash are two more columns. Detectors that follow the same entity (principal anomaly and
    denial of wallet both key by principal) share the store, so the key is paid once.

    Bounded like :class:`EntityStore`, in event time (a watermark): an entry idle for longer
    than ``ttl`` is expired when next touched, and a vectorised sweep frees expired slots every
    ``ttl / 16`` of event time; when all ``capacity`` slots are in use, the least recently seen
    ``evict_fraction`` of them are evicted at once (one ``argpartition`` instead of an LRU list,
    so eviction is LRU in batches). Freed slots are reused, their rows reset to each table's
    ``init``.

    Keys are kept as their 64-bit hash (Python's ``hash``; state lives in one process): two
    keys sharing one would share a row, with probability ~n^2 / 2^65 (3e-8 at a million keys).

    Parameters
    ----------
    capacity
        Maximum number of entities.
    ttl
        Seconds of event time after which an idle entity expires; ``None`` disables expiry.
    evict_fraction
        Share of ``capacity`` evicted when a new key finds the store full (at least one).

    Examples
    --------
    >>> store = SlotStore(capacity=2, ttl=60.0)
    >>> counts = store.table([("n", "I")], init=(0,))
    >>> for key, now in [("alice", 0.0), ("bob", 10.0), ("alice", 20.0), ("carol", 30.0)]:
    ...     slot = store.slot(key, now)
    ...     (n,) = counts.unpack(counts.buffer, slot * counts.size)
    ...     counts.pack(counts.buffer, slot * counts.size, n + 1)
    >>> "bob" in store, counts.row(store.find("alice")), store.evictions  # full: bob went
    (False, {'n': 2}, 1)
    >>> store.slot("dave", 95.0) == store.find("dave"), "carol" in store, store.expirations
    (True, False, 2)
    """

    _MIN_TABLE = 16

    def __init__(self, capacity: int = 1_000_000, ttl: float | None = 14 * 24 * 3600.0,
                 evict_fraction: float = 0.01) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if ttl is not None and ttl <= 0:
            raise ValueError(f"ttl must be > 0 or None, got {ttl}")
        if not 0.0 < evict_fraction <= 1.0:
            raise ValueError(f"evict_fraction must be in (0, 1], got {evict_fraction}")
        self.capacity = capacity
        self.ttl = ttl
        self.evict_fraction = evict_fraction
        self._tables: list[SlotTable] = []
        self._reset()

    def _reset(self) -> None:
        self._new_index(self._MIN_TABLE)
        self._count = 0
        self._hashes = np.zeros(self.capacity, np.int64)  # slot -> key hash, to delete on eviction
        self._seen = np.zeros(self.capacity, np.float64)  # slot -> watermark when last touched; NaN: free
        # Scalar access through memoryviews (Python ints and floats, ~3x faster than numpy
        # indexing); typed Any because typeshed's memoryview only takes int items.
        self._hash_of: Any = self._hashes.data
        self._seen_at: Any = self._seen.data
        self._free: list[int] = []
        self._high = 0  # slots [0, _high) have been handed out at least once
        self._watermark = -math.inf
        self._horizon = -math.inf  # watermark - ttl
        self._next_sweep = -math.inf
        self._last_key: object = None
        self._last_slot = -1
        self.evictions = 0
        self.expirations = 0

    def table(self, fields: Sequence[tuple[str, str]], init: Sequence[float]) -> SlotTable:
        """Add a detector's rows (existing slots get ``init``)."""
        table = SlotTable(self.capacity, fields, init)
        if self._high:
            table.array[: self._high] = np.frombuffer(table.init, table.dtype)[0]
        self._tables.append(table)
        return table

    def slot(self, key: Hashable, now: float) -> int:
        """The slot of ``key``, touched at ``now``; a new key gets a fresh slot (rows at ``init``)."""
        # Called for every event by every detector on the store, so the watermark step and the
        # index probe (as in `_probe`) are inlined.
        if now > self._watermark:
            self._watermark = now
            if self.ttl is not None:
                self._horizon = now - self.ttl
                if now >= self._next_sweep:
                    self._sweep()
        seen = self._seen_at
        # The detectors sharing the store ask for the same event's key, and consecutive events
        # often share one (a model name): equal keys have equal hashes, so the same slot.
        if key == self._last_key:
            slot = self._last_slot
            if seen[slot] >= self._horizon:
                seen[slot] = self._watermark
                return slot
        h = hash(key) or 1  # 0 marks an empty cell of the index
        keys, mask = self._index_keys, self._mask
        i = h & mask
        k = keys[i]
        while k != h and k != 0:
            i = (i + 1) & mask
            k = keys[i]
        if k == h:
            slot = self._index_slots[i]
            if seen[slot] >= self._horizon:
                seen[slot] = self._watermark
                self._last_key, self._last_slot = key, slot
                return slot
            self._release(slot)  # idle past the ttl: expire it
            self.expirations += 1
        slot = self._allocate(h)
        seen[slot] = self._watermark
        self._last_key, self._last_slot = key, slot
        return slot

    def find(self, key: Hashable) -> int:
        """The slot of ``key`` without touching it, or -1 (absent or expired)."""
        h = hash(key) or 1
        i = self._probe(h)
        if self._index_keys[i] != h:
            return -1
        slot = self._index_slots[i]
        return slot if self._seen_at[slot] >= self._horizon else -1

    def __contains__(self, key: object) -> bool:
        return self.find(key) >= 0  # type: ignore[arg-type]

    def __len__(self) -> int:
        """Entities held (expired ones count until the next sweep frees them)."""
        return self._count

    @property
    def nbytes(self) -> int:
        """Bytes of the rows, columns and index in use (the untouched preallocated rows cost no
        memory; tracemalloc does not see rows being filled, so memory tests add this)."""
        row = self._hashes.itemsize + self._seen.itemsize + sum(t.size for t in self._tables)
        return self._high * row + self._index_key_array.nbytes + self._index_slot_array.nbytes

    # -- the index: hash -> slot, open addressing with linear probing --------------------------
    def _new_index(self, size: int) -> None:
        self._index_key_array = np.zeros(size, np.int64)
        self._index_slot_array = np.zeros(size, np.int32)
        self._index_keys: Any = self._index_key_array.data
        self._index_slots: Any = self._index_slot_array.data
        self._mask = size - 1

    def _probe(self, h: int) -> int:
        """The cell holding ``h``, or the empty cell where it would go."""
        keys, mask = self._index_keys, self._mask
        i = h & mask
        k = keys[i]
        while k != h and k != 0:
            i = (i + 1) & mask
            k = keys[i]
        return i

    def _insert(self, h: int, slot: int) -> None:
        if 2 * (self._count + 1) > self._mask + 1:  # keep the load under one half
            live = self._index_key_array != 0
            keys, slots = self._index_key_array[live].tolist(), self._index_slot_array[live].tolist()
            self._new_index(2 * (self._mask + 1))
            for k, s in zip(keys, slots):
                i = self._probe(k)
                self._index_keys[i], self._index_slots[i] = k, s
        i = self._probe(h)
        self._index_keys[i], self._index_slots[i] = h, slot
        self._count += 1

    def _delete(self, h: int) -> None:
        """Remove ``h``, shifting later entries of its probe run back (no tombstones)."""
        keys, slots, mask = self._index_keys, self._index_slots, self._mask
        i = self._probe(h)
        if keys[i] != h:
            return
        j = i
        while True:
            j = (j + 1) & mask
            k = keys[j]
            if k == 0:
                break
            home = k & mask
            # the entry at j may fill the hole at i unless its home lies cyclically in (i, j]
            if (home <= i or home > j) if i <= j else (home <= i and home > j):
                keys[i], slots[i] = k, slots[j]
                i = j
        keys[i] = 0
        self._count -= 1

    # -- slots -------------------------------------------------------------------------------
    def _sweep(self) -> None:
        """Free every expired slot (vectorised); runs at most every ``ttl / 16`` of event time."""
        assert self.ttl is not None
        expired = np.flatnonzero(self._seen[: self._high] < self._horizon)  # NaN (free) is never <
        for slot in expired.tolist():
            self._release(slot)
        self.expirations += len(expired)
        self._next_sweep = self._watermark + self.ttl / 16

    def _allocate(self, h: int) -> int:
        if self._free:
            slot = self._free.pop()
        elif self._high < self.capacity:
            slot = self._high
            self._high += 1
        else:
            self._evict()
            slot = self._free.pop()
        self._insert(h, slot)
        self._hash_of[slot] = h
        for table in self._tables:
            table.reset_row(slot)
        return slot

    def _evict(self) -> None:
        count = max(1, int(self.capacity * self.evict_fraction))
        seen = self._seen[: self._high]
        oldest = np.argpartition(seen, count - 1)[:count] if count < len(seen) else np.arange(len(seen))
        for slot in oldest.tolist():
            self._release(slot)
        self.evictions += count

    def _release(self, slot: int) -> None:
        self._delete(self._hash_of[slot])
        self._seen_at[slot] = math.nan
        self._free.append(slot)
        if slot == self._last_slot:
            self._last_key, self._last_slot = None, -1
