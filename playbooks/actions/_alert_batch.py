"""Coalesce concurrent Alertmanager alerts into one ``POST /api/v2/alerts``.

Alertmanager's API takes a list of alerts per request. The respond stage works on many
incidents at once and each pages on-call, so one POST per alert cost the worker's main
thread most of the respond stage's share (py-spy, 50k-event run: the alert POST path 10%
of all samples, respond 15%). :class:`AlertBatcher` gathers the alerts submitted while
the previous POST is in flight (or within ``linger_s``), up to ``max_batch``, and sends
them together. Each submitter awaits the outcome of the one batch that carried its alert,
so the engine's per-action machinery (idempotency ledger, audit record, retries, circuit
breaker) keeps its meaning:

- the batch answered 200: every alert in it was accepted;
- transport error or 5xx/429: every alert in it fails with that error (retryable): none
  is reported sent; each caller retries its own alert, which may ride a later batch;
- a 4xx: Alertmanager (0.25, checked) stores the valid alerts of a list and answers 400
  if any is malformed, without saying which in a form worth parsing: each alert is sent
  again on its own (re-sending an alert is idempotent), so only the malformed one fails.
"""

from __future__ import annotations

import asyncio
import weakref
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

__all__ = ["AlertBatcher", "BatchOutcome", "batcher_for"]


@dataclass(frozen=True)
class BatchOutcome:
    """How the POST that carried an alert went: ``error`` is None when Alertmanager accepted it."""

    batch_size: int
    status_code: int | None = None
    error: Exception | None = None  # httpx.HTTPError: the POST failed or was refused


_Item = tuple[dict[str, Any], "asyncio.Future[BatchOutcome]"]


class AlertBatcher:
    """One per (HTTP client, Alertmanager URL, event loop): see the module docstring.

    ``max_in_flight`` POSTs run at once; alerts submitted while they are all in flight wait
    and go out together in the next one, so batches grow with load and an idle system adds
    only ``linger_s`` (default: one turn of the event loop) to an alert.
    """

    def __init__(self, client: httpx.AsyncClient, url: str, *, linger_s: float = 0.0, max_batch: int = 200,
                 max_in_flight: int = 2) -> None:
        self._client = weakref.ref(client)  # the registry below is keyed by the client: no strong ref back
        self.url = url
        self.linger_s = linger_s
        self.max_batch = max_batch
        self.loop = asyncio.get_running_loop()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: list[_Item] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: POSTs sent and alerts they carried (tests and benches: fewer POSTs than alerts).
        self.posts = 0
        self.alerts = 0

    async def submit(self, alert: dict[str, Any]) -> BatchOutcome:
        """Send ``alert`` in the next batch and return how that batch went (never raises for
        the server's or the network's failures: ``BatchOutcome.error`` carries them)."""
        future: asyncio.Future[BatchOutcome] = self.loop.create_future()
        self._pending.append((alert, future))
        if not self._scheduled:
            self._scheduled = True
            self._spawn()
        # Posted by a task of its own: a cancelled caller does not cancel the others' alerts.
        return await future

    def _spawn(self) -> None:
        task = self.loop.create_task(self._flush_later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush_later(self) -> None:
        taken: list[_Item] = []
        try:
            await asyncio.sleep(self.linger_s)  # 0: the alerts of this turn of the loop go together
            async with self._slots:
                taken, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
                self._scheduled = bool(self._pending)
                if self._pending:  # more than one batch waiting: the rest go in the next POST
                    self._spawn()
                await self._post(taken)
        except BaseException as exc:  # a bug, or cancelled (loop shutting down): never leave a caller waiting
            stranded = taken if taken else self._pending
            if not taken:
                self._pending, self._scheduled = [], False
            if isinstance(exc, Exception):
                _settle(stranded, BatchOutcome(len(stranded), error=exc))
                return
            for _, future in stranded:
                future.cancel()
            raise

    async def _post(self, batch: list[_Item]) -> None:
        batch = [(alert, future) for alert, future in batch if not future.done()]  # skip cancelled callers
        if not batch:
            return
        self.posts += 1
        self.alerts += len(batch)
        client = self._client()
        if client is None:
            raise RuntimeError("the HTTP client of this batcher is gone")
        try:
            response = await client.post(self.url, content=_encode([alert for alert, _ in batch]), headers=_JSON)
        except httpx.HTTPError as exc:  # transport, timeout, protocol: the whole batch failed
            _settle(batch, BatchOutcome(len(batch), error=exc))
            return
        code = response.status_code
        if code == 200:
            _settle(batch, BatchOutcome(len(batch), code))
            return
        if len(batch) > 1 and 400 <= code < 500 and code != 429:
            # One malformed alert refuses the whole list: send each alone, only the culprit fails.
            await asyncio.gather(*(self._post([item]) for item in batch))
            return
        error = httpx.HTTPStatusError(f"answered {code}: {response.text[:300]}", request=response.request,
                                      response=response)
        _settle(batch, BatchOutcome(len(batch), code, error))


_JSON = {"content-type": "application/json"}
_encode = msgspec.json.Encoder().encode


def _settle(batch: list[_Item], outcome: BatchOutcome) -> None:
    for _, future in batch:
        if not future.done():
            future.set_result(outcome)


_batchers: weakref.WeakKeyDictionary[httpx.AsyncClient, dict[str, AlertBatcher]] = weakref.WeakKeyDictionary()


def batcher_for(client: httpx.AsyncClient, url: str) -> AlertBatcher:
    """The batcher of ``client`` posting to ``url`` on the running loop (created on first use)."""
    by_url = _batchers.setdefault(client, {})
    batcher = by_url.get(url)
    if batcher is None or batcher.loop is not asyncio.get_running_loop():
        batcher = by_url[url] = AlertBatcher(client, url)
    return batcher
