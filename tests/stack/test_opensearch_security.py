"""The secured OpenSearch node's pieces that need no JVM: certificates, password hashes, the
plugin's jar selection and the security seed files. The node itself, over TLS with basic
auth, is exercised in ``tests/siem/test_secured_opensearch.py``."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import warnings
from pathlib import Path

import pytest

from aisoar.errors import StackError
from stack.services.opensearch import NODE_DN, OpenSearch, _artifact, bcrypt_hash, make_tls

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")


def _text(cert: Path) -> str:
    return subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-text", "-nameopt", "RFC2253"],
                          check=True, capture_output=True, text=True).stdout  # fmt: skip


@needs_openssl
def test_make_tls_signs_a_node_certificate_for_loopback(tmp_path: Path) -> None:
    make_tls(tmp_path / "tls")
    assert sorted(p.name for p in (tmp_path / "tls").iterdir()) == ["ca.pem", "node-key.pem", "node.pem"]  # CA key gone
    assert (tmp_path / "tls" / "node-key.pem").read_text().startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8
    node = _text(tmp_path / "tls" / "node.pem")
    assert f"Subject: {NODE_DN}" in node
    assert "IP Address:127.0.0.1" in node and "DNS:localhost" in node
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in node
    assert "CA:TRUE" in _text(tmp_path / "tls" / "ca.pem")
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "tls" / "ca.pem"), str(tmp_path / "tls" / "node.pem")],
                              check=False, capture_output=True, text=True)  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))  # loads as a client trust anchor
    # A new CA at every call: a client trusting the old one must not trust the new node.
    old_ca = (tmp_path / "tls" / "ca.pem").read_text()
    make_tls(tmp_path / "tls")
    assert (tmp_path / "tls" / "ca.pem").read_text() != old_ca


def test_bcrypt_hash_verifies_and_is_salted() -> None:
    first, second = bcrypt_hash("s3cret"), bcrypt_hash("s3cret")
    assert first.startswith(("$2b$10$", "$2a$10$", "$2y$10$")) and first != second
    try:
        import bcrypt  # type: ignore[import-not-found]

        assert bcrypt.checkpw(b"s3cret", first.encode()) and not bcrypt.checkpw(b"other", first.encode())
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        assert crypt.crypt("s3cret", first) == first and crypt.crypt("other", first) != first


def test_plugin_jars_shared_with_the_node_are_recognised_by_artifact() -> None:
    assert _artifact("netty-buffer-4.1.125.Final.jar") == "netty-buffer"
    assert _artifact("opensearch-security-2.19.4.0.jar") == "opensearch-security"
    assert _artifact("guava-33.4.0-jre.jar") == "guava"
    assert _artifact("zstd-jni-1.5.5-5.jar") == "zstd-jni"
    assert _artifact("bcprov-jdk18on-1.82.jar") == "bcprov-jdk18on"
    assert _artifact("scala-java8-compat_3-1.0.2.jar") == "scala-java8-compat_3"


def test_internal_users_are_validated(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="invalid internal user"):
        OpenSearch(tmp_path, tmp_path / "cache", security_users={"bad user": "pw"})
    with pytest.raises(StackError, match="invalid internal user"):
        OpenSearch(tmp_path, tmp_path / "cache", security_users={"aisoar": ""})
    plain = OpenSearch(tmp_path, tmp_path / "cache")
    assert not plain.secured and "security" not in plain._classpath


@needs_openssl
def test_security_seed_files_and_settings(tmp_path: Path) -> None:
    node = OpenSearch(tmp_path, tmp_path / "cache", security_users={"aisoar": "pw-1", "reader": "pw-2"})
    assert node.secured and str(node.security_jars) in node._classpath
    node.port, node.transport_port = 9200, 9300
    config = node._write_config()
    settings = {k: json.loads(v) for k, v in (line.split(": ", 1) for line in (config / "opensearch.yml").read_text().splitlines())}
    assert settings["plugins.security.ssl.http.enabled"] is True
    assert settings["plugins.security.nodes_dn"] == [NODE_DN]
    assert (config / settings["plugins.security.ssl.http.pemtrustedcas_filepath"]).exists()
    seed = config / "opensearch-security"
    users = json.loads((seed / "internal_users.yml").read_text())
    assert set(users) == {"_meta", "aisoar", "reader"}
    written = (seed / "internal_users.yml").read_text() + (config / "opensearch.yml").read_text()
    assert "pw-1" not in written and "pw-2" not in written  # hashes only
    auth = json.loads((seed / "config.yml").read_text())["config"]["dynamic"]
    assert auth["http"]["anonymous_auth_enabled"] is False
    assert json.loads((seed / "roles_mapping.yml").read_text())["all_access"]["users"] == ["aisoar", "reader"]
    info = node.info()
    assert info["url"] == "https://127.0.0.1:9200" and info["users"] == ["aisoar", "reader"]
    assert "pw-1" not in json.dumps(info)
