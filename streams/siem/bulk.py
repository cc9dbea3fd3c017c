"""Bulk indexing over httpx, modelled on elasticsearch-py's ``streaming_bulk`` helpers.

Actions are dicts in the helpers' shape: ``_index``, ``_id``, optional
``_op_type`` (``index``, ``create``, ``update``, ``delete``) and ``_source`` (or
the remaining keys as the document; ``bytes`` are taken as the document's JSON, sent as is). They are serialised to NDJSON with msgspec
and sent in chunks bounded by count and by bytes. Each document yields
``(ok, item)``, ``item`` in the ``_bulk`` response shape
(``{"index": {"_index", "_id", "status", "error"?}}``) plus the attempts made.

Retries: only the documents that failed with 429 or 5xx are sent again, and the
whole chunk when the request itself fails with 429/5xx or a transport error,
with capped exponential backoff and jitter, up to ``max_attempts`` sends. Other
item errors (400 mapping errors, ...) are reported at once: the caller
dead-letters them. A request refused with another 4xx (auth, too large) raises
:class:`~aisoar.errors.SinkError`.

Nothing here logs a document body: only counts, ids, statuses and error types.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping
from typing import Any

import httpx
import msgspec

from aisoar.errors import BulkIndexError, ConfigError, SinkError

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "DEFAULT_CHUNK_SIZE",
    "async_bulk",
    "async_streaming_bulk",
    "is_retryable",
    "make_client",
    "make_sync_client",
    "streaming_bulk",
    "sync_bulk",
]

logger = logging.getLogger("aisoar.siem")

DEFAULT_CHUNK_SIZE = 500
#: Well under the servers' 100 MB ``http.max_content_length``, and small enough to retry cheaply.
DEFAULT_CHUNK_BYTES = 5 * 1024 * 1024

_OP_TYPES = frozenset({"index", "create", "update", "delete"})
_META_KEYS = frozenset(
    {
        "_index",
        "_id",
        "_op_type",
        "_source",
        "routing",
        "_routing",
        "pipeline",
        "if_seq_no",
        "if_primary_term",
        "retry_on_conflict",
        "require_alias",
    }
)
_HEADERS = {"Content-Type": "application/x-ndjson", "Accept": "application/json"}
# A small response: only what per-item results need (both OpenSearch and Elasticsearch).
_FILTER_PATH = "errors,items.*._index,items.*._id,items.*.status,items.*.error"
_ENCODER = msgspec.json.Encoder()


def is_retryable(status: int) -> bool:
    """429 (rejected: the node is busy) and 5xx (unavailable shards, ...) may succeed later."""
    return status == 429 or status >= 500


# ---------------------------------------------------------------------------
# clients


def _client_options(
    url: str,
    *,
    username: str | None,
    password: str | None,
    api_key: str | tuple[str, str] | None,
    ca_file: str | None,
    verify: bool,
    timeout: float,
    headers: Mapping[str, str] | None,
) -> dict[str, Any]:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"SIEM url must start with http:// or https://, got {url!r}")
    if api_key is not None and username is not None:
        raise ValueError("give either an API key or a username/password, not both")
    all_headers = dict(headers or {})
    if api_key is not None:
        if isinstance(api_key, tuple):  # (id, api_key) as Elasticsearch's create-API-key returns it
            api_key = base64.b64encode(f"{api_key[0]}:{api_key[1]}".encode()).decode("ascii")
        all_headers["Authorization"] = f"ApiKey {api_key}"
    tls: bool | ssl.SSLContext = verify
    if ca_file is not None:
        # httpx 0.28 takes an SSLContext (a CA path string is deprecated).
        try:
            tls = ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the SIEM CA file: {exc}", file=ca_file, key="ca_file") from exc
        if not verify:
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
    options: dict[str, Any] = {
        "base_url": url.rstrip("/"),
        "headers": all_headers,
        "verify": tls,
        "timeout": httpx.Timeout(timeout, connect=min(timeout, 10.0)),
    }
    if username is not None:
        options["auth"] = httpx.BasicAuth(username, password or "")
    return options


def make_client(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    api_key: str | tuple[str, str] | None = None,
    ca_file: str | None = None,
    verify: bool = True,
    timeout: float = 30.0,
    headers: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for the SIEM at ``url``: basic auth or an API key
    (``Authorization: ApiKey ...``; a ``(id, key)`` tuple is encoded for you), a
    custom CA file, TLS verification on/off. ``transport`` is for tests."""
    options = _client_options(
        url, username=username, password=password, api_key=api_key, ca_file=ca_file,
        verify=verify, timeout=timeout, headers=headers,
    )  # fmt: skip
    return httpx.AsyncClient(transport=transport, **options)


