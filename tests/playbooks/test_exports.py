"""Public API: one sorted ``__all__`` per package, exactly its public names; error wrapping complete."""

from __future__ import annotations

import httpx
import pytest

import playbooks
from playbooks.actions import ACTIONS, ActionContext
from playbooks.actions.base import TargetHTTPError
from playbooks.connections import Connections, OAuthSettings
from playbooks.credentials import InMemoryCredentialStore
from tests.playbooks.helpers import NOW, incident


def test_all_is_sorted_and_complete():
    public = {name for name in vars(playbooks) if not name.startswith("_")}
    modules = {"actions", "approvals", "breaker", "connections", "credentials", "engine", "ledger", "loader",
               "policy", "ratelimit", "templating", "approvals_api", "approvals_client", "verification"}
    # isort-style, as ruff (RUF022) keeps it: CONSTANTS, Classes, functions
    assert playbooks.__all__ == sorted(playbooks.__all__, key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    assert set(playbooks.__all__) == public - modules - {"annotations"}


@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ReadTimeout, httpx.WriteError, httpx.RemoteProtocolError,
                                 httpx.PoolTimeout, httpx.ProxyError, httpx.UnsupportedProtocol])
async def test_every_transport_error_is_wrapped(exc):
    def fail(request):
        raise exc("boom", request=request)

    store = InMemoryCredentialStore()
    store.register("cred-7", "tok")
    action = ACTIONS["identity:revoke_token"]
    ctx = ActionContext(params=action.check_parameters({"credential_id": "cred-7"}),
                        client=httpx.AsyncClient(transport=httpx.MockTransport(fail)),
                        connections=Connections(oauth=OAuthSettings.from_issuer("http://idp", "c", "s")),
                        now=NOW, incident=incident(), credentials=store)
    with pytest.raises(TargetHTTPError) as info:
        await action.run(ctx)
    assert isinstance(info.value.__cause__, exc) and info.value.retryable
