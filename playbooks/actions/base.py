"""The one interface every response action implements (the Falco Talon actionner model).

An action is a small object that talks to exactly one kind of server:

- ``Params``: a ``msgspec.Struct`` (unknown keys forbidden) of its typed parameters;
- ``check_parameters(raw)``: decode and validate them (offline: ``aisoar config check``);
- ``target(params)``: what it acts on (the idempotency key and the audit use it);
- ``checks(ctx)``: async pre-flight checks against the target, raising ``ActionCheckFailed``;
- ``requests(ctx)``: the exact mutating HTTP requests it would send; ``plan(ctx)`` is
  their redacted description (observe mode) and ``run(ctx)`` sends them, so what
  observe mode shows is what auto mode does;
- ``already_done(ctx)``: after a crash between "pending" and "done", ask the target
  whether the effect is already there (introspection inactive, alias already moved);
- ``verify_signal``: which detector signal the engine watches after acting;
- ``effect(ctx)``: what the side effect is, independent of the incident (the engine runs
  one effect once across incidents: two incidents about one leaked token, one revocation).

Actions never create HTTP clients: ``ctx.client`` is injected (``httpx.MockTransport``
in unit tests, the real servers in integration tests).
"""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, Literal, TypeVar
from urllib.parse import parse_qsl

import httpx
import msgspec

from aisoar.errors import ActionCheckFailed, ActionTargetError, ConfigError
from aisoar.findings import fingerprint
from aisoar.incidents import Incident
from playbooks.connections import Connections
from playbooks.credentials import CredentialStore, InMemoryCredentialStore

__all__ = [
    "Action",
    "ActionContext",
    "ActionKind",
    "ActionResult",
    "TargetHTTPError",
    "describe_request",
    "send",
    "token_label",
]

log = logging.getLogger("aisoar.playbooks")

P = TypeVar("P", bound=msgspec.Struct)
#: What blast-radius limits apply to: revocations are rate-limited and allow-listed.
ActionKind = Literal["revoke", "registry", "notify", "read"]


class TargetHTTPError(ActionTargetError):
    """The target answered an HTTP error or could not be reached.

    ``retryable`` is true for transport errors, 429 and 5xx: the engine retries only those.
    ``call`` names the failed request when several actions shared it (a batch of alerts):
    the circuit breaker counts that failure once.
    """

    def __init__(self, message: str, *, action: str | None = None, target: str | None = None,
                 status_code: int | None = None, call: object | None = None) -> None:
        super().__init__(message, action=action, target=target)
        self.status_code = status_code
        self.call = call
        self.retryable = status_code is None or status_code == 429 or status_code >= 500


@dataclass(frozen=True)
class ActionResult:
    """What ``run`` returns: the last response status and a small, secret-free detail."""

    response_status: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class ActionContext(Generic[P]):
    """Everything an action may use: its decoded params, the incident, injected clients."""

    params: P
    client: httpx.AsyncClient
    connections: Connections
    now: datetime
    incident: Incident | None = None
    credentials: CredentialStore = field(default_factory=InMemoryCredentialStore)


def token_label(token: str) -> str:
    """How a token appears in plans, audit and logs: its fingerprint, never its value."""
    return f"<token fp:{fingerprint(token)}>"