def make_sync_client(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    api_key: str | tuple[str, str] | None = None,
    ca_file: str | None = None,
    verify: bool = True,
    timeout: float = 30.0,
    headers: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """The blocking twin of :func:`make_client` (CLI, scripts)."""
    options = _client_options(
        url, username=username, password=password, api_key=api_key, ca_file=ca_file,
        verify=verify, timeout=timeout, headers=headers,
    )  # fmt: skip
    return httpx.Client(transport=transport, **options)


# ---------------------------------------------------------------------------
# serialisation and chunking


class _Doc:
    """One serialised action: its bulk lines and the metadata reported back."""

    __slots__ = ("id", "index", "lines", "op")

    def __init__(self, op: str, index: str | None, id: str | None, lines: bytes) -> None:
        self.op = op
        self.index = index
        self.id = id
        self.lines = lines


def _prepare(action: Mapping[str, Any]) -> _Doc:
    op = action.get("_op_type", "index")
    if op not in _OP_TYPES:
        raise ValueError(f"invalid _op_type {op!r}; valid values: {', '.join(sorted(_OP_TYPES))}")
    header = {
        key: action[key]
        for key in (
            "_index",
            "_id",
            "routing",
            "pipeline",
            "if_seq_no",
            "if_primary_term",
            "retry_on_conflict",
            "require_alias",
        )
        if key in action
    }
    if "_routing" in action:
        header["routing"] = action["_routing"]
    lines = _ENCODER.encode({op: header}) + b"\n"
    if op != "delete":
        source = action["_source"] if "_source" in action else {k: v for k, v in action.items() if k not in _META_KEYS}
        if isinstance(source, bytes):  # already JSON (the sink encodes each document once, to size it)
            lines += source + b"\n"
            return _Doc(op, action.get("_index"), _id_of(action), lines)
        if op == "update" and "doc" not in source and "script" not in source:
            source = {"doc": source}
        lines += _ENCODER.encode(source) + b"\n"
    return _Doc(op, action.get("_index"), _id_of(action), lines)


def _id_of(action: Mapping[str, Any]) -> str | None:
    doc_id = action.get("_id")
    return str(doc_id) if doc_id is not None else None


def _chunks(docs: Iterable[_Doc], chunk_size: int, max_chunk_bytes: int) -> Iterator[list[_Doc]]:
    chunk: list[_Doc] = []
    size = 0
    for doc in docs:
        # A single document larger than the byte limit still goes, alone.
        if chunk and (len(chunk) >= chunk_size or size + len(doc.lines) > max_chunk_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(doc)
        size += len(doc.lines)
    if chunk:
        yield chunk


async def _achunks(
    actions: AsyncIterable[Mapping[str, Any]], chunk_size: int, max_chunk_bytes: int
) -> AsyncIterator[list[_Doc]]:
    chunk: list[_Doc] = []
    size = 0
    async for action in actions:
        doc = _prepare(action)
        if chunk and (len(chunk) >= chunk_size or size + len(doc.lines) > max_chunk_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(doc)
        size += len(doc.lines)
    if chunk:
        yield chunk


# ---------------------------------------------------------------------------
# one chunk, sans I/O: the async and the sync drivers share every decision


class _ChunkState:
    """The retry state machine of one chunk."""

    def __init__(
        self,
        docs: list[_Doc],
        *,
        max_attempts: int,
        initial_backoff: float,
        max_backoff: float,
        ignore_status: Collection[int],
        rand: Callable[[], float],
    ) -> None:
        self.pending = docs
        self.attempt = 0
        self.max_attempts = max_attempts
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.ignore_status = ignore_status
        self.rand = rand
        self.errors: list[dict[str, Any]] = []

    def body(self) -> bytes:
        self.attempt += 1
        return b"".join(doc.lines for doc in self.pending)

    def backoff(self, retry_after: str | None = None) -> float:
        """Capped exponential backoff with jitter (50-100 % of the step), at least Retry-After."""
        step = min(self.max_backoff, self.initial_backoff * 2 ** (self.attempt - 1))
        delay = float(step * (0.5 + 0.5 * self.rand()))
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), self.max_backoff))
            except ValueError:
                pass
        return delay

    def _item(self, doc: _Doc, status: int, error: Any = None) -> dict[str, Any]:
        info: dict[str, Any] = {"_index": doc.index, "_id": doc.id, "status": status, "attempts": self.attempt}
        if error is not None:
            info["error"] = error
        return {doc.op: info}

    def request_failed(
        self,
        status: int,
        error: dict[str, Any],
        retry_after: str | None,
        *,
        raise_on_exception: bool,
        cause: BaseException | None = None,
    ) -> tuple[list[tuple[bool, dict[str, Any]]], float | None]:
        """The whole request failed: retry it (delay), or give up on every pending doc."""
        retryable = status == 0 or is_retryable(status)
        if retryable and self.attempt < self.max_attempts:
            delay = self.backoff(retry_after)
            logger.warning(
                "_bulk request failed, retrying",
                extra={
                    "status": status,
                    "error_type": error.get("type"),
                    "docs": len(self.pending),
                    "attempt": self.attempt,
                    "delay_s": round(delay, 3),
                },
            )
            return [], delay
        what = f"HTTP {status}" if status else error.get("type", "transport error")
        message = f"_bulk of {len(self.pending)} document(s) failed after {self.attempt} attempt(s): {what}"
        if raise_on_exception:
            raise SinkError(message) from cause
        logger.error(message)
        results = [(False, self._item(doc, status, error)) for doc in self.pending]
        self.errors.extend(item for _, item in results)
        self.pending = []
        return results, None

    def response(self, items: list[dict[str, Any]]) -> tuple[list[tuple[bool, dict[str, Any]]], float | None]:
        """Per-item results; the retryable failures stay pending (with a delay) while attempts remain."""
        if len(items) != len(self.pending):
            raise SinkError(f"_bulk answered {len(items)} items for {len(self.pending)} documents")
        results: list[tuple[bool, dict[str, Any]]] = []
        retry: list[_Doc] = []
        for doc, item in zip(self.pending, items, strict=True):
            info: dict[str, Any] = next(iter(item.values()), {}) if item else {}
            status = int(info.get("status", 0))
            if 200 <= status < 300 or status in self.ignore_status:
                results.append((True, self._item(doc, status)))
            elif is_retryable(status) and self.attempt < self.max_attempts:
                retry.append(doc)
            else:
                failed = self._item(doc, status, info.get("error"))
                self.errors.append(failed)
                results.append((False, failed))
        self.pending = retry
        if not retry:
            return results, None
        delay = self.backoff()
        logger.warning(
            "_bulk items rejected, retrying them",
            extra={"retrying": len(retry), "attempt": self.attempt, "delay_s": round(delay, 3)},
        )
        return results, delay


