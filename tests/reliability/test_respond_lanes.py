"""The respond agent's lanes (``streams.agents._Lanes``): each key's records in order,
independent keys concurrently, each record acknowledged only once its playbooks are done.

The Faust stream is stood in for by an object that records acknowledgements: what is
tested is the scheduling and acknowledgement order, which needs no broker. The real agent
runs them against Kafka in ``tests/e2e/test_response.py`` and ``tests/reliability/test_faults.py``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from streams.agents import _Lanes


@dataclass
class _Event:
    key: bytes
    n: int


@dataclass
class _Stream:
    acked: list[tuple[bytes, int]] = field(default_factory=list)

    async def ack(self, event: Any) -> bool:
        self.acked.append((event.key, event.n))
        return True


def test_a_slow_incident_holds_up_only_its_own_key() -> None:
    """A registry rollback takes seconds; the revocations of other keys go on meanwhile."""

    async def scenario() -> tuple[list[tuple[bytes, int]], list[tuple[bytes, int]]]:
        stream, release, done = _Stream(), asyncio.Event(), []

        async def handle(event: Any) -> None:
            if event.key == b"model" and event.n == 0:
                await release.wait()  # the slow rollback
            done.append((event.key, event.n))

        lanes = _Lanes(stream, concurrency=4, max_in_flight=16, handle=handle)  # type: ignore[arg-type]
        for event in (_Event(b"model", 0), _Event(b"model", 1), _Event(b"cred-a", 0), _Event(b"cred-b", 0),
                      _Event(b"cred-a", 1)):
            await lanes.submit(event)  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        before_release = list(stream.acked)
        release.set()
        while lanes.tasks:
            await asyncio.sleep(0.01)
        return before_release, stream.acked

    before, after = asyncio.run(scenario())
    # not waiting for the rollback; each key in its order (keys interleave as they may)
    assert sorted(before) == [(b"cred-a", 0), (b"cred-a", 1), (b"cred-b", 0)]
    assert [n for key, n in before if key == b"cred-a"] == [0, 1]
    assert after[3:] == [(b"model", 0), (b"model", 1)]  # the model's records in order, after it


def test_nothing_is_acknowledged_before_it_is_done() -> None:
    async def scenario() -> list[tuple[bytes, int]]:
        stream, gate = _Stream(), asyncio.Event()

        async def handle(event: Any) -> None:
            await gate.wait()

        lanes = _Lanes(stream, concurrency=2, max_in_flight=8, handle=handle)  # type: ignore[arg-type]
        for i in range(3):
            await lanes.submit(_Event(b"k%d" % i, 0))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        acked_while_blocked = list(stream.acked)
        gate.set()
        while lanes.tasks:
            await asyncio.sleep(0.01)
        return acked_while_blocked + [(b"-", -1)] + stream.acked

    result = asyncio.run(scenario())
    assert result[0] == (b"-", -1)  # none acknowledged while the handler was blocked
    assert sorted(result[1:]) == [(b"k0", 0), (b"k1", 0), (b"k2", 0)]


def test_records_in_flight_are_bounded() -> None:
    async def scenario() -> tuple[int, bool]:
        stream, gate = _Stream(), asyncio.Event()

        async def handle(event: Any) -> None:
            await gate.wait()

        lanes = _Lanes(stream, concurrency=2, max_in_flight=3, handle=handle)  # type: ignore[arg-type]
        for i in range(3):
            await lanes.submit(_Event(b"k", i))  # type: ignore[arg-type]
        fourth = asyncio.ensure_future(lanes.submit(_Event(b"k", 3)))  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        blocked = not fourth.done()  # the agent stops taking records: Kafka keeps them
        gate.set()
        await fourth
        while lanes.tasks:
            await asyncio.sleep(0.01)
        return len(stream.acked), blocked

    acked, blocked = asyncio.run(scenario())
    assert blocked and acked == 4


def test_a_failed_record_is_not_acknowledged_and_stops_the_agent() -> None:
    async def scenario() -> tuple[list[tuple[bytes, int]], BaseException | None]:
        stream = _Stream()

        async def handle(event: Any) -> None:
            if event.n == 1:
                raise RuntimeError("engine bug")

        lanes = _Lanes(stream, concurrency=2, max_in_flight=8, handle=handle)  # type: ignore[arg-type]
        await lanes.submit(_Event(b"k", 0))  # type: ignore[arg-type]
        await lanes.submit(_Event(b"k", 1))  # type: ignore[arg-type]
        await lanes.submit(_Event(b"k", 2))  # type: ignore[arg-type]
        while lanes.tasks:
            await asyncio.sleep(0.01)
        raised = None
        try:
            await lanes.submit(_Event(b"j", 0))  # type: ignore[arg-type]
        except RuntimeError as exc:
            raised = exc
        return stream.acked, raised

    acked, raised = asyncio.run(scenario())
    assert acked == [(b"k", 0)]  # 1 failed and 2 was never run: both replayed after the restart
    assert isinstance(raised, RuntimeError)


@pytest.mark.parametrize("concurrency", [1, 3])
def test_at_most_concurrency_records_run_at_once(concurrency: int) -> None:
    async def scenario() -> int:
        running, peak = [0], [0]

        async def handle(event: Any) -> None:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            await asyncio.sleep(0.01)
            running[0] -= 1

        lanes = _Lanes(_Stream(), concurrency=concurrency, max_in_flight=64, handle=handle)  # type: ignore[arg-type]
        for i in range(12):
            await lanes.submit(_Event(b"k%d" % i, 0))  # type: ignore[arg-type]
        while lanes.tasks:
            await asyncio.sleep(0.01)
        return peak[0]

    assert asyncio.run(scenario()) == concurrency
