"""Pending approvals (and scheduled verifications), kept in ``MutableMapping[str, bytes]`` stores.

A pending approval holds everything needed to run the step later through the same
dispatch path: the playbook, the step, the incident, the rendered params. It
expires ``approval_ttl_s`` after creation (event time / ``now`` passed in).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from datetime import datetime
from typing import Any, Generic, TypeVar

import msgspec

from aisoar.actions import Mode
from aisoar.findings import Entities
from aisoar.incidents import Incident

__all__ = ["PendingApproval", "StructStore", "Verification"]


class PendingApproval(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    action_id: str
    key: str  # idempotency key
    playbook: str
    step: int
    action: str
    target: str
    params: dict[str, Any]  # rendered, no secrets (credential ids, model versions)
    incident: Incident
    mode: Mode
    created_at: datetime
    expires_at: datetime
    reason: str = ""
    verify_after: float | None = None


class Verification(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A check scheduled after an action succeeded: did the signal that fired recover?"""

    action_id: str
    key: str
    playbook: str
    action: str
    target: str
    signal: str  # "credential_activity" | "model_drift"
    incident_id: str
    rule_id: str
    entities: Entities
    params: dict[str, Any]
    acted_at: datetime
    due_at: datetime
    result: dict[str, Any] = {}  # the action's result detail, e.g. the version the alias now serves


T = TypeVar("T", bound=msgspec.Struct)


class StructStore(Generic[T]):
    """Typed view (msgspec JSON) over a ``MutableMapping[str, bytes]`` store."""

    def __init__(self, kind: type[T], store: MutableMapping[str, bytes] | None = None) -> None:
        self.store: MutableMapping[str, bytes] = {} if store is None else store
        self._decoder = msgspec.json.Decoder(kind)

    def get(self, key: str) -> T | None:
        raw = self.store.get(key)
        return None if raw is None else self._decoder.decode(raw)

    def put(self, key: str, value: T) -> None:
        self.store[key] = msgspec.json.encode(value)

    def pop(self, key: str) -> T | None:
        raw = self.store.pop(key, None)
        return None if raw is None else self._decoder.decode(raw)

    def __iter__(self) -> Iterator[T]:
        for raw in list(self.store.values()):
            yield self._decoder.decode(raw)

    def __len__(self) -> int:
        return len(self.store)
