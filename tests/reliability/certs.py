"""Throwaway PKI for TLS tests, made at test time with the ``openssl`` command line
(Debian's base system has it; no key material is ever committed).

``make_pki(dir)`` writes a CA, a server certificate for 127.0.0.1/localhost and a client
certificate signed by it, and a second, unrelated CA with its own client certificate
(what an attacker's self-made certificate looks like). EC P-256 keys: fast to make.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Pki", "make_pki"]


@dataclass(frozen=True)
class Pki:
    ca: Path  # PEM CA certificate that signed server and client
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # an unrelated CA
    other_client_cert: Path  # a client certificate signed by other_ca
    other_client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {done.stderr[-1000:]}")


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key.name,
             "-out", cert.name, "-days", "2", "-subj", f"/CN=aisoar test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=directory)
    key.chmod(0o600)
    return cert, key


def _leaf(directory: Path, name: str, ca: tuple[Path, Path], *, cn: str, extensions: str) -> tuple[Path, Path]:
    cert, key, csr, ext = (directory / f"{name}.{suffix}" for suffix in ("pem", "key", "csr", "ext"))
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key.name,
             "-out", csr.name, "-subj", f"/CN={cn}", cwd=directory)
    key.chmod(0o600)
    ext.write_text(extensions)
    _openssl("x509", "-req", "-in", csr.name, "-CA", ca[0].name, "-CAkey", ca[1].name, "-CAcreateserial",
             "-out", cert.name, "-days", "2", "-extfile", ext.name, cwd=directory)
    return cert, key


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca, other = _ca(directory, "ca"), _ca(directory, "other-ca")
    server = _leaf(directory, "server", ca, cn="localhost",
                   extensions="subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    client = _leaf(directory, "client", ca, cn="oncall-laptop", extensions="extendedKeyUsage=clientAuth\n")
    intruder = _leaf(directory, "other-client", other, cn="oncall-laptop", extensions="extendedKeyUsage=clientAuth\n")
    return Pki(ca[0], *server, *client, other[0], *intruder)
