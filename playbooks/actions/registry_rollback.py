"""``registry:rollback``: point the serving alias (default ``champion``) back to a known-good version.

Acts only when the alias serves ``from_version`` (when given), a quarantined version,
or nothing; an alias already on a healthy other version is left alone (idempotent,
and never overrides a human's newer choice). "Known good": see :mod:`._mlflow`.
"""

from __future__ import annotations

from typing import ClassVar

import httpx
import msgspec

from aisoar.errors import ActionCheckFailed
from playbooks.actions import _mlflow as mlf
from playbooks.actions.base import endpoint_of, Action, ActionContext, ActionResult, send

__all__ = ["Rollback", "RollbackParams"]


class RollbackParams(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    model_name: str
    from_version: str = ""  # the bad version; empty: whatever quarantined version the alias serves
    alias: str = "champion"
    require_known_good: bool = False


class Rollback(Action[RollbackParams]):
    name = "registry:rollback"
    description = "Point an MLflow serving alias to the newest non-quarantined known-good version"
    Params: ClassVar[type[msgspec.Struct]] = RollbackParams
    kind = "registry"
    verify_signal = "model_drift"

    def target(self, params: RollbackParams) -> str:
        return f"{params.model_name}:{params.alias}"

    def endpoint(self, ctx: ActionContext[RollbackParams]) -> str:
        return endpoint_of(ctx.connections.mlflow.url) if ctx.connections.mlflow else self.name

    def secrets(self, ctx: ActionContext[RollbackParams]) -> dict[str, str]:
        token = ctx.connections.mlflow.token if ctx.connections.mlflow else None
        return {token: "<redacted>"} if token else {}

    async def _decide(self, ctx: ActionContext[RollbackParams]) -> tuple[str | None, mlf.Version | None, bool]:
        """(serving version, version to serve, whether the alias needs moving)."""
        settings = self._require(ctx.connections.mlflow, "mlflow", ctx.params)
        p, target = ctx.params, self.target(ctx.params)
        versions = await mlf.list_versions(ctx.client, settings, p.model_name, action=self.name, target=target)
        serving = await mlf.get_alias(ctx.client, settings, p.model_name, p.alias, action=self.name, target=target)
        by_version = {v.version: v for v in versions}
        bad = {p.from_version} if p.from_version else set()
        bad |= {v.version for v in versions if v.quarantined}
        needs = serving is None or serving in bad or (serving in by_version and by_version[serving].quarantined)
        choice = mlf.choose_serving(versions, exclude=bad, require_known_good=p.require_known_good)
        return serving, choice, needs

    async def checks(self, ctx: ActionContext[RollbackParams]) -> None:
        _, choice, needs = await self._decide(ctx)
        if needs and choice is None:
            raise ActionCheckFailed("no known-good version to roll back to", action=self.name,
                                    target=self.target(ctx.params))

    async def requests(self, ctx: ActionContext[RollbackParams]) -> list[httpx.Request]:
        settings = self._require(ctx.connections.mlflow, "mlflow", ctx.params)
        _, choice, needs = await self._decide(ctx)
        if not needs or choice is None:
            return []
        return [mlf.alias_request(ctx.client, settings, ctx.params.model_name, ctx.params.alias, choice.version)]

    async def run(self, ctx: ActionContext[RollbackParams]) -> ActionResult:
        serving, choice, needs = await self._decide(ctx)
        status = None
        for request in await self.requests(ctx):
            status = (await send(ctx.client, request, action=self.name, target=self.target(ctx.params))).status_code
        return ActionResult(status, {"alias": ctx.params.alias, "from": serving,
                                     "to": choice.version if (needs and choice) else serving, "moved": needs})

    async def already_done(self, ctx: ActionContext[RollbackParams]) -> bool:
        _, _, needs = await self._decide(ctx)
        return not needs

    async def effect(self, ctx: ActionContext[RollbackParams]) -> str | None:
        """Rolling the alias off one bad version; without ``from_version`` it depends on the
        registry's state at the time, so only the per-incident key applies."""
        return f"{self.target(ctx.params)}<-{ctx.params.from_version}" if ctx.params.from_version else None
