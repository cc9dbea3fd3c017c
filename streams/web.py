"""HTTP endpoints served by the worker on the Faust web port (loopback by default)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aisoar.actions import Decision
from aisoar.config import Settings, read_secret
from aisoar.events import encode
from streams.app import app, settings
from streams.runtime import runtime

__all__ = ["approvers", "healthz", "metrics", "serve_approvals"]

log = logging.getLogger(__name__)


@app.page("/metrics")
async def metrics(web: Any, request: Any) -> Any:
    return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/healthz")
async def healthz(web: Any, request: Any) -> Any:
    """Ready once every agent runs and the consumers (Faust's, the detect and index stages') have their partitions."""
    from streams.agents import detect_stage, index_stage

    ready = app.consumer is not None and bool(app.consumer.assignment())
    ready = ready and all(stage is None or stage.ready for stage in (detect_stage, index_stage))
    return web.json({"status": "ready" if ready else "starting"}, status=200 if ready else 503)


def approvers(settings: Settings) -> dict[str, str]:
    """Approver name → bearer token, from the environment or files (never the config itself)."""
    tokens: dict[str, str] = {}
    token = read_secret("playbooks", "api_token", settings)
    if token:
        tokens["oncall"] = token
    if settings.playbooks.approvers_file:
        for line in Path(settings.playbooks.approvers_file).read_text().splitlines():
            name, _, secret = line.strip().partition(" ")
            if name and secret.strip() and not name.startswith("#"):
                tokens[name] = secret.strip()
    return tokens


@app.task
async def serve_approvals() -> None:
    """The approvals API and page, next to the worker. A decision is not applied here:
    tables only change while a record is processed, so it goes through Kafka to the
    agent that owns the incident's ledger (202 Accepted; the outcome is on aisoar.actions)."""
    tokens = approvers(settings)
    if not tokens:
        log.warning("no approver token configured (AISOAR_PLAYBOOKS__API_TOKEN): approvals API not started")
        return
    from playbooks.approvals_api import make_app, serve, server_ssl_context

    p = settings.playbooks
    # A certificate that cannot be loaded stops the worker (ConfigError): never fall back to http.
    context = (server_ssl_context(p.approvals_tls_cert_file, p.approvals_tls_key_file, p.approvals_tls_client_ca_file)
               if p.approvals_tls_cert_file and p.approvals_tls_key_file else None)

    async def decide(pending: Any, approve: bool, actor: str) -> None:
        decision = Decision(action_id=pending.action_id, incident_id=pending.incident.id, approve=approve,
                            actor=actor, at=datetime.now(timezone.utc))
        # Keyed by the incident: the control topic's partition of the incident's ledger. Not on the
        # incidents topic itself, whose every record the index stage indexes as an incident.
        await runtime.send_control(f"{settings.topics.incidents}.control", encode(decision),
                                   key=pending.incident.id.encode(), kind=b"decision")

    await serve(make_app(runtime.engine, tokens, decide=decide), p.approvals_host, p.approvals_port, ssl_context=context)
    log.info("approvals on %s/approvals%s", p.approvals_url,
             " (client certificates required)" if p.approvals_tls_client_ca_file else "")
