"""Faust tables (state backed by Kafka changelogs) and the fan-out topic feeding them.

A finding touches several correlation keys (session, principal, model version,
payload fingerprint). Each key's state must change while processing a record of
that key's own partition, or two workers would each hold half of it: so findings
are fanned out through ``aisoar.correlate``, one record per key, Kafka key = the
correlation key, and the table is updated by the agent owning that partition.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import msgspec
from faust.serializers import codecs
from faust.streams import _current_event, current_event

from streams.app import app, settings

__all__ = ["PrefixedTable", "StampedTable", "context_table", "correlate_topic", "correlation_store", "correlation_table",
           "ledger_table"]


class _Utf8(codecs.Codec):
    """str keys in memory, UTF-8 bytes in the changelog (the same bytes Kafka partitions on)."""

    def _loads(self, s: bytes) -> Any:
        return bytes(s).decode("utf-8")

    def _dumps(self, s: Any) -> bytes:
        return s.encode("utf-8") if isinstance(s, str) else bytes(s)


codecs.register("utf8", _Utf8())

_partitions = settings.topics.partitions


def _bytes_table(factory: Any, name: str) -> Any:
    """A table of str keys and bytes values (msgspec-encoded by their owners).

    Faust derives changelog codecs from model types (anything else is JSON) and builds
    the changelog topic when the table registers, so the topic is made here with the
    right codecs: otherwise recovery after a restart parses the raw bytes as JSON and
    the state is never restored.
    """
    changelog = app.topic(
        f"{app.conf.id}-{name}-changelog", key_serializer="utf8", value_serializer="raw",
        partitions=_partitions, compacting=True, acks=False, internal=True, allow_empty=True, maxsize=131_072,
    )
    table = factory(name, partitions=_partitions, default=None, changelog_topic=changelog)
    table.key_serializer = "utf8"
    table.value_serializer = "raw"
    return table


correlate_topic = app.topic(
    f"{settings.topics.findings}.by-key", key_type=bytes, value_type=bytes, key_serializer="raw",
    value_serializer="raw", partitions=_partitions,
)
#: correlation key → encoded EntityState / Suppression (streams.correlation)
correlation_table = _bytes_table(app.Table, "correlation")
#: principal boosts from security events: read across keys, so every worker holds all of it
context_table = _bytes_table(app.GlobalTable, "correlation-context")
#: playbook idempotency ledger and pending approvals, keyed by incident (the incidents topic's key)
ledger_table = _bytes_table(app.Table, "playbook-ledger")


class PrefixedTable(MutableMapping[str, bytes]):
    """One namespace (``prefix``) of a bytes-valued table, as a plain mapping.

    The playbook engine keeps its ledger, pending approvals and verifications in
    three such views of ``ledger_table``: one changelog, keyed under the incident's
    partition, restored together after a crash.
    """

    def __init__(self, table: MutableMapping[str, bytes], prefix: str) -> None:
        self.table = table
        self.prefix = prefix

    def __getitem__(self, key: str) -> bytes:
        value = self.table[self.prefix + key]
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: bytes) -> None:
        self.table[self.prefix + key] = value

    def __delitem__(self, key: str) -> None:
        del self.table[self.prefix + key]

    def __iter__(self) -> Iterator[str]:
        n = len(self.prefix)
        return iter([k[n:] for k, v in list(self.table.items()) if k.startswith(self.prefix) and v is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Held:
    """One key's stamps and decoded value while a batch holds its writes."""

    __slots__ = ("dirty", "event", "stamps", "value")

    def __init__(self, stamps: dict[str, int], value: Any) -> None:
        self.stamps = stamps
        self.value = value  # None: absent
        self.dirty = False
        self.event: Any = None  # the record whose partition the write belongs to


