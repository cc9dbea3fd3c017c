"""Verify-after-acting signal lookups: did the signal that made a playbook act recover?

Read from the findings the worker already indexes in the SIEM, so the answer is the same
on every worker and after any restart (detector state lives in one worker's memory; the
index is shared and durable):

- ``credential_activity`` (after a revocation): any finding with the revoked principal
  (credential id, or user id for principal-keyed playbooks) whose event time is after the
  action means the principal stayed active;
- ``model_drift`` (after a rollback or quarantine): any drift / poisoning finding on the
  version now served (the rollback's result; else the acted-on version) after the action.

Findings still in the pipeline when the check runs are not seen: ``verify_after`` should
exceed the detection-to-index delay (seconds), which any real setting (minutes) does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC
from typing import Any

from playbooks.approvals import Verification
from playbooks.engine import SignalReading

__all__ = ["FindingsSignals", "signal_query"]

#: ``count(query)``: how many finding documents match an OpenSearch / Elasticsearch query.
CountFindings = Callable[[Mapping[str, Any]], Awaitable[int]]

_MODEL_CATEGORIES = ["drift", "poisoning"]


def signal_query(v: Verification) -> tuple[dict[str, Any], str]:
    """The findings query whose hits mean "not recovered", and what it watches (for the audit)."""
    since = {"range": {"@timestamp": {"gt": v.acted_at.astimezone(UTC).isoformat()}}}
    if v.signal == "credential_activity":
        principal = v.target
        query = {"bool": {"filter": [since], "minimum_should_match": 1, "should": [
            {"term": {"aisoar.entities.credential_id": principal}},
            {"term": {"aisoar.entities.user_id": principal}}]}}
        return query, f"findings of {principal}"
    if v.signal == "model_drift":
        name = str(v.params.get("model_name") or v.entities.model_name or "")
        version = str(v.result.get("to") or v.params.get("model_version") or v.entities.model_version or "")
        query = {"bool": {"filter": [
            since, {"term": {"aisoar.entities.model_name": name}},
            {"term": {"aisoar.entities.model_version": version}},
            {"terms": {"aisoar.category": _MODEL_CATEGORIES}}]}}
        return query, f"drift findings of {name} v{version}"
    raise ValueError(f"no lookup for signal {v.signal!r}")


class FindingsSignals:
    """A :data:`playbooks.engine.SignalLookup` over the SIEM's findings index."""

    def __init__(self, count: CountFindings) -> None:
        self.count = count

    async def __call__(self, v: Verification) -> SignalReading:
        query, watched = signal_query(v)
        hits = await self.count(query)
        return SignalReading(hits == 0, f"{hits} {watched} since acting")
