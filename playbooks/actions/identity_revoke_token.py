"""``identity:revoke_token``: revoke every token of a credential (RFC 7009), verified (RFC 7662).

RFC 7009 §2.2 answers 200 even for unknown or already revoked tokens, so a 200
proves nothing: after revoking, each token is introspected and must be
``active: false``. Tokens come from the :mod:`playbooks.credentials` store and
appear in plans and audit only as fingerprints; the client secret never does.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar, Literal

import httpx
import msgspec

from aisoar.errors import ActionCheckFailed, ActionTargetError, ConfigError
from aisoar.findings import fingerprint
from playbooks.actions._oauth import introspect, revocation_request
from playbooks.actions.base import (
    endpoint_of,
    Action,
    ActionContext,
    ActionResult,
    describe_request,
    send,
    token_label,
)

__all__ = ["RevokeParams", "RevokeToken"]


class RevokeParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    credential_id: str
    token_type_hint: Literal["access_token", "refresh_token", ""] = "access_token"
    reason: str = ""


class RevokeToken(Action[RevokeParams]):
    name = "identity:revoke_token"
    description = "Revoke a credential's tokens at the identity server (RFC 7009), verify by introspection (RFC 7662)"
    Params: ClassVar[type[msgspec.Struct]] = RevokeParams
    kind = "revoke"
    verify_signal = "credential_activity"

    def validate(self, params: RevokeParams) -> None:
        if not params.credential_id.strip():
            raise ConfigError("credential_id is empty", key="params.credential_id")

    def target(self, params: RevokeParams) -> str:
        return params.credential_id

    def principal(self, params: RevokeParams) -> str | None:
        return params.credential_id

    def endpoint(self, ctx: ActionContext[RevokeParams]) -> str:
        oauth = ctx.connections.oauth
        return endpoint_of(oauth.revocation_endpoint) if oauth else self.name

    def secrets(self, ctx: ActionContext[RevokeParams]) -> dict[str, str]:
        return {} if ctx.connections.oauth is None else {ctx.connections.oauth.client_secret: "<redacted>"}

    async def _tokens(self, ctx: ActionContext[RevokeParams]) -> tuple[str, ...]:
        return tuple(await ctx.credentials.tokens(ctx.params.credential_id))

    async def checks(self, ctx: ActionContext[RevokeParams]) -> None:
        self._require(ctx.connections.oauth, "oauth", ctx.params)
        if not await self._tokens(ctx):
            raise ActionCheckFailed("no tokens known for this credential in the credential store",
                                    action=self.name, target=self.target(ctx.params))

    async def requests(self, ctx: ActionContext[RevokeParams]) -> list[httpx.Request]:
        settings = self._require(ctx.connections.oauth, "oauth", ctx.params)
        hint = ctx.params.token_type_hint or None
        return [revocation_request(ctx.client, settings, t, hint) for t in await self._tokens(ctx)]

    async def plan(self, ctx: ActionContext[RevokeParams]) -> dict[str, object]:
        tokens = await self._tokens(ctx)
        if not tokens and ctx.connections.oauth is not None:
            # Backtests (replay) have no live tokens: show the request shape per token.
            template = revocation_request(ctx.client, ctx.connections.oauth, "<each token of the credential>",
                                          ctx.params.token_type_hint or None)
            return {"requests": [describe_request(template, self.secrets(ctx))], "tokens_known": 0}
        plan = await super().plan(ctx)
        secrets = {t: token_label(t) for t in tokens}
        # Re-scrub with the tokens: the form body carries them.
        for req in plan["requests"]:
            req["form"] = {k: secrets.get(v, v) for k, v in req.get("form", {}).items()}
        return plan

    async def _active(self, ctx: ActionContext[RevokeParams]) -> list[str]:
        settings = self._require(ctx.connections.oauth, "oauth", ctx.params)
        target = self.target(ctx.params)
        return [t for t in await self._tokens(ctx)
                if await introspect(ctx.client, settings, t, action=self.name, target=target)]

    async def run(self, ctx: ActionContext[RevokeParams]) -> ActionResult:
        target = self.target(ctx.params)
        status = None
        for request in await self.requests(ctx):
            status = (await send(ctx.client, request, action=self.name, target=target)).status_code
        still_active = await self._active(ctx)
        if still_active:
            labels = ", ".join(token_label(t) for t in still_active)
            raise ActionTargetError(f"revocation answered {status} but introspection still active: {labels}",
                                    action=self.name, target=target)
        tokens = await self._tokens(ctx)
        return ActionResult(status, {"revoked": len(tokens), "tokens": [token_label(t) for t in tokens],
                                     "verified": "introspection active=false"})

    async def already_done(self, ctx: ActionContext[RevokeParams]) -> bool:
        return not await self._active(ctx)

    async def effect(self, ctx: ActionContext[RevokeParams]) -> str | None:
        """"Revoke these tokens": a token issued after a revocation is a new effect."""
        tokens = sorted(fingerprint(t) for t in await self._tokens(ctx))
        digest = hashlib.blake2b("\n".join(tokens).encode(), digest_size=8).hexdigest()
        return f"{ctx.params.credential_id}#{digest}" if tokens else ctx.params.credential_id
