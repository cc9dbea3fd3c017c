"""Containment first: the detect stage waits while fan-out, correlation and respond are behind.

``DetectStage.make_way`` alone, with a backlog function standing in for the Faust agents'
queues (the real one, ``streams.agents.containment_backlog``, is read from a running worker
in ``tests/e2e/test_pipeline.py``). No Kafka is involved: ``make_way`` never touches it.
"""

from __future__ import annotations

import asyncio
import time

from aisoar.config import load_settings
from streams import metrics
from streams.detect import DetectStage


def _stage(backlog: object, *, limit: int = 10, max_pause_s: float = 0.25) -> DetectStage:
    env = {"AISOAR_WORKER__CONTAINMENT_BACKLOG_MAX": str(limit),
           "AISOAR_WORKER__CONTAINMENT_MAX_PAUSE_S": str(max_pause_s)}
    return DetectStage(load_settings(env=env), lambda: None, containment_backlog=backlog)  # type: ignore[arg-type,return-value]


def _paused_total() -> float:
    return metrics.DETECT_PAUSED_SECONDS._value.get()


def test_detection_waits_until_the_backlog_drains() -> None:
    queue = [40]

    async def drain() -> None:  # the containment agents taking records meanwhile
        while queue[0] > 0:
            await asyncio.sleep(0.01)
            queue[0] -= 5

    async def scenario() -> tuple[float, int]:
        stage = _stage(lambda: queue[0], limit=10, max_pause_s=5.0)
        drainer = asyncio.ensure_future(drain())
        started = time.monotonic()
        await stage.make_way()
        waited = time.monotonic() - started
        await drainer
        return waited, queue[0]

    before = _paused_total()
    waited, _ = asyncio.run(scenario())
    assert waited >= 0.05  # 40 -> 10 takes six 10 ms drain steps
    assert waited < 2.0  # ... and it resumed as soon as the backlog was at the limit, not at 5 s
    assert _paused_total() - before >= 0.05


def test_no_pause_at_or_under_the_limit() -> None:
    stage = _stage(lambda: 10, limit=10)
    before = _paused_total()
    started = time.monotonic()
    asyncio.run(stage.make_way())
    assert time.monotonic() - started < 0.05
    assert _paused_total() == before


def test_a_pause_is_bounded_when_containment_does_not_catch_up() -> None:
    stage = _stage(lambda: 10_000, limit=10, max_pause_s=0.2)
    started = time.monotonic()
    asyncio.run(stage.make_way())
    waited = time.monotonic() - started
    assert 0.2 <= waited < 1.0


def test_limit_zero_never_pauses() -> None:
    stage = _stage(lambda: 10_000, limit=0)
    started = time.monotonic()
    asyncio.run(stage.make_way())
    assert time.monotonic() - started < 0.05


def test_an_unreadable_backlog_disables_the_pause_instead_of_stopping_detection(caplog: object) -> None:
    def broken() -> int:
        raise AttributeError("_actors")

    stage = _stage(broken, limit=10)
    asyncio.run(stage.make_way())
    assert stage.containment_backlog is None
    asyncio.run(stage.make_way())  # and stays usable
    assert "no longer pauses" in caplog.text  # type: ignore[attr-defined]


def test_the_gauge_reports_minus_one_when_the_backlog_is_unreadable() -> None:
    def broken() -> int:
        raise AttributeError("_actors")

    assert metrics.or_minus_one(broken)() == -1.0
    assert metrics.or_minus_one(lambda: 7)() == 7.0
