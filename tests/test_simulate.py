"""``aisoar.simulate``: its ``>>>`` examples (outside the default doctest paths) and the record
builders that tests and benchmarks feed the worker with."""

from __future__ import annotations

import doctest
from datetime import datetime, timezone

import aisoar.simulate
from aisoar.events import decode_inference, decode_prompt
from aisoar.simulate import (
    extraction_flood,
    inference_stream,
    principal_population,
    prompt_record,
    token_spend,
)

T0 = datetime(2026, 11, 25, 9, tzinfo=timezone.utc)


def test_doctests() -> None:
    result = doctest.testmod(aisoar.simulate)
    assert result.attempted >= 3 and result.failed == 0


def test_builders_make_records_the_strict_decoders_accept() -> None:
    prompts = [*principal_population(T0, users=3, calls_per_user=5), *token_spend(T0, "bob@corp.example", hours=2),
               prompt_record("p-tool", T0, "ann@corp.example", "hi", tool_calls=[{"name": "search", "output": "x"}])]
    inference = [*inference_stream(T0, "fraud", "3", 10, digest="sha256:" + "a" * 64),
                 *extraction_flood(T0, "fraud", "3", "svc-x", n=10)]
    events = [decode_prompt(value) for topic, _, value in prompts if topic == "ai.prompts"]
    assert len(events) == len(prompts)
    assert events[-1].tool_calls[0].output == "x"
    scores = [decode_inference(value).score for topic, _, value in inference if topic == "ai.inference"]
    assert len(scores) == len(inference) and all(s is not None and 0.0 <= s <= 1.0 for s in scores)


def test_baselines_are_seeded_ordered_and_keyed_as_asked() -> None:
    population = principal_population(T0, users=4, calls_per_user=10, key="population")
    assert population == principal_population(T0, users=4, calls_per_user=10, key="population")
    assert {key for _, key, _ in population} == {b"population"}
    times = [decode_prompt(value).timestamp for _, _, value in population]
    assert times == sorted(times)  # one key, one partition: the order the detector must see
    spend = token_spend(T0, "bob@corp.example", hours=6, calls_per_hour=3)
    assert len(spend) == 18 and {key for _, key, _ in spend} == {b"sess-bob"}
    assert [decode_inference(v).event_id for _, _, v in inference_stream(T0, "m", "1", 3, first=600)] == [
        "m-1-00600", "m-1-00601", "m-1-00602"]
    assert {key for _, key, _ in inference_stream(T0, "m", "1", 3)} == {b"m@1"}
