"""``oncall:alertmanager``: fire (and resolve) an alert through Prometheus Alertmanager API v2.

``POST /api/v2/alerts`` with a list of alerts: concurrent alerts to one Alertmanager go
in one POST (:mod:`playbooks.actions._alert_batch`), each succeeding only if that POST
was accepted. Alertmanager deduplicates alerts by
their label set, so re-sending is idempotent; resolving = the same labels with
``endsAt`` = now. A firing alert carries ``endsAt`` = now + ``ttl_s`` because
Alertmanager otherwise resolves it by itself after ``resolve_timeout`` (5 min).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx
import msgspec

from aisoar.errors import ConfigError
from playbooks.actions._alert_batch import batcher_for
from playbooks.actions.base import (
    Action,
    ActionContext,
    ActionResult,
    TargetHTTPError,
    endpoint_of,
    send,
)

__all__ = ["AlertParams", "AlertmanagerAlert", "alert_body"]

_SEVERITIES = ("info", "low", "medium", "high", "critical")


class AlertParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    alertname: str = "AisoarIncident"
    severity: str = ""  # empty: the incident's severity
    summary: str = ""
    description: str = ""
    incident_id: str = ""  # empty: the incident's id
    rule: str = ""  # empty: the incident's rule id
    runbook_url: str = ""
    labels: dict[str, str] = {}
    resolve: bool = False
    ttl_s: float = 4 * 3600.0


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def alert_labels(ctx: ActionContext[AlertParams]) -> dict[str, str]:
    p, inc = ctx.params, ctx.incident
    return {
        **p.labels,
        "alertname": p.alertname,
        "severity": p.severity or (inc.severity if inc else "high"),
        "incident_id": p.incident_id or (inc.id if inc else ""),
        "rule": p.rule or (inc.rule_id if inc else ""),
    }


def alert_body(ctx: ActionContext[AlertParams]) -> list[dict[str, Any]]:
    """The exact JSON list posted to ``/api/v2/alerts``."""
    p, inc, settings = ctx.params, ctx.incident, ctx.connections.alertmanager
    labels = alert_labels(ctx)
    annotations = {"summary": p.summary or (inc.summary if inc and inc.summary else
                                             f"{labels['rule']} on incident {labels['incident_id']}")}
    if p.description:
        annotations["description"] = p.description
    runbook = p.runbook_url or (settings.runbook_url if settings else None)
    if runbook:
        annotations["runbook_url"] = runbook
    if settings and settings.approvals_url:
        annotations["approvals"] = f"{settings.approvals_url}?status=pending&incident_id={labels['incident_id']}"
    # Alertmanager refuses startsAt after endsAt: event time can run ahead of this clock.
    starts = min(inc.first_seen, ctx.now) if inc else ctx.now
    ends = ctx.now if p.resolve else ctx.now + timedelta(seconds=p.ttl_s)
    return [{"labels": labels, "annotations": annotations, "startsAt": _iso(starts), "endsAt": _iso(ends)}]


class AlertmanagerAlert(Action[AlertParams]):
    name = "oncall:alertmanager"
    description = "Fire or resolve an alert in Prometheus Alertmanager (API v2)"
    Params: ClassVar[type[msgspec.Struct]] = AlertParams
    kind = "notify"

    def validate(self, params: AlertParams) -> None:
        if params.severity and "{{" not in params.severity and params.severity not in _SEVERITIES:
            raise ConfigError(f"severity must be one of {', '.join(_SEVERITIES)}", key="params.severity")
        if params.ttl_s <= 0:
            raise ConfigError("ttl_s must be positive", key="params.ttl_s")

    def target(self, params: AlertParams) -> str:
        return f"alertmanager:{params.alertname}" + (":resolve" if params.resolve else "")

    def endpoint(self, ctx: ActionContext[AlertParams]) -> str:
        return endpoint_of(ctx.connections.alertmanager.url) if ctx.connections.alertmanager else self.name

    async def checks(self, ctx: ActionContext[AlertParams]) -> None:
        self._require(ctx.connections.alertmanager, "alertmanager", ctx.params)

    def _url(self, ctx: ActionContext[AlertParams]) -> str:
        settings = self._require(ctx.connections.alertmanager, "alertmanager", ctx.params)
        return f"{settings.url.rstrip('/')}/api/v2/alerts"

    async def requests(self, ctx: ActionContext[AlertParams]) -> list[httpx.Request]:
        return [ctx.client.build_request("POST", self._url(ctx), json=alert_body(ctx))]

    async def plan(self, ctx: ActionContext[AlertParams]) -> dict[str, Any]:
        """What :func:`describe_request` makes of :meth:`requests` (no secrets in an alert),
        without encoding the body only to decode it again: the engine plans every run."""
        return {"requests": [{"method": "POST", "url": str(httpx.URL(self._url(ctx))), "json": alert_body(ctx)}]}

    async def run(self, ctx: ActionContext[AlertParams]) -> ActionResult:
        """Post the alert in the next batch to this Alertmanager (:mod:`._alert_batch`): it
        succeeds only if the POST that carried it was accepted."""
        (alert,) = alert_body(ctx)
        url = self._url(ctx)
        outcome = await batcher_for(ctx.client, url).submit(alert)
        if outcome.error is not None:
            exc = outcome.error
            if not isinstance(exc, httpx.HTTPError):  # a bug in the batcher: not the server's doing
                raise RuntimeError(f"alert batch lost: {type(exc).__name__}: {exc}") from exc
            where = f"POST {httpx.URL(url).copy_with(query=None)}"
            batch = f" (in a batch of {outcome.batch_size} alerts)" if outcome.batch_size > 1 else ""
            status = exc.response.status_code if isinstance(exc, httpx.HTTPStatusError) else None
            message = f"{where} {exc}{batch}" if status else f"{where}: {type(exc).__name__}: {exc}{batch}"
            raise TargetHTTPError(message, action=self.name, target=self.target(ctx.params),
                                  status_code=status, call=outcome) from exc
        return ActionResult(outcome.status_code, {"labels": alert_labels(ctx), "resolved": ctx.params.resolve,
                                                  "batch_size": outcome.batch_size})

    def resolve_params(self, params: dict[str, Any]) -> dict[str, Any] | None:
        return None if params.get("resolve") else {**params, "resolve": True}

    async def already_done(self, ctx: ActionContext[AlertParams]) -> bool:
        settings = self._require(ctx.connections.alertmanager, "alertmanager", ctx.params)
        labels = alert_labels(ctx)
        filters = [("filter", f'{k}="{labels[k]}"') for k in ("alertname", "incident_id")]
        request = ctx.client.build_request("GET", f"{settings.url.rstrip('/')}/api/v2/alerts",
                                           params=[*filters, ("active", "true"), ("silenced", "true"),
                                                   ("inhibited", "true")])
        response = await send(ctx.client, request, action=self.name, target=self.target(ctx.params))
        active = bool(response.json())
        return not active if ctx.params.resolve else active
