"""The playbook engine: the ONE path by which aisoar acts (:meth:`Engine.dispatch`).

For each step of a matching playbook, dispatch applies, in order:

1. kill switch (nothing acts: ``skipped`` + plan) / global dry-run (everything observes);
2. mode: ``observe`` records ``planned`` with the exact request and stops;
   ``approval`` records ``pending_approval`` and stops until :meth:`Engine.approve`;
3. idempotency (ledger key = incident, action, target): ``done`` → ``skipped``; a
   ``pending`` left by a crash is re-checked at the target (``already_done``) first;
   across incidents, the same side effect on the same target (``Action.effect``, e.g.
   "revoke these tokens of credential C") runs once: a second incident's step is
   ``skipped`` with a reference to the first (an ``effect|...`` ledger entry);
4. blast radius: revocations beyond the token bucket, or of an allow-listed principal,
   wait for a human instead of running (``pending_approval``);
5. pre-flight checks (a refusal is ``skipped`` + escalation), then run with capped
   exponential-backoff retries through the endpoint's circuit breaker;
6. audit: an :class:`ActionRecord` per state change through the injected ``emit``;
7. failure → ``failed``, then on-call is paged (``oncall:alertmanager``) → ``escalated``.

After success, steps with ``verify_after`` schedule a verification that
:meth:`Engine.verify_due` runs: if the signal did not recover, ``unverified`` is recorded
and on-call is paged; else ``verified``. The worker calls :meth:`Engine.verify_due` and
:meth:`Engine.expire` from a timer, per partition (``owns``), in stream context.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec

from aisoar.actions import ActionRecord, ActionStatus, Mode
from aisoar.errors import ActionCheckFailed, ActionError, CircuitOpen, ConfigError
from aisoar.findings import Finding
from aisoar.incidents import Incident
from playbooks.actions import ACTIONS, Action, ActionContext
from playbooks.actions.base import TargetHTTPError
from playbooks.approvals import PendingApproval, StructStore, Verification
from playbooks.breaker import Breakers
from playbooks.connections import Connections
from playbooks.credentials import CredentialStore, InMemoryCredentialStore
from playbooks.ledger import Ledger, LedgerEntry, LedgerState, idempotency_key
from playbooks.loader import Playbook, Step
from playbooks.policy import Policy
from playbooks.ratelimit import TokenBucket
from playbooks.templating import TemplateError, context_for, render_params

__all__ = ["Emit", "Engine", "SignalLookup", "SignalReading", "action_id_for", "effect_key", "incident_from_finding"]

log = logging.getLogger("aisoar.playbooks.engine")

Emit = Callable[[ActionRecord], Awaitable[None]]


class SignalReading(msgspec.Struct, frozen=True):
    """What a signal lookup saw: whether the signal recovered, and a short, secret-free why."""

    recovered: bool
    detail: str = ""


#: Whether the signal behind a verification recovered (True, or a :class:`SignalReading`) —
#: may be async; raising means "cannot tell now" (retried on the next call).
SignalLookup = Callable[[Verification], "bool | SignalReading | Awaitable[bool | SignalReading]"]
#: Which incidents a caller may touch (the worker: those of one partition).
Owns = Callable[[str], bool]


_NO_CONNECTIONS = Connections()
_DEFAULT_POLICY = Policy()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def action_id_for(key: str) -> str:
    """A short stable id for an idempotency key: what approvers and the API use."""
    return "act-" + hashlib.blake2b(key.encode(), digest_size=6).hexdigest()


def effect_key(action: str, effect: str) -> str:
    """The ledger key of one side effect on one target, shared by every incident."""
    return f"effect|{action}|{effect}"


def incident_from_finding(finding: Finding) -> Incident:
    """Wrap a finding as a one-finding incident, until correlation feeds incidents."""
    return Incident(
        id=f"finding-{finding.id}", rule_id="finding", rule_name=finding.rule_name, status="open",
        severity=finding.severity, risk_score=finding.confidence * 100, first_seen=finding.timestamp,
        last_seen=finding.timestamp, entities=finding.entities, correlation_key=f"finding:{finding.id}",
        finding_ids=(finding.id,), finding_count=1, categories=(finding.category,), rule_ids=(finding.rule_id,),
        atlas=finding.atlas, owasp=finding.owasp, summary=finding.description or finding.rule_name,
    )


class _Job:
    """One step of one playbook on one incident, with everything dispatch derives from it."""

    def __init__(self, playbook: Playbook, step: Step, step_index: int, incident: Incident, action: Action[Any],
                 ctx: ActionContext[Any], raw: dict[str, Any], mode: Mode) -> None:
        self.playbook, self.step, self.step_index, self.incident = playbook, step, step_index, incident
        self.action, self.ctx, self.raw, self.mode = action, ctx, raw, mode
        self.target = action.target(ctx.params)
        self.key = idempotency_key(incident.id, action.name, self.target)
        self.action_id = action_id_for(self.key)
        self.effect: str | None = None  # effect_key(...), set by _prepare for side effects
        self.took_revocation = False  # took a token of the revocation bucket (given back if nothing was revoked)


class Engine:
    """Decides and acts on incidents. All state that must survive a restart lives in the
    three injected ``MutableMapping[str, bytes]`` stores (ledger, approvals, verifications)."""

    def __init__(
        self,
        playbooks: Iterable[Playbook],
        *,
        client: httpx.AsyncClient,
        connections: Connections = _NO_CONNECTIONS,
        credentials: CredentialStore | None = None,
        emit: Emit | None = None,
        policy: Policy = _DEFAULT_POLICY,
        ledger_store: MutableMapping[str, bytes] | None = None,
        approvals_store: MutableMapping[str, bytes] | None = None,
        verifications_store: MutableMapping[str, bytes] | None = None,
        actions: Mapping[str, Action[Any]] = ACTIONS,
        clock: Callable[[], datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        write_ahead: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.playbooks = {p.name: p for p in playbooks}
        self.client = client
        self.connections = connections
        self.credentials = credentials if credentials is not None else InMemoryCredentialStore()
        self.policy = policy
        self.ledger = Ledger(ledger_store)
        self.approvals: StructStore[PendingApproval] = StructStore(PendingApproval, approvals_store)
        self.verifications: StructStore[Verification] = StructStore(Verification, verifications_store)
        self.actions = actions
        self.clock, self.monotonic, self.sleep = clock, monotonic, sleep
        #: Makes the ledger's "pending" durable before a side effect (the worker: flush the
        #: changelog to Kafka), so a crash right after acting leaves "pending", re-checked at
        #: the target, never "nothing", which would act again.
        self.write_ahead = write_ahead
        self.breakers = Breakers(failure_threshold=policy.breaker_failures, reset_after=policy.breaker_reset_s)
        self.revocations = TokenBucket(policy.max_revocations_per_minute, policy.revocation_burst)
        self._emit = emit
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._verifying: set[str] = set()
        self._expiring: set[str] = set()
        #: Idempotency keys whose "already done" replay record this process has emitted.
        self._audited_done: set[str] = set()

    # ------------------------------------------------------------------ entry points
    def matching(self, incident: Incident, *, closing: bool = False) -> list[Playbook]:
        return [p for p in self.playbooks.values() if p.matches(incident, closing=closing)]

    async def handle_incident(self, incident: Incident, now: datetime | None = None) -> list[ActionRecord]:
        """Run every playbook matching ``incident`` (a closed incident resolves its alerts)."""
        now = now or self.clock()
        if incident.status == "closed":
            return await self._resolve_notifications(incident, now)
        records: list[ActionRecord] = []
        for playbook in self.matching(incident):
            for index in range(len(playbook.steps)):
                step_records = await self.dispatch(playbook, index, incident, now=now)
                records.extend(step_records)
                if step_records and step_records[-1].status in ("failed", "escalated"):
                    break  # later steps may depend on this one; on-call has been paged
        return records

    async def handle_finding(self, finding: Finding, now: datetime | None = None) -> list[ActionRecord]:
        return await self.handle_incident(incident_from_finding(finding), now)

    async def dispatch(self, playbook: Playbook, step_index: int, incident: Incident, *, now: datetime | None = None,
                       approved_by: str | None = None, step: Step | None = None) -> list[ActionRecord]:
        """The one path that acts. Returns the records it emitted, in order."""
        now = now or self.clock()
        step = step or playbook.steps[step_index]
        records: list[ActionRecord] = []
        job = await self._prepare(playbook, step, step_index, incident, now, approved_by, records)
        if job is None:
            return records
        lock_key = job.effect or job.key  # the effect key spans incidents: two incidents, one revocation
        lock = self._locks.get(lock_key)
        if lock is None:
            lock = self._locks[lock_key] = asyncio.Lock()
        async with lock:  # one dispatch per key at a time (concurrent agents, approve racing a replay)
            await self._dispatch(job, now, approved_by, records)
        return records

    # ------------------------------------------------------------------ approvals
    def list_pending(self, now: datetime | None = None) -> list[PendingApproval]:
        pending = sorted(self.approvals, key=lambda p: p.created_at)
        return [p for p in pending if now is None or p.expires_at > now]

    async def approve(self, action_id: str, actor: str, now: datetime | None = None) -> list[ActionRecord]:
        """Approve a pending action and run it through :meth:`dispatch`. ``KeyError`` if unknown."""
        now = now or self.clock()
        pending = self._take_pending(action_id)
        if pending.expires_at <= now:
            return [await self._expire(pending, now)]
        playbook = self.playbooks.get(pending.playbook)
        records = [await self._record_pending(pending, "approved", actor=actor, reason="approved")]
        if playbook is None or pending.step >= len(playbook.steps):
            records.append(await self._record_pending(pending, "failed", actor=actor,
                                                      error="playbook no longer loaded"))
            return records
        return records + await self.dispatch(playbook, pending.step, pending.incident, now=now, approved_by=actor)

    async def deny(self, action_id: str, actor: str, now: datetime | None = None) -> list[ActionRecord]:
        now = now or self.clock()
        pending = self._take_pending(action_id)
        if pending.expires_at <= now:
            return [await self._expire(pending, now)]
        self._ledger_put(pending.key, "denied", pending.action, pending.target, pending.playbook,
                         pending.incident.id, pending.action_id, now, actor=actor)
        return [await self._record_pending(pending, "denied", actor=actor, reason="denied")]

    async def expire(self, now: datetime | None = None, *, owns: Owns | None = None) -> list[ActionRecord]:
        """Expire pending approvals older than the TTL (the worker calls this from a timer,
        for the incidents of one partition: ``owns``). The record is emitted before the
        approval is dropped, so a crash in between re-emits the same record id, never loses it."""
        now = now or self.clock()
        records: list[ActionRecord] = []
        for pending in sorted(self.approvals, key=lambda p: p.expires_at):
            if pending.expires_at > now or (owns is not None and not owns(pending.incident.id)):
                continue
            if self.approvals.get(pending.action_id) is None or pending.action_id in self._expiring:
                continue  # decided meanwhile
            self._expiring.add(pending.action_id)  # a decision arriving during the awaits below is refused
            try:
                records.append(await self._expire(pending, now))
                self.approvals.pop(pending.action_id)
            finally:
                self._expiring.discard(pending.action_id)
        return records

    # ------------------------------------------------------------------ verification
    async def verify_due(self, now: datetime, signal_lookup: SignalLookup, *,
                         owns: Owns | None = None) -> list[ActionRecord]:
        """Run due verifications: ``signal_lookup(v)`` tells whether the signal recovered
        (no drift finding on the restored version, no activity of the revoked credential
        since acting). Recovered → ``verified``; not → ``unverified`` and on-call is paged
        (``escalated``). A lookup that raises is retried on the next call, until
        ``policy.verify_give_up_s`` after the due time, then counts as not recovered.
        Records are emitted before the verification is dropped (deterministic ids: a
        crash in between re-emits the same records)."""
        records: list[ActionRecord] = []
        for v in sorted(self.verifications, key=lambda v: v.due_at):
            if v.due_at > now or (owns is not None and not owns(v.incident_id)):
                continue
            if v.action_id in self._verifying or self.verifications.get(v.action_id) is None:
                continue
            self._verifying.add(v.action_id)
            try:
                records.extend(await self._verify(v, now, signal_lookup))
            finally:
                self._verifying.discard(v.action_id)
        return records

    async def _verify(self, v: Verification, now: datetime, signal_lookup: SignalLookup) -> list[ActionRecord]:
        late = (now - v.due_at).total_seconds()
        try:
            answer = signal_lookup(v)
            reading = await answer if inspect.isawaitable(answer) else answer
        except Exception as exc:  # noqa: BLE001 -- the signal source is down: try again later
            if late < self.policy.verify_give_up_s:
                log.warning("verification of %s on %s postponed: signal unavailable (%s)",
                            v.action, v.target, type(exc).__name__)
                return []
            reading = SignalReading(False, f"signal unavailable ({type(exc).__name__}) for {late:.0f}s")
        if not isinstance(reading, SignalReading):
            reading = SignalReading(bool(reading))
        detail = f" ({reading.detail})" if reading.detail else ""
        base: dict[str, Any] = {"idempotency_key": v.key, "playbook": v.playbook, "action": v.action,
                                "target": v.target, "mode": "auto", "timestamp": self.clock(),
                                "incident_id": v.incident_id}
        records: list[ActionRecord] = []
        if reading.recovered:
            records.append(await self._emit_record(ActionRecord(
                **base, id=f"{v.action_id}:verified:0", status="verified",
                reason=f"verified: {v.signal} recovered{detail}")))
        else:
            reason = (f"verification failed: {v.signal} did not recover "
                      f"{(now - v.acted_at).total_seconds():.0f}s after acting{detail}")
            records.append(await self._emit_record(ActionRecord(
                **base, id=f"{v.action_id}:unverified:0", status="unverified", reason=reason)))
            records.append(await self._escalate_raw({**base, "id": f"{v.action_id}:verify-escalated:0"},
                                                    v.incident_id, v.rule_id, reason, now,
                                                    alertname=self.policy.verification_alertname))
        self.verifications.pop(v.action_id)
        return records

    # ------------------------------------------------------------------ internals
    async def _prepare(self, playbook: Playbook, step: Step, step_index: int, incident: Incident, now: datetime,
                       approved_by: str | None, records: list[ActionRecord]) -> _Job | None:
        action = self.actions[step.action]
        mode: Mode = "observe" if self.policy.dry_run else (step.mode or playbook.mode)
        try:
            raw = render_params(step.params, context_for(incident))
            params = action.check_parameters(raw)
        except (TemplateError, ConfigError) as exc:
            key = idempotency_key(incident.id, action.name, f"step{step_index}")
            records.append(await self._emit_record(ActionRecord(
                id=f"{action_id_for(key)}:skipped:0", idempotency_key=key, playbook=playbook.name,
                action=action.name, target="", mode=mode, status="skipped", timestamp=self.clock(),
                incident_id=incident.id, reason="parameters could not be rendered", error=str(exc))))
            return None
        ctx = ActionContext(params=params, client=self.client, connections=self.connections, now=now,
                            incident=incident, credentials=self.credentials)
        job = _Job(playbook, step, step_index, incident, action, ctx, raw, mode)
        if approved_by is None and await self._settled(job, records):
            return None
        try:
            effect = await action.effect(ctx)
        except Exception as exc:  # noqa: BLE001 -- e.g. the credential store: dedupe per incident only
            log.warning("effect of %s on %s unknown (%s)", action.name, job.target, type(exc).__name__)
            effect = None
        job.effect = None if effect is None else effect_key(action.name, effect)
        return job

    async def _settled(self, job: _Job, records: list[ActionRecord]) -> bool:
        """Fast path for a revision of an incident whose step is already settled: what
        :meth:`_dispatch` would decide from the ledger alone, without the effect lookup
        (a credential-store read), the lock or a write-ahead flush. Every incident update
        lands here (the worker re-sends an incident per finding). Settled states are final
        (``done``, ``planned``, a human's ``pending_approval`` / ``denied``), so reading
        them outside the lock is safe. The "already done" audit record is emitted once per
        key per process (same record id: a replay after a restart re-emits it once), not
        once per revision."""
        if self.policy.kill_switch:
            return False
        entry = self.ledger.get(job.key)
        if entry is None:
            return False
        if job.mode == "observe":
            return entry.state in ("planned", "done")
        if entry.state in ("pending_approval", "denied"):
            return True
        if entry.state != "done":
            return False
        if job.key not in self._audited_done:
            self._audited_done.add(job.key)
            records.append(await self._record(job, "skipped", reason="already done (idempotency key)"))
        return True

    async def _dispatch(self, job: _Job, now: datetime, approved_by: str | None, records: list[ActionRecord]) -> None:
        action, policy = job.action, self.policy
        # 1. kill switch: record what would have happened, do nothing.
        if policy.kill_switch:
            records.append(await self._record(job, "skipped", request=await self._plan(job),
                                              reason="kill switch engaged"))
            return
        entry = self.ledger.get(job.key)
        # 2. mode
        if job.mode == "observe":
            if entry is not None and entry.state in ("planned", "done"):
                return  # already planned (replayed incident): nothing new to record
            plan = await self._plan(job)
            self._put(job, "planned", now)
            records.append(await self._record(job, "planned", request=plan, reason="observe mode"))
            return
        # 3. idempotency
        if entry is not None:
            if entry.state == "done":
                records.append(await self._record(job, "skipped", reason="already done (idempotency key)"))
                return
            if entry.state in ("pending_approval", "denied") and approved_by is None:
                return  # waiting for / refused by a human: a replayed incident changes nothing
            if entry.state == "pending" and await self._in_effect(job):
                self._put(job, "done", now, attempts=entry.attempts)
                self._put_effect(job, "done", now)
                records.append(await self._record(job, "skipped", reason="already in effect at target "
                                                  "(re-checked a pending entry after a restart)",
                                                  record_id=f"{job.action_id}:skipped:rechecked"))
                return
        # 3b. the same side effect, already done for another incident (or in flight when a crash hit)
        if job.effect is not None:
            first = self.ledger.get(job.effect)
            first_key = first.result.get("idempotency_key") if first is not None else None
            if first is not None and first_key != job.key and (
                    first.state == "done" or (first.state == "pending" and await self._in_effect(job))):
                self._put(job, "done", now, actor=approved_by or "aisoar",
                          result={"duplicate_of": first_key, "first_action_id": first.action_id})
                records.append(await self._record(
                    job, "skipped", actor=approved_by or "aisoar", record_id=f"{job.action_id}:skipped:duplicate",
                    reason=f"already done for incident {first.incident_id} (action {first.action_id}, "
                           f"key {first_key})"))
                return
        if job.mode == "approval" and approved_by is None:
            await self._ask_approval(job, now, "playbook mode: approval", records)
            return
        # 4. blast radius (a human's approval overrides these two)
        if approved_by is None and action.kind == "revoke":
            principal = action.principal(job.ctx.params)
            if principal is not None and principal in policy.never_auto_revoke:
                await self._ask_approval(job, now, "principal on the never-auto-revoke allow-list", records)
                return
            if not self.revocations.take(self.monotonic()):
                await self._ask_approval(job, now, f"revocation rate limit "
                                         f"({policy.max_revocations_per_minute:g}/min) reached", records)
                return
            job.took_revocation = True
        # 5. checks + run with retries through the endpoint's breaker
        await self._run(job, now, approved_by, records)

    async def _run(self, job: _Job, now: datetime, approved_by: str | None, records: list[ActionRecord]) -> None:
        action, policy = job.action, self.policy
        actor = approved_by or "aisoar"
        breaker = self.breakers[action.endpoint(job.ctx)]
        self._put(job, "pending", now, actor=actor)  # before any side effect
        self._put_effect(job, "pending", now)
        if self.write_ahead is not None:
            try:
                await self.write_ahead()
            except Exception as exc:  # noqa: BLE001 -- containment beats the rare replay: act anyway
                log.warning("ledger not confirmed durable before %s on %s (%s)", action.name, job.target,
                            type(exc).__name__)
        records.append(await self._record(job, "running", actor=actor, attempt=1))
        request: dict[str, Any] = {}
        error: ActionError | None = None
        attempt = 0
        for attempt in range(1, policy.max_attempts + 1):
            try:
                breaker.before_call(self.monotonic(), action=action.name, target=job.target)
                request = request or await action.plan(job.ctx)
                await action.checks(job.ctx)
                started = self.monotonic()
                result = await action.run(job.ctx)
                duration = (self.monotonic() - started) * 1000
            except ActionCheckFailed as exc:
                breaker.success()  # the target answered; it is the situation that refuses
                if job.took_revocation:  # nothing was revoked: the blast-radius budget is not spent
                    self.revocations.give_back()
                    job.took_revocation = False
                self._put(job, "skipped", now, actor=actor, attempts=attempt)
                self._put_effect(job, "skipped", now)
                records.append(await self._record(job, "skipped", actor=actor, attempt=attempt, request=request,
                                                  reason="pre-flight check refused", error=str(exc)))
                records.append(await self._escalate(job, f"{action.name} refused on {job.target}: {exc}", now))
                return
            except CircuitOpen as exc:
                error = exc
                break
            except ActionError as exc:
                breaker.failure(self.monotonic(), getattr(exc, "call", None))
                error = exc
                if isinstance(exc, TargetHTTPError) and not exc.retryable:
                    break
                if attempt < policy.max_attempts:
                    delay = min(policy.backoff_s * 2 ** (attempt - 1), policy.backoff_max_s)
                    log.warning("action %s on %s failed (attempt %d), retrying in %.2fs: %s",
                                action.name, job.target, attempt, delay, exc)
                    await self.sleep(delay)
                continue
            except Exception as exc:  # noqa: BLE001 -- a bug: never retry blindly, but do page
                error = ActionError(f"unexpected {type(exc).__name__}: {exc}", action=action.name, target=job.target)
                error.__cause__ = exc
                break
            breaker.success()
            self._put(job, "done", now, actor=actor, attempts=attempt, result=result.detail)
            self._put_effect(job, "done", now)
            records.append(await self._record(job, "succeeded", actor=actor, attempt=attempt, request=request,
                                              response_status=result.response_status, duration_ms=duration,
                                              reason=_summary(result.detail)))
            self._schedule_verification(job, now, result.detail)
            return
        assert error is not None
        self._put(job, "failed", now, actor=actor, attempts=attempt)
        self._put_effect(job, "failed", now)
        records.append(await self._record(job, "failed", actor=actor, attempt=attempt, request=request,
                                          response_status=getattr(error, "status_code", None), error=str(error)))
        records.append(await self._escalate(job, f"{action.name} failed on {job.target}: {error}", now))

    async def _in_effect(self, job: _Job) -> bool:
        try:
            return await job.action.already_done(job.ctx)
        except ActionError as exc:  # cannot tell: fall through to a (idempotent) retry
            log.warning("re-check of pending %s on %s failed: %s", job.action.name, job.target, exc)
            return False

    async def _plan(self, job: _Job) -> dict[str, Any]:
        try:
            return await job.action.plan(job.ctx)
        except ActionError as exc:
            return {"error": f"plan unavailable: {exc}"}

    async def _ask_approval(self, job: _Job, now: datetime, reason: str, records: list[ActionRecord]) -> None:
        if self.approvals.get(job.action_id) is not None:
            return
        pending = PendingApproval(
            action_id=job.action_id, key=job.key, playbook=job.playbook.name, step=job.step_index,
            action=job.action.name, target=job.target, params=job.raw, incident=job.incident, mode=job.mode,
            created_at=now, expires_at=now + timedelta(seconds=self.policy.approval_ttl_s), reason=reason,
            verify_after=job.step.verify_after)
        self.approvals.put(job.action_id, pending)
        self._put(job, "pending_approval", now)
        records.append(await self._record(job, "pending_approval", request=await self._plan(job), reason=reason))

    def _take_pending(self, action_id: str) -> PendingApproval:
        if action_id in self._expiring:
            raise KeyError(action_id)  # being expired right now (the timer and a decision raced)
        pending = self.approvals.pop(action_id)
        if pending is None:
            raise KeyError(action_id)
        return pending

    async def _expire(self, pending: PendingApproval, now: datetime) -> ActionRecord:
        record = await self._record_pending(pending, "expired", reason=f"approval not given within "
                                            f"{self.policy.approval_ttl_s:g}s")
        self._ledger_put(pending.key, "expired", pending.action, pending.target, pending.playbook,
                         pending.incident.id, pending.action_id, now)
        return record

    async def _record_pending(self, pending: PendingApproval, status: ActionStatus, *, actor: str = "aisoar",
                              reason: str = "", error: str | None = None) -> ActionRecord:
        return await self._emit_record(ActionRecord(
            id=f"{pending.action_id}:{status}:0", idempotency_key=pending.key, playbook=pending.playbook,
            action=pending.action, target=pending.target, mode=pending.mode, status=status,
            timestamp=self.clock(), incident_id=pending.incident.id, actor=actor, reason=reason, error=error))

    def _schedule_verification(self, job: _Job, now: datetime, result: Mapping[str, Any]) -> None:
        signal = job.action.verify_signal
        if signal is None or job.step.verify_after is None:
            return
        self.verifications.put(job.action_id, Verification(
            action_id=job.action_id, key=job.key, playbook=job.playbook.name, action=job.action.name,
            target=job.target, signal=signal, incident_id=job.incident.id, rule_id=job.incident.rule_id,
            entities=job.incident.entities, params=job.raw, result=dict(result), acted_at=now,
            due_at=now + timedelta(seconds=job.step.verify_after)))

    async def _escalate(self, job: _Job, reason: str, now: datetime) -> ActionRecord:
        base: dict[str, Any] = {"id": f"{job.action_id}:escalated:0", "idempotency_key": job.key, "playbook": job.playbook.name,
                    "action": job.action.name, "target": job.target, "mode": job.mode, "timestamp": self.clock(),
                    "incident_id": job.incident.id, "finding_id": _first(job.incident.finding_ids)}
        return await self._escalate_raw(base, job.incident.id, job.incident.rule_id, reason, now,
                                        incident=job.incident)

    async def _escalate_raw(self, base: dict[str, Any], incident_id: str, rule_id: str, reason: str, now: datetime,
                            incident: Incident | None = None, alertname: str | None = None) -> ActionRecord:
        """Page on-call through ``oncall:alertmanager`` (its own breaker), and record ``escalated``."""
        pager = self.actions.get("oncall:alertmanager")
        if not self.policy.escalate or pager is None or self.connections.alertmanager is None:
            return await self._emit_record(ActionRecord(**base, status="escalated", reason=reason,
                                                        error="no on-call receiver configured"))
        params = pager.check_parameters({
            "alertname": alertname or self.policy.escalation_alertname, "severity": "critical",
            "summary": reason[:500],
            "incident_id": incident_id, "rule": rule_id,
            "labels": {"action": base["action"], "target": base["target"], "playbook": base["playbook"]}})
        ctx = ActionContext(params=params, client=self.client, connections=self.connections, now=now,
                            incident=incident, credentials=self.credentials)
        breaker = self.breakers[pager.endpoint(ctx)]
        try:
            breaker.before_call(self.monotonic(), action=pager.name, target=base["target"])
            result = await pager.run(ctx)
            breaker.success()
        except ActionError as exc:
            if not isinstance(exc, CircuitOpen):
                breaker.failure(self.monotonic(), getattr(exc, "call", None))
            log.error("escalation failed for %s on %s: %s", base["action"], base["target"], exc)
            return await self._emit_record(ActionRecord(**base, status="escalated", reason=reason,
                                                        error=f"paging on-call failed: {exc}"))
        return await self._emit_record(ActionRecord(**base, status="escalated", reason=reason,
                                                    response_status=result.response_status,
                                                    request=await pager.plan(ctx)))

    async def _resolve_notifications(self, incident: Incident, now: datetime) -> list[ActionRecord]:
        records: list[ActionRecord] = []
        for playbook in self.matching(incident, closing=True):
            for index, step in enumerate(playbook.steps):
                action = self.actions[step.action]
                resolved = action.resolve_params(step.params)
                if resolved is None:
                    continue
                try:
                    fired = action.target(action.check_parameters(render_params(step.params, context_for(incident))))
                except (TemplateError, ConfigError):
                    continue
                entry = self.ledger.get(idempotency_key(incident.id, action.name, fired))
                if entry is None or entry.state != "done":
                    continue  # never fired: nothing to resolve
                # Resolving is harmless: it runs in auto even when firing needed approval.
                resolve_step = msgspec.structs.replace(step, params=resolved,
                                                       mode="observe" if step.mode == "observe" else "auto")
                records.extend(await self.dispatch(playbook, index, incident, now=now, step=resolve_step))
        return records

    def _put(self, job: _Job, state: LedgerState, now: datetime, *, actor: str = "aisoar", attempts: int = 0,
             result: dict[str, Any] | None = None) -> None:
        self._ledger_put(job.key, state, job.action.name, job.target, job.playbook.name, job.incident.id,
                         job.action_id, now, actor=actor, attempts=attempts, result=result)

    def _put_effect(self, job: _Job, state: LedgerState, now: datetime) -> None:
        """The cross-incident record of a side effect: which incident's step did it."""
        if job.effect is not None:
            self.ledger.put(LedgerEntry(key=job.effect, state=state, action=job.action.name, target=job.target,
                                        playbook=job.playbook.name, updated_at=now, incident_id=job.incident.id,
                                        action_id=job.action_id, result={"idempotency_key": job.key}))

    def _ledger_put(self, key: str, state: LedgerState, action: str, target: str, playbook: str,
                    incident_id: str, action_id: str, now: datetime, *, actor: str = "aisoar", attempts: int = 0,
                    result: dict[str, Any] | None = None) -> None:
        self.ledger.put(LedgerEntry(key=key, state=state, action=action, target=target, playbook=playbook,
                                    updated_at=now, incident_id=incident_id, action_id=action_id, actor=actor,
                                    attempts=attempts, result=result or {}))

    async def _record(self, job: _Job, status: ActionStatus, *, actor: str = "aisoar", attempt: int = 0,
                      request: dict[str, Any] | None = None, response_status: int | None = None,
                      duration_ms: float | None = None, reason: str = "", error: str | None = None,
                      record_id: str | None = None) -> ActionRecord:
        """Emit one audit record; its id (``action:status:attempt``, or ``record_id`` for a record
        that a replay's "already done" must not overwrite in the index) makes replays idempotent."""
        return await self._emit_record(ActionRecord(
            id=record_id or f"{job.action_id}:{status}:{attempt}", idempotency_key=job.key, playbook=job.playbook.name,
            action=job.action.name, target=job.target, mode=job.mode, status=status, timestamp=self.clock(),
            incident_id=job.incident.id, finding_id=_first(job.incident.finding_ids), actor=actor, reason=reason,
            request=request or {}, response_status=response_status, duration_ms=duration_ms, attempt=attempt,
            error=error))

    async def _emit_record(self, record: ActionRecord) -> ActionRecord:
        log.info("action %s %s on %s: %s", record.action, record.status, record.target, record.reason or record.error)
        if self._emit is not None:
            await self._emit(record)
        return record


def _first(values: tuple[str, ...]) -> str | None:
    return values[0] if values else None


def _summary(detail: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items() if not isinstance(v, (list, dict)))[:300]
