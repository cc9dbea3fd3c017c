"""Global response policy: kill switch, dry-run, blast-radius limits, retries, timeouts.

Loaded from the aisoar config (``playbooks.policy`` section; environment overrides
such as ``AISOAR_KILL_SWITCH=1`` are applied by the config loader).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

__all__ = ["Policy", "with_env"]


class Policy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: Nothing acts: every action is recorded ``skipped`` with its plan.
    kill_switch: bool = False
    #: Every playbook runs as ``observe``: actions are recorded ``planned`` with the exact request.
    dry_run: bool = False
    #: Token bucket on ``revoke`` actions; beyond it, actions wait for a human (``pending_approval``).
    max_revocations_per_minute: float = 30.0
    revocation_burst: float | None = None
    #: Principals (credential or user ids) never revoked automatically: auto becomes approval.
    never_auto_revoke: frozenset[str] = frozenset()
    approval_ttl_s: float = 3600.0
    #: Attempts per action (first try included); backoff doubles from ``backoff_s`` up to ``backoff_max_s``.
    max_attempts: int = 4
    backoff_s: float = 0.2
    backoff_max_s: float = 5.0
    breaker_failures: int = 5
    breaker_reset_s: float = 60.0
    #: Page on-call (``oncall:alertmanager``) when an action fails, is refused, or does not verify.
    escalate: bool = True
    escalation_alertname: str = "AisoarActionFailed"
    #: The page sent when a verification after acting finds the signal did not recover.
    verification_alertname: str = "AisoarVerificationFailed"
    #: How long after its due time a verification whose signal source is unavailable is retried.
    verify_give_up_s: float = 3600.0


_TRUE = {"1", "true", "yes", "on"}


def with_env(policy: Policy, environ: Mapping[str, str]) -> Policy:
    """``AISOAR_KILL_SWITCH`` / ``AISOAR_DRY_RUN`` (1/true/yes/on) override the file: the
    operator's emergency brake works without editing config.

    >>> with_env(Policy(), {"AISOAR_KILL_SWITCH": "1"}).kill_switch
    True
    """
    changes = {field: environ[var].strip().lower() in _TRUE
               for var, field in (("AISOAR_KILL_SWITCH", "kill_switch"), ("AISOAR_DRY_RUN", "dry_run"))
               if var in environ}
    return msgspec.structs.replace(policy, **changes) if changes else policy
