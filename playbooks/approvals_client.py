"""A small client of the approvals API, for ``aisoar actions list|approve|deny``."""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from aisoar.errors import ActionError, ConfigError

__all__ = ["ApprovalsClient", "http_client"]


def http_client(base_url: str, *, ca_file: str | None = None, cert_file: str | None = None,
                key_file: str | None = None, timeout: float = 10.0) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for the approvals listener. Over https the server's certificate
    is verified against ``ca_file`` (default: the system's CAs); ``cert_file``/``key_file`` are
    the client certificate a listener with a client CA requires (PEM; key may be in the cert)."""
    verify: ssl.SSLContext | bool = True
    if ca_file or cert_file:
        try:
            context = ssl.create_default_context(cafile=ca_file)
            if cert_file:
                context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
            raise ConfigError(f"cannot load the approvals CA or client certificate: {reason}",
                              file=cert_file if cert_file and ca_file is None else ca_file) from exc
        verify = context
    return httpx.AsyncClient(base_url=base_url, verify=verify, timeout=timeout)


class ApprovalsClient:
    """``ApprovalsClient(http_client(base_url, ca_file=...), token)``; the token comes from the
    environment or a file, never the command line."""

    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self._headers = {"Authorization": f"Bearer {token}"}

    async def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            response = await self.client.request(method, path, headers=self._headers, **kw)
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                raise ActionError(f"the approvals API's certificate is not trusted ({exc}); pass --ca-file "
                                  "(or set AISOAR_PLAYBOOKS__APPROVALS_CA_FILE) to the CA that signed it") from exc
            raise ActionError(f"approvals API unreachable: {exc}") from exc
        except httpx.HTTPError as exc:
            hint = " (is it served over https? then use an https:// URL)" if self.client.base_url.scheme == "http" else ""
            raise ActionError(f"approvals API unreachable: {type(exc).__name__}: {exc}{hint}") from exc
        if response.status_code == 401:
            raise ActionError("approvals API refused the token (401)")
        if response.status_code == 404:
            raise ActionError(f"no pending action at {path}")
        if response.status_code not in (200, 202, 409):  # 202: the worker applies it via Kafka
            raise ActionError(f"approvals API answered {response.status_code}: {response.text[:200]}")
        return response.json()

    async def list_pending(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._call("GET", "/api/actions", params={"status": "pending"})
        return result

    async def approve(self, action_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", f"/api/actions/{action_id}/approve")
        return result

    async def deny(self, action_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", f"/api/actions/{action_id}/deny")
        return result
