"""The SIEM connection over real TLS with a custom CA and HTTP basic auth, against a private
OpenSearch node running the OpenSearch security plugin (``OpenSearch(..., security_users=...)``):
HTTPS only, a CA made at start, internal users. The sink is built from aisoar's own settings
the way the worker builds it (``streams.runtime.Runtime.sink``).

The node loads the security plugin and seeds its security index, so it starts slower than the
shared one (16-20 s warm at load average 17-22): it is not the session stack, and starts once
for this module. Nothing here is mocked: real TLS sockets, the real security plugin.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from aisoar.config import Settings, load_settings
from aisoar.errors import SinkError
from stack.manager import cache_dir
from stack.services.opensearch import OpenSearch, make_tls
from streams.runtime import Runtime
from streams.siem import IndexLayout, SiemSink, install_templates, make_client

from .conftest import make_finding

pytestmark = pytest.mark.integration

USER = "aisoar"
PASSWORD = secrets.token_urlsafe(16)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    node = OpenSearch(tmp_path_factory.mktemp("opensearch-secured"), cache_dir(), security_users={USER: PASSWORD})
    node.install()
    try:
        node.start()
        yield node.info()
    finally:
        node.stop()


_SECRETS = ("AISOAR_SIEM__PASSWORD", "AISOAR_SIEM__API_KEY")


@pytest.fixture
def settings_for(monkeypatch: pytest.MonkeyPatch, secured: dict[str, Any]) -> Callable[..., Settings]:
    """aisoar's settings from the environment, as an operator would set them (``None`` drops a key).
    Secrets go into the process environment: the runtime reads them on use (``read_secret``)."""
    def settings(prefix: str, **env: str | None) -> Settings:
        for name in _SECRETS:
            value = env.pop(name, None)
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        return _settings(secured, prefix, **env)

    return settings


def _settings(info: Mapping[str, Any], prefix: str, **env: str | None) -> Settings:
    merged: dict[str, str | None] = {
        "AISOAR_SIEM__URL": info["url"],
        "AISOAR_SIEM__INDEX_PREFIX": prefix,
        "AISOAR_SIEM__USERNAME": USER,
        "AISOAR_SIEM__CA_FILE": info["ca_file"],
        **env,
    }
    return load_settings(env={key: value for key, value in merged.items() if value is not None})


@pytest.fixture
async def cleanup(secured: dict[str, Any]) -> AsyncIterator[str]:
    """A prefix of our own, whose indices and templates are deleted afterwards (as the admin user)."""
    prefix = f"itest-tls-{uuid.uuid4().hex[:8]}"
    yield prefix
    async with make_client(secured["url"], username=USER, password=PASSWORD, ca_file=secured["ca_file"]) as client:
        await client.delete(f"/{prefix}-*")
        await client.delete(f"/_index_template/{prefix}-*")


async def test_worker_sink_indexes_over_tls_with_custom_ca_and_basic_auth(
    secured: dict[str, Any], settings_for: Callable[..., Settings], cleanup: str, tmp_path: Path
) -> None:
    assert secured["url"].startswith("https://")
    # Plain HTTP is not served at all: the port speaks TLS only.
    with pytest.raises(httpx.RemoteProtocolError):  # the server hangs up on a non-TLS request
        httpx.get(secured["url"].replace("https://", "http://"), timeout=10)

    password_file = tmp_path / "siem-password"
    password_file.write_text(PASSWORD + "\n")
    when = datetime(2026, 11, 25, 10, tzinfo=timezone.utc)
    for round_, env in enumerate(({"AISOAR_SIEM__PASSWORD": PASSWORD}, {"AISOAR_SIEM__PASSWORD_FILE": str(password_file)})):
        sink: SiemSink = Runtime(settings_for(cleanup, **env)).sink
        try:
            if round_ == 0:
                installed = await sink.install(replicas=0)  # as the worker does, lifecycle included
                assert installed["flavor"] == "opensearch"
                # The index-management (ISM) plugin is not published on Maven Central: the node has
                # none, and the installer says so instead of failing (its JSON: test_templates.py).
                assert installed["lifecycle"] == "skipped: ISM plugin not available"
            for i in range(10 * round_, 10 * round_ + 20):  # the second round overlaps the first by 10
                await sink.add("finding", make_finding(i, ts=when))
            result = await sink.flush()
            assert result.indexed == 20 and result.rejected == []
            await sink.refresh("findings")
            assert await sink.count("findings") == 20 + 10 * round_  # overlapping ids overwrite
        finally:
            await sink.aclose()


async def test_wrong_password_is_refused_with_a_clear_error(
    secured: dict[str, Any], settings_for: Callable[..., Settings], cleanup: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = secrets.token_urlsafe(16)
    sink: SiemSink = Runtime(settings_for(cleanup, AISOAR_SIEM__PASSWORD=wrong)).sink
    try:
        with pytest.raises(SinkError, match=r"GET /: HTTP 401: Unauthorized \(check siem.username") as refused:
            await sink.install(lifecycle=False)
        assert wrong not in str(refused.value) and PASSWORD not in str(refused.value)
        await sink.add("finding", make_finding(1))
        with pytest.raises(SinkError, match="_bulk refused with HTTP 401"):
            await sink.flush()
        assert len(sink) == 1  # kept for the next flush: nothing is lost while the credentials are fixed
    finally:
        await sink.aclose()
    assert "SIEM flush failed" in caplog.text  # the failure is logged ...
    assert wrong not in caplog.text and PASSWORD not in caplog.text  # ... without the password
    # No credentials at all: refused the same way, not served anonymously.
    async with make_client(secured["url"], ca_file=secured["ca_file"]) as anonymous:
        with pytest.raises(SinkError, match="HTTP 401"):
            await install_templates(anonymous, IndexLayout(prefix=cleanup), lifecycle=False)


async def test_tls_needs_the_custom_ca(
    secured: dict[str, Any], settings_for: Callable[..., Settings], cleanup: str, tmp_path: Path
) -> None:
    layout = IndexLayout(prefix=cleanup)
    # The system trust store does not know the stack's CA.
    async with make_client(secured["url"], username=USER, password=PASSWORD) as no_ca:
        with pytest.raises(SinkError, match=r"CERTIFICATE_VERIFY_FAILED.*\(set siem.ca_file"):
            await install_templates(no_ca, layout, lifecycle=False)
    # Nor does another CA (a fresh one, same subject names).
    make_tls(tmp_path / "other")
    async with make_client(secured["url"], username=USER, password=PASSWORD, ca_file=str(tmp_path / "other" / "ca.pem")) as other:
        with pytest.raises(SinkError, match="CERTIFICATE_VERIFY_FAILED"):
            await install_templates(other, layout, lifecycle=False)
    # verify = false (an operator's explicit choice) still encrypts and authenticates.
    sink: SiemSink = Runtime(settings_for(cleanup, AISOAR_SIEM__PASSWORD=PASSWORD, AISOAR_SIEM__CA_FILE=None,
                                          AISOAR_SIEM__VERIFY="false")).sink  # fmt: skip
    try:
        assert (await sink.install(lifecycle=False))["flavor"] == "opensearch"
    finally:
        await sink.aclose()


async def test_api_key_header_reaches_the_server_and_is_refused(
    settings_for: Callable[..., Settings], cleanup: str, caplog: pytest.LogCaptureFixture
) -> None:
    # OpenSearch's security plugin has no Elasticsearch-style API keys: the ``ApiKey`` header
    # aisoar sends (checked on the wire in test_bulk.py) is refused over real TLS with a 401,
    # and the key appears in no error or log line.
    key = secrets.token_urlsafe(24)
    caplog.set_level(logging.DEBUG)
    sink: SiemSink = Runtime(settings_for(cleanup, AISOAR_SIEM__USERNAME=None, AISOAR_SIEM__API_KEY=key)).sink
    try:
        with pytest.raises(SinkError, match="HTTP 401") as refused:
            await sink.install(lifecycle=False)
    finally:
        await sink.aclose()
    assert key not in str(refused.value)
    assert key not in caplog.text