def _error_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        return {"type": "http_error", "reason": f"HTTP {response.status_code}"}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return {"type": error.get("type", "http_error"), "reason": str(error.get("reason", ""))[:500]}
    return {"type": "http_error", "reason": str(error or f"HTTP {response.status_code}")[:500]}


def _items_of(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError as exc:
        raise SinkError(f"_bulk answered HTTP {response.status_code} with a body that is not JSON") from exc
    items = body.get("items") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise SinkError("_bulk answer has no items")
    return items


def _handle_response(
    state: _ChunkState, response: httpx.Response, *, raise_on_exception: bool
) -> tuple[list[tuple[bool, dict[str, Any]]], float | None]:
    status = response.status_code
    if is_retryable(status):
        return state.request_failed(
            status, _error_of(response), response.headers.get("retry-after"), raise_on_exception=raise_on_exception
        )
    if status >= 400:
        # Auth, 413 too large, a malformed request: retrying the same bytes cannot help.
        error = _error_of(response)
        raise SinkError(f"_bulk refused with HTTP {status}: {error['type']}: {error['reason']}")
    return state.response(_items_of(response))


def _raise_errors(state: _ChunkState) -> None:
    if state.errors:
        raise BulkIndexError(f"{len(state.errors)} document(s) failed to index", state.errors)


def _params(refresh: bool | str | None) -> dict[str, str]:
    params = {"filter_path": _FILTER_PATH}
    if refresh is not None:
        params["refresh"] = refresh if isinstance(refresh, str) else str(refresh).lower()
    return params


# ---------------------------------------------------------------------------
# async


async def _aiter(
    actions: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
) -> AsyncIterator[Mapping[str, Any]]:
    if isinstance(actions, AsyncIterable):
        async for action in actions:
            yield action
    else:
        for action in actions:
            yield action


async def async_streaming_bulk(
    client: httpx.AsyncClient,
    actions: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    max_attempts: int = 5,
    initial_backoff: float = 0.5,
    max_backoff: float = 30.0,
    raise_on_error: bool = True,
    raise_on_exception: bool = True,
    ignore_status: Collection[int] = (),
    refresh: bool | str | None = None,
    sleep: Callable[[float], Any] = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> AsyncIterator[tuple[bool, dict[str, Any]]]:
    """Send ``actions`` with ``_bulk`` and yield ``(ok, item)`` for each document.

    With ``raise_on_error`` a :class:`BulkIndexError` carrying the failed items is
    raised once a chunk is done; with ``raise_on_exception`` a request that still
    fails after ``max_attempts`` raises :class:`SinkError` (else its documents are
    yielded as failures with status 0 for a transport error).
    """
    if chunk_size < 1 or max_chunk_bytes < 1 or max_attempts < 1:
        raise ValueError("chunk_size, max_chunk_bytes and max_attempts must be at least 1")
    params = _params(refresh)
    async for chunk in _achunks(_aiter(actions), chunk_size, max_chunk_bytes):
        state = _ChunkState(
            chunk,
            max_attempts=max_attempts,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
            ignore_status=ignore_status,
            rand=rand,
        )
        while state.pending:
            body = state.body()
            try:
                response = await client.post("/_bulk", content=body, params=params, headers=_HEADERS)
            except httpx.TransportError as exc:
                error = {"type": type(exc).__name__, "reason": str(exc)[:500]}
                results, delay = state.request_failed(0, error, None, raise_on_exception=raise_on_exception, cause=exc)
            else:
                results, delay = _handle_response(state, response, raise_on_exception=raise_on_exception)
            for result in results:
                yield result
            if delay is not None:
                await sleep(delay)
        if raise_on_error:
            _raise_errors(state)


async def async_bulk(
    client: httpx.AsyncClient,
    actions: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
    *,
    stats_only: bool = False,
    **kwargs: Any,
) -> tuple[int, int | list[dict[str, Any]]]:
    """Run :func:`async_streaming_bulk`; return (successes, failed items or their count)."""
    success, failed = 0, 0
    errors: list[dict[str, Any]] = []
    async for ok, item in async_streaming_bulk(client, actions, **kwargs):
        if ok:
            success += 1
        else:
            failed += 1
            if not stats_only:
                errors.append(item)
    return success, failed if stats_only else errors


# ---------------------------------------------------------------------------
# sync


def streaming_bulk(
    client: httpx.Client,
    actions: Iterable[Mapping[str, Any]],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    max_attempts: int = 5,
    initial_backoff: float = 0.5,
    max_backoff: float = 30.0,
    raise_on_error: bool = True,
    raise_on_exception: bool = True,
    ignore_status: Collection[int] = (),
    refresh: bool | str | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    rand: Callable[[], float] = random.random,
) -> Iterator[tuple[bool, dict[str, Any]]]:
    """The blocking twin of :func:`async_streaming_bulk` over an ``httpx.Client``."""
    if chunk_size < 1 or max_chunk_bytes < 1 or max_attempts < 1:
        raise ValueError("chunk_size, max_chunk_bytes and max_attempts must be at least 1")
    params = _params(refresh)
    for chunk in _chunks((_prepare(action) for action in actions), chunk_size, max_chunk_bytes):
        state = _ChunkState(
            chunk,
            max_attempts=max_attempts,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
            ignore_status=ignore_status,
            rand=rand,
        )
        while state.pending:
            body = state.body()
            try:
                response = client.post("/_bulk", content=body, params=params, headers=_HEADERS)
            except httpx.TransportError as exc:
                error = {"type": type(exc).__name__, "reason": str(exc)[:500]}
                results, delay = state.request_failed(0, error, None, raise_on_exception=raise_on_exception, cause=exc)
            else:
                results, delay = _handle_response(state, response, raise_on_exception=raise_on_exception)
            yield from results
            if delay is not None:
                sleep(delay)
        if raise_on_error:
            _raise_errors(state)


def sync_bulk(
    client: httpx.Client,
    actions: Iterable[Mapping[str, Any]],
    *,
    stats_only: bool = False,
    **kwargs: Any,
) -> tuple[int, int | list[dict[str, Any]]]:
    """Run :func:`streaming_bulk`; return (successes, failed items or their count)."""
    success, failed = 0, 0
    errors: list[dict[str, Any]] = []
    for ok, item in streaming_bulk(client, actions, **kwargs):
        if ok:
            success += 1
        else:
            failed += 1
            if not stats_only:
                errors.append(item)
    return success, failed if stats_only else errors
