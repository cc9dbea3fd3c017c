"""The audit record of a response action: every decision and result, on
``aisoar.actions`` and in the SIEM."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

__all__ = ["ActionRecord", "ActionStatus", "Decision", "Mode"]

Mode = Literal["auto", "approval", "observe"]
ActionStatus = Literal[
    "planned",  # observe mode / dry-run: what would be done
    "pending_approval",
    "approved",
    "denied",
    "expired",
    "running",
    "succeeded",
    "failed",
    "skipped",  # idempotency: already done; or a check refused
    "escalated",
    "verified",  # verify-after-acting: the signal that fired recovered
    "unverified",  # ... it did not (on-call is paged: a following "escalated")
]


class ActionRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One state change of one action. ``idempotency_key`` = (incident, action, target)."""

    id: str  # unique per record (idempotency_key + status + attempt)
    idempotency_key: str
    playbook: str
    action: str  # "identity:revoke_token", "registry:rollback", "oncall:alertmanager", ...
    target: str  # what is acted on: a credential id, "model@version", a receiver
    mode: Mode
    status: ActionStatus
    timestamp: datetime
    incident_id: str | None = None
    finding_id: str | None = None
    actor: str = "aisoar"  # who decided: "aisoar" (policy) or the approving person
    reason: str = ""
    request: dict[str, Any] = {}  # the exact request (method, url, redacted body); no secrets
    response_status: int | None = None
    duration_ms: float | None = None
    attempt: int = 0
    error: str | None = None


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """A person's approval or denial of a pending action. It travels through Kafka
    (keyed by the incident) so the worker owning the incident's ledger applies it."""

    action_id: str
    incident_id: str
    approve: bool
    actor: str
    at: datetime