class StampedTable(MutableMapping[str, Any]):
    """A bytes table whose values remember which input they already include.

    At-least-once processing replays the records after the last committed offset
    when a worker crashes. Each value is written with, per source (``"f3"``:
    findings partition 3, ``"s0"``: security partition 0), the offset of the last
    record applied to it, in the same table write as the state itself, so the
    two can never disagree: a replayed record at or below that offset is
    recognised and skipped, and counts stay exact across a crash.
    Layout: 2-byte stamp length, msgpack ``{source: offset}``, then the state.

    Values are exposed decoded (``decode``/``encode``; bytes as they are by default).
    Between :meth:`hold` and :meth:`flush` (one record of the correlate agent) a key is
    read and decoded once, and written (encoded, one changelog record) once, at the
    flush, under the event of the last record that changed it (``current_event()`` at
    that change: Faust writes a change to the changelog partition of the current
    event, and all records of one key share a partition). Nothing held is visible in
    the table until the flush, so a crash before it leaves the stamps without the
    record: its replay is applied, not skipped.
    """

    def __init__(self, table: MutableMapping[str, bytes], *, encode: Callable[[Any], bytes] = bytes,
                 decode: Callable[[bytes], Any] = bytes,
                 current_event: Callable[[], Any] = lambda: None,
                 set_current_event: Callable[[Any], None] = lambda event: None) -> None:
        self.table = table
        self.encode = encode
        self.decode = decode
        self.current_event = current_event
        self.set_current_event = set_current_event
        self.source: str | None = None  # set per record by the agent
        self.offset = -1
        self._held: dict[str, _Held] | None = None

    def _load(self, key: str) -> _Held:
        held = self._held
        if held is not None:
            entry = held.get(key)
            if entry is not None:
                return entry
        raw = self.table.get(key)
        if raw:
            n = int.from_bytes(raw[:2], "big")
            entry = _Held(_STAMPS.decode(raw[2 : 2 + n]), self.decode(raw[2 + n :]) if len(raw) > 2 + n else None)
        else:
            entry = _Held({}, None)
        if held is not None:
            held[key] = entry
        return entry

    def _store(self, key: str, entry: _Held) -> None:
        if entry.value is None:
            if key in self.table:
                del self.table[key]
            return
        encoded = _STAMPS_ENCODER.encode(entry.stamps)
        self.table[key] = len(encoded).to_bytes(2, "big") + encoded + self.encode(entry.value)

    # ------------------------------------------------------------------ batches

    def hold(self) -> None:
        """Hold every change from now on until :meth:`flush` (or :meth:`drop`)."""
        self._held = {}

    def flush(self) -> int:
        """Write each key changed since :meth:`hold` once; returns the number of keys written."""
        held, self._held = self._held, None
        if not held:
            return 0
        written = 0
        for key, entry in held.items():
            if entry.dirty:
                self.set_current_event(entry.event)
                self._store(key, entry)
                written += 1
        return written

    def drop(self) -> None:
        """Forget what is held (its records were not acknowledged: they come again)."""
        self._held = None

    @property
    def holding(self) -> bool:
        return self._held is not None

    # ------------------------------------------------------------------ mapping

    def applied(self, key: str, source: str) -> int:
        """The offset of ``source`` last applied to ``key`` (-1: none)."""
        return self._load(key).stamps.get(source, -1)

    def __getitem__(self, key: str) -> Any:
        value = self._load(key).value
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        value = self._load(key).value
        return default if value is None else value

    def __setitem__(self, key: str, value: Any) -> None:
        entry = self._load(key)
        if self.source is not None and self.offset > entry.stamps.get(self.source, -1):
            entry.stamps = {**entry.stamps, self.source: self.offset}
        entry.value = value
        self._changed(key, entry)

    def __delitem__(self, key: str) -> None:
        entry = self._load(key)
        if entry.value is None and self._held is None:
            raise KeyError(key)
        entry.stamps, entry.value = {}, None
        self._changed(key, entry)

    def _changed(self, key: str, entry: _Held) -> None:
        if self._held is None:
            self._store(key, entry)
        else:
            entry.dirty = True
            entry.event = self.current_event()

    def __iter__(self) -> Iterator[str]:
        keys = {k: None for k, v in list(self.table.items()) if v}
        for key, entry in (self._held or {}).items():
            if entry.value is None:
                keys.pop(key, None)
            else:
                keys[key] = None
        return iter(list(keys))

    def __len__(self) -> int:
        return sum(1 for _ in self)


_STAMPS = msgspec.msgpack.Decoder(dict[str, int])
_STAMPS_ENCODER = msgspec.msgpack.Encoder()


def _set_current_event(event: Any) -> None:
    if event is not None:
        _current_event.set(weakref.ref(event))


def correlation_store() -> StampedTable:
    """``correlation_table`` as the correlator's store: decoded state values, stamps, and
    writes held per batch under the event each belongs to (the correlate agent)."""
    from streams.correlation import decode_state, encode_state

    return StampedTable(correlation_table, encode=encode_state, decode=decode_state,
                        current_event=current_event, set_current_event=_set_current_event)