def describe_request(request: httpx.Request, secrets: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A JSON-ready, secret-free description of ``request``: method, url, auth scheme, body.

    ``secrets`` maps secret values to their replacement label (a token to its fingerprint);
    the Authorization header keeps only its scheme.
    """
    secrets = dict(secrets or {})

    def scrub(value: Any) -> Any:
        if isinstance(value, str):
            for secret, label in secrets.items():
                if secret and secret in value:
                    value = value.replace(secret, label)
            return value
        if isinstance(value, list):
            return [scrub(v) for v in value]
        if isinstance(value, dict):
            return {k: scrub(v) for k, v in value.items()}
        return value

    out: dict[str, Any] = {"method": request.method, "url": scrub(str(request.url))}
    auth = request.headers.get("authorization")
    if auth:
        out["auth"] = f"{auth.split(' ', 1)[0]} <redacted>"
    content_type = request.headers.get("content-type", "")
    raw = request.content
    if raw:
        if content_type.startswith("application/json"):
            out["json"] = scrub(json.loads(raw))
        elif content_type.startswith("application/x-www-form-urlencoded"):
            out["form"] = scrub(dict(parse_qsl(raw.decode())))
        else:
            out["body"] = scrub(raw.decode(errors="replace"))
    return out


async def send(client: httpx.AsyncClient, request: httpx.Request, *, action: str, target: str,
               ok: tuple[int, ...] = (200,)) -> httpx.Response:
    """Send ``request``; wrap transport errors and unexpected statuses in :class:`TargetHTTPError`."""
    try:
        response = await client.send(request)
    except httpx.HTTPError as exc:  # transport, timeout, protocol: all retryable
        raise TargetHTTPError(f"{request.method} {request.url.copy_with(query=None)}: {type(exc).__name__}: {exc}",
                              action=action, target=target) from exc
    if response.status_code not in ok:
        body = response.text[:300]
        raise TargetHTTPError(f"{request.method} {request.url.copy_with(query=None)} answered "
                              f"{response.status_code}: {body}", action=action, target=target,
                              status_code=response.status_code)
    return response


class Action(abc.ABC, Generic[P]):
    """Base class of every ``category:name`` action."""

    name: ClassVar[str]
    description: ClassVar[str]
    Params: ClassVar[type[msgspec.Struct]]
    kind: ClassVar[ActionKind] = "notify"
    #: The signal the engine re-checks ``verify_after`` seconds after success (None: no verification).
    verify_signal: ClassVar[str | None] = None

    def check_parameters(self, raw: Mapping[str, Any]) -> P:
        """Decode ``raw`` into ``Params`` (unknown keys and wrong types refused) and validate it."""
        try:
            params = msgspec.convert(dict(raw), self.Params)
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{self.name}: {exc}", key="params") from exc
        self.validate(params)  # type: ignore[arg-type]
        return params  # type: ignore[return-value]

    def validate(self, params: P) -> None:
        """Semantic checks beyond types; raise ``ConfigError(key=...)``."""

    @abc.abstractmethod
    def target(self, params: P) -> str:
        """What this action acts on, e.g. a credential id or ``model@version``."""

    def endpoint(self, ctx: ActionContext[P]) -> str:
        """The server this action talks to: the circuit breaker is per endpoint."""
        return self.name

    def principal(self, params: P) -> str | None:
        """The principal acted on, for the never-auto-revoke allow-list."""
        return None

    async def checks(self, ctx: ActionContext[P]) -> None:
        """Pre-flight checks against the target; raise ``ActionCheckFailed`` to refuse."""

    @abc.abstractmethod
    async def requests(self, ctx: ActionContext[P]) -> list[httpx.Request]:
        """The exact mutating requests this action sends (may read the target to decide)."""

    def secrets(self, ctx: ActionContext[P]) -> dict[str, str]:
        """Secret values that must never appear in plans or audit, mapped to their labels."""
        return {}

    async def plan(self, ctx: ActionContext[P]) -> dict[str, Any]:
        """The redacted requests ``run`` would send: what observe mode records."""
        secrets = self.secrets(ctx)
        return {"requests": [describe_request(r, secrets) for r in await self.requests(ctx)]}

    @abc.abstractmethod
    async def run(self, ctx: ActionContext[P]) -> ActionResult:
        """Act; raise ``ActionTargetError`` (retryable or not) on failure."""

    async def already_done(self, ctx: ActionContext[P]) -> bool:
        """Whether the effect is already in place at the target (crash recovery)."""
        return False

    async def effect(self, ctx: ActionContext[P]) -> str | None:
        """The side effect this step has, the same for every incident that asks for it (None:
        none worth deduplicating, e.g. a page per incident). Default: the target, for
        revocations and registry changes."""
        return self.target(ctx.params) if self.kind in ("revoke", "registry") else None

    def resolve_params(self, params: dict[str, Any]) -> dict[str, Any] | None:
        """Params that undo a notification when its incident closes (None: nothing to resolve)."""
        return None

    def _require(self, value: Any, what: str, params: P) -> Any:
        if value is None:
            raise ActionCheckFailed(f"{what} is not configured", action=self.name, target=self.target(params))
        return value


def endpoint_of(url: str) -> str:
    """``host:port`` of a server: the circuit-breaker key. The host alone would make
    one failing server trip the breaker of every other one on the same machine."""
    parsed = httpx.URL(url)
    return f"{parsed.host}:{parsed.port or (443 if parsed.scheme == 'https' else 80)}"
