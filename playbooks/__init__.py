"""The SOAR half of aisoar: playbooks, policy, approvals, the action ledger, and actions.

Use :class:`Engine` (``handle_incident`` / ``approve`` / ``deny`` / ``expire`` / ``verify_due``, the last
with :class:`FindingsSignals`);
:func:`load_playbooks` / :func:`validate_all` read ``playbooks/definitions/``.
"""

from __future__ import annotations

from playbooks.actions import ACTIONS, Action, ActionContext, ActionResult
from playbooks.approvals import PendingApproval, Verification
from playbooks.approvals_client import ApprovalsClient
from playbooks.connections import (
    AlertmanagerSettings,
    Connections,
    MlflowSettings,
    OAuthSettings,
    PagerDutySettings,
    SlackSettings,
)
from playbooks.credentials import CredentialStore, InMemoryCredentialStore
from playbooks.engine import Engine, SignalReading, incident_from_finding
from playbooks.ledger import Ledger, LedgerEntry
from playbooks.loader import DEFAULT_DIR, Playbook, load_playbooks, validate_all
from playbooks.policy import Policy
from playbooks.verification import FindingsSignals

__all__ = [
    "ACTIONS",
    "DEFAULT_DIR",
    "Action",
    "ActionContext",
    "ActionResult",
    "AlertmanagerSettings",
    "ApprovalsClient",
    "Connections",
    "CredentialStore",
    "Engine",
    "FindingsSignals",
    "InMemoryCredentialStore",
    "Ledger",
    "LedgerEntry",
    "MlflowSettings",
    "OAuthSettings",
    "PagerDutySettings",
    "PendingApproval",
    "Playbook",
    "Policy",
    "SignalReading",
    "SlackSettings",
    "Verification",
    "incident_from_finding",
    "load_playbooks",
    "validate_all",
]
