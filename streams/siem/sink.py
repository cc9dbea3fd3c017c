"""The SIEM sink used by the Faust agents: buffer ECS documents, flush them with ``_bulk``.

The agent calls ``await sink.add(kind, record)`` per record and commits its Kafka
offsets only after ``await sink.flush()`` returned: a flush returns when every
document was acknowledged (indexed, or refused for good and handed back for the
dead-letter topic). When the SIEM is down or keeps answering 429/5xx, ``flush``
raises :class:`~aisoar.errors.SinkError` and keeps the documents; the agent stops
committing and retries later, so Kafka is the durable buffer. ``add`` refuses
new documents (``SinkError``, the record not buffered) once ``max_buffer_docs``
are waiting, which bounds memory while the SIEM is away.

Replays are harmless: every document has a deterministic ``_id`` and index, so
sending a batch twice overwrites it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
import msgspec

from aisoar.errors import SinkError

from .bulk import DEFAULT_CHUNK_BYTES, async_streaming_bulk, is_retryable
from .ecs import EcsDocument, Kind, to_ecs
from .templates import IndexLayout, install_templates

__all__ = ["FlushResult", "Rejected", "SiemSink"]

logger = logging.getLogger("aisoar.siem")

_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True)
class Rejected:
    """A record the SIEM refused for good (e.g. a mapping error): dead-letter it."""

    kind: Kind
    record: Any
    id: str  # "" when the record could not even be mapped to ECS (status 0)
    index: str
    status: int
    error: Any


@dataclass(frozen=True)
class FlushResult:
    """What one flush did: how many documents were indexed and which were refused."""

    indexed: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.indexed + len(self.rejected)


@dataclass
class _Pending:
    doc: EcsDocument
    index: str
    record: Any
    body: bytes  # the document's JSON, encoded once (its size bounds the buffer; sent as is)


class SiemSink:
    """Buffer aisoar records as ECS documents and send them to the SIEM.

    Parameters
    ----------
    client
        An ``httpx.AsyncClient`` whose base URL is the SIEM (see ``make_client``).
    layout
        Index names and buckets.
    max_docs, max_bytes, max_age
        Flush when this many documents / bytes are buffered, or when the oldest is
        this many seconds old (checked by ``add`` and ``flush_if_due``).
    max_buffer_docs
        Hard cap on buffered documents while flushes fail (backpressure).
    clock, wall_clock
        Monotonic seconds (buffer age) and the UTC now (out-of-range event times); tests pin them.
    bulk_refresh
        ``refresh`` parameter of ``_bulk`` (``"wait_for"`` makes flushed documents
        searchable on return; tests only - it slows indexing).
    bulk_options
        Passed to :func:`async_streaming_bulk` (``max_attempts``, ``initial_backoff``, ...).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        layout: IndexLayout | None = None,
        max_docs: int = 500,
        max_bytes: int = DEFAULT_CHUNK_BYTES,
        max_age: float = 1.0,
        max_buffer_docs: int | None = None,
        bulk_refresh: bool | str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        **bulk_options: Any,
    ) -> None:
        if max_docs < 1 or max_bytes < 1 or max_age < 0:
            raise ValueError("max_docs and max_bytes must be at least 1 and max_age not negative")
        self.client = client
        self.layout = layout or IndexLayout()
        self.max_docs = max_docs
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.max_buffer_docs = max_buffer_docs if max_buffer_docs is not None else 4 * max_docs
        self.bulk_refresh = bulk_refresh
        self.clock = clock
        self.wall_clock = wall_clock
        self.bulk_options = bulk_options
        self._reset()

    def _reset(self) -> None:
        self._buffer: list[_Pending] = []
        self._unmappable: list[Rejected] = []
        self._bytes = 0
        self._oldest: float | None = None
        self._lock = asyncio.Lock()

    # -- buffering -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self._buffer)

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def due(self) -> bool:
        """True when the buffer should be flushed (count, bytes or age reached)."""
        if not self._buffer:
            return False
        if len(self._buffer) >= self.max_docs or self._bytes >= self.max_bytes:
            return True
        return self._oldest is not None and self.clock() - self._oldest >= self.max_age

    async def add(self, kind: Kind, record: Any) -> FlushResult | None:
        """Map ``record`` to ECS and buffer it; flush when a threshold is reached (that
        flush's result is returned, else ``None``).

        Raises :class:`SinkError` only when the record was *not* buffered (the buffer is
        full because flushes keep failing): flush until acknowledged, then add it again.
        A failing threshold flush is logged and its documents kept, never raised here,
        so a record is never buffered twice.
        """
        self.put(kind, record)
        if self.due():
            try:
                return await self.flush()
            except SinkError:
                return None  # kept; the caller's own flush() reports the failure
        return None

    def put(self, kind: Kind, record: Any) -> None:
        """Map ``record`` to ECS and buffer it, never flushing: for a caller that flushes
        itself (the index stage, which sends one batch while it maps the next).

        Raises :class:`SinkError` only when the record was *not* buffered (buffer full).
        """
        if len(self._buffer) >= self.max_buffer_docs:
            raise SinkError(f"SIEM sink buffer full ({len(self._buffer)} documents): the SIEM is not accepting")
        try:
            doc = to_ecs(kind, record)
        except (ValueError, TypeError) as exc:
            # A record that cannot become a document (no timestamp, wrong type) must not stop
            # the worker: it is handed back with the next flush's rejections, for dead-lettering.
            logger.warning("record not mappable to ECS", extra={"kind": kind, "error_type": type(exc).__name__})
            self._unmappable.append(
                Rejected(kind, record, "", "", 0, {"type": "ecs_mapping_error", "reason": str(exc)[:500]})
            )
            return
        body = _ENCODER.encode(doc.source)
        self._buffer.append(_Pending(doc, self.layout.index(doc.kind, doc.timestamp, now=self.wall_clock()), record, body))
        self._bytes += len(body) + 128  # + the action line
        if self._oldest is None:
            self._oldest = self.clock()

    async def flush_if_due(self) -> FlushResult | None:
        """Flush if a threshold is reached; for the agent's periodic timer."""
        return await self.flush() if self.due() else None

    async def flush(self) -> FlushResult:
        """Send everything buffered; return once every document is acknowledged.

        Raises :class:`SinkError` (documents kept for the next flush) when the SIEM
        cannot be reached or still answers 429/5xx after the retries.
        """
        async with self._lock:
            # Take the buffer: records added while this flush runs wait for the next one.
            batch, self._buffer = self._buffer, []
            batch_bytes, self._bytes = self._bytes, 0
            oldest, self._oldest = self._oldest, None
            unmappable, self._unmappable = self._unmappable, []
            if not batch:
                return FlushResult(0, unmappable)
            # One write per (index, _id): the latest version of a record wins (an incident
            # updated twice between flushes is sent once).
            latest = {(pending.index, pending.doc.id): pending for pending in batch}
            actions = (
                {"_op_type": "index", "_index": index, "_id": doc_id, "_source": pending.body}
                for (index, doc_id), pending in latest.items()
            )
            indexed = 0
            rejected: list[Rejected] = list(unmappable)
            unavailable = 0
            try:
                async for ok, item in async_streaming_bulk(
                    self.client,
                    actions,
                    chunk_size=self.max_docs,
                    max_chunk_bytes=self.max_bytes,
                    raise_on_error=False,
                    refresh=self.bulk_refresh,
                    **self.bulk_options,
                ):
                    if ok:
                        indexed += 1
                        continue
                    info = next(iter(item.values()))
                    if is_retryable(info["status"]):
                        unavailable += 1  # not the document's fault: retry later, never dead-letter
                        continue
                    pending = latest[(info["_index"], info["_id"])]
                    rejected.append(
                        Rejected(
                            pending.doc.kind,
                            pending.record,
                            pending.doc.id,
                            pending.index,
                            info["status"],
                            info.get("error"),
                        )
                    )
                if unavailable:
                    raise SinkError(f"SIEM kept refusing {unavailable} of {len(latest)} documents with 429/5xx")
            except BaseException:
                # Keep the whole batch for the next flush: re-sending the documents that
                # were indexed is an idempotent overwrite.
                self._buffer = batch + self._buffer
                self._unmappable = unmappable + self._unmappable
                self._bytes += batch_bytes
                self._oldest = oldest if oldest is not None else self._oldest
                logger.error("SIEM flush failed; %d documents kept for the next flush", len(self._buffer))
                raise
        if rejected:
            logger.warning(
                "SIEM refused documents",
                extra={"rejected": len(rejected), "statuses": sorted({r.status for r in rejected})},
            )
        return FlushResult(indexed, rejected)

    # -- setup and reading back ---------------------------------------------

    async def install(self, *, replicas: int | None = None, lifecycle: bool = True) -> dict[str, Any]:
        """Install the index templates and lifecycle policies (idempotent)."""
        return await install_templates(self.client, self.layout, replicas=replicas, lifecycle=lifecycle)

    async def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = await self.client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise SinkError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
        if response.status_code == 404:
            return None
        if response.is_error:
            raise SinkError(f"{method} {url}: HTTP {response.status_code}: {response.text[:500]}")
        return response.json()

    async def refresh(self, index: str) -> None:
        """Make everything indexed so far searchable (``index`` may be a kind name)."""
        await self._call("POST", f"/{self.layout.resolve(index)}/_refresh")

    async def search(
        self,
        index: str,
        query: Mapping[str, Any] | None = None,
        *,
        size: int = 10,
        sort: list[Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The hits (``_id``, ``_index``, ``_source``) of ``query`` (default: all) on
        ``index`` (a kind name such as ``findings``, an alias or an index)."""
        body: dict[str, Any] = {"query": query or {"match_all": {}}, "size": size}
        if sort:
            body["sort"] = sort
        answer = await self._call("POST", f"/{self.layout.resolve(index)}/_search", json=body)
        return list(answer["hits"]["hits"]) if answer else []

    async def count(self, index: str, query: Mapping[str, Any] | None = None) -> int:
        """How many documents match ``query`` (default: all); 0 when the index is missing."""
        answer = await self._call(
            "POST", f"/{self.layout.resolve(index)}/_count", json={"query": query or {"match_all": {}}}
        )
        return int(answer["count"]) if answer else 0

    async def count_by(
        self,
        index: str,
        field: str,
        *,
        query: Mapping[str, Any] | None = None,
        size: int = 100,
    ) -> dict[str, int]:
        """Document counts per value of a keyword ``field`` (a terms aggregation)."""
        body = {
            "size": 0,
            "query": query or {"match_all": {}},
            "aggs": {"by": {"terms": {"field": field, "size": size}}},
        }
        answer = await self._call("POST", f"/{self.layout.resolve(index)}/_search", json=body)
        if not answer:
            return {}
        return {str(bucket["key"]): int(bucket["doc_count"]) for bucket in answer["aggregations"]["by"]["buckets"]}

    async def aclose(self) -> None:
        """Close the HTTP client (flush first if documents are buffered)."""
        await self.client.aclose()
