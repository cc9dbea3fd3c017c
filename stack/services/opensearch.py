"""OpenSearch: one single-node cluster from Maven Central jars, no distribution.

Installs ``org.opensearch:opensearch`` and the netty4 transport plus a few core
modules (versions in ``stack/opensearch/pom.xml``) into
``<cache>/opensearch/<version>/jars`` and compiles the small launcher
``stack/opensearch/AisoarOpenSearchNode.java`` once into a jar in the cache
(keyed by the source's hash, so an edited launcher is recompiled). Each start gets an
empty data directory: the stack is for development and tests, not for keeping
indices.

Opt-in security (``OpenSearch(home, cache, security_users={"aisoar": "secret"})``,
not used by ``up``): the OpenSearch security plugin (``stack/opensearch/security/pom.xml``,
unpacked into the cache; the jars the node already has are left out, the node's copy
wins) is added as a classpath plugin. HTTP is served over TLS only, with a
certificate for 127.0.0.1/localhost signed by a CA made with ``openssl`` at each start
(``info()["ca_file"]``), and every request needs HTTP basic auth of an internal user
(bcrypt hashes in ``config/opensearch-security/internal_users.yml``, loaded into the
security index at the first start). Each user is mapped to ``all_access``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import ssl
import subprocess
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from aisoar.errors import StackError
from stack.services.base import (
    Service,
    free_port,
    spawn,
    wait_until,
)
from stack.services.jvm import (
    ClassDataArchive,
    exclusive,
    java,
    javac,
    maven_jars,
    pom_property,
)

__all__ = ["SERVICE", "OpenSearch", "cluster_ready"]

_FOLDER = Path(__file__).resolve().parents[1] / "opensearch"
POM = _FOLDER / "pom.xml"
LAUNCHER = _FOLDER / "AisoarOpenSearchNode.java"
SECURITY_POM = _FOLDER / "security" / "pom.xml"
SECURITY_PLUGIN = "org.opensearch.security.OpenSearchSecurityPlugin"
#: Subjects (RFC 2253) of the certificates made at start: the node's own, and an admin one never issued.
NODE_DN = "CN=aisoar-node,O=aisoar"
ADMIN_DN = "CN=aisoar-admin,O=aisoar"
_USER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_JAR_VERSION = re.compile(r"-\d[^-]*(?:-[A-Za-z0-9]+)?\.jar$")

_LOG4J2 = """\
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] %m%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
logger.deprecation.name = org.opensearch.deprecation
logger.deprecation.level = error
"""


def cluster_ready(url: str, *, verify: ssl.SSLContext | bool = True, auth: tuple[str, str] | None = None) -> bool:
    """True when ``GET /_cluster/health`` answers green or yellow (a secured node answers 503
    until its security index is initialised)."""
    response = httpx.get(f"{url}/_cluster/health", timeout=2.0, verify=verify, auth=auth)
    return response.status_code == 200 and response.json().get("status") in ("green", "yellow")


def _artifact(jar: str) -> str:
    """``netty-buffer-4.1.125.Final.jar`` -> ``netty-buffer``: a jar's name without its version."""
    return _JAR_VERSION.sub("", jar)


def bcrypt_hash(password: str) -> str:
    """The bcrypt hash the security plugin's internal users need (``$2b$``, cost 10)."""
    try:
        import bcrypt  # type: ignore[import-not-found]

        return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode())
    except ImportError:
        pass
    with warnings.catch_warnings():  # stdlib crypt (glibc's libxcrypt does bcrypt): deprecated, gone in 3.13
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt
        except ImportError:
            raise StackError("hashing the secured OpenSearch's passwords needs `pip install bcrypt` on Python 3.13+") from None
    hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10))
    if not hashed or not hashed.startswith("$2"):
        raise StackError("this system's crypt(3) has no bcrypt: `pip install bcrypt`")
    return hashed


#: P-256 keys: generated in milliseconds where RSA-2048 takes seconds on busy cores.
_EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise StackError("`openssl` not found: the secured OpenSearch makes its CA with it (apt-get install openssl)")
    done = subprocess.run([openssl, *args], cwd=cwd, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise StackError(f"openssl {args[0]} failed (exit {done.returncode}):\n{(done.stdout + done.stderr)[-2000:]}")


def make_tls(directory: Path) -> None:
    """A new self-signed CA (``ca.pem``) and a node certificate for 127.0.0.1/localhost signed by
    it (``node.pem``, PKCS#8 key ``node-key.pem``), used for HTTP and transport; the CA key is
    deleted once it has signed."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    (directory / "node.ext").write_text(
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl("req", "-x509", *_EC_KEY, "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
             "-days", "3650", "-subj", "/O=aisoar/CN=aisoar local stack CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             cwd=directory)  # fmt: skip
    _openssl("req", *_EC_KEY, "-nodes", "-keyout", "node-key.pem", "-out", "node.csr",
             "-subj", "/O=aisoar/CN=aisoar-node", cwd=directory)  # fmt: skip
    _openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
             "-set_serial", str(secrets.randbits(63)), "-days", "3650", "-extfile", "node.ext", "-out", "node.pem",
             cwd=directory)  # fmt: skip
    for leftover in ("ca-key.pem", "node.csr", "node.ext"):
        (directory / leftover).unlink()
    (directory / "node-key.pem").chmod(0o600)


class OpenSearch(Service):
    name = "opensearch"
    #: A clean shutdown (and, on the first run, writing the class-data archive) takes a while on busy cores.
    stop_grace = 120.0
    ready_timeout = 240.0

    def __init__(self, home: Path, cache: Path, *, security_users: Mapping[str, str] | None = None) -> None:
        super().__init__(home, cache)
        self.version = pom_property(POM, "opensearch.version")
        self.jars = cache / "opensearch" / self.version / "jars"
        self.security_users = dict(security_users or {})
        for user, password in self.security_users.items():
            if not _USER.match(user) or not password:
                raise StackError(f"opensearch: invalid internal user {user!r} (letters, digits, _.-; non-empty password)")
        self.security_version = pom_property(SECURITY_POM, "security.version")
        self.security_jars = cache / "opensearch" / self.version / f"security-{self.security_version}"
        digest = hashlib.sha256(LAUNCHER.read_bytes()).hexdigest()[:12]
        self.launcher_jar = cache / "opensearch" / self.version / f"launcher-{digest}.jar"
        self.port: int | None = None
        self.transport_port: int | None = None
        #: Override with AISOAR_OPENSEARCH_HEAP (e.g. "1g") for benchmarks; AISOAR_OPENSEARCH_JAVA_OPTS adds JVM flags.
        self.heap = os.environ.get("AISOAR_OPENSEARCH_HEAP", "512m")
        self.java_opts = os.environ.get("AISOAR_OPENSEARCH_JAVA_OPTS", "").split()
        self._classpath = f"{self.launcher_jar}:{self.jars}/*" + (f":{self.security_jars}/*" if self.security_users else "")
        self._cds = ClassDataArchive(self.launcher_jar.parent, "opensearch", classpath=self._classpath, dump=home / "classes.jsa")

    @property
    def secured(self) -> bool:
        return bool(self.security_users)

    def install(self) -> None:
        maven_jars(POM, self.jars, cache=self.cache)
        if self.secured:
            self._install_security()
        if self.launcher_jar.exists():
            return
        with exclusive(self.launcher_jar.with_name(f"{self.launcher_jar.name}.lock")):
            if self.launcher_jar.exists():
                return
            staging = self.launcher_jar.with_name(f"{self.launcher_jar.stem}.classes")
            shutil.rmtree(staging, ignore_errors=True)
            cmd = [javac(), "-nowarn", "-d", str(staging), "-cp", f"{self.jars}/*", str(LAUNCHER)]
            done = subprocess.run(cmd, check=False, capture_output=True, text=True)
            if done.returncode != 0:
                raise StackError(f"compiling {LAUNCHER.name} failed:\n{(done.stdout + done.stderr)[-3000:]}")
            # A jar, not a classes directory: class-data sharing only archives classes from jars.
            partial = self.launcher_jar.with_name(f"{self.launcher_jar.name}.partial")
            with zipfile.ZipFile(partial, "w") as jar:
                for path in sorted(staging.rglob("*.class")):
                    jar.write(path, path.relative_to(staging).as_posix())
            partial.replace(self.launcher_jar)
            shutil.rmtree(staging, ignore_errors=True)

    def _install_security(self) -> None:
        """Unpack the security plugin's jars, minus those the node already has (same artifact,
        other version: the node's wins, one copy of each class on the classpath)."""
        done = self.security_jars / ".complete"
        if done.exists():
            return
        zips = maven_jars(SECURITY_POM, self.security_jars.with_name(f"{self.security_jars.name}-zip"), cache=self.cache)
        with exclusive(self.security_jars.with_name(f"{self.security_jars.name}.lock")):
            if done.exists():
                return
            core = {_artifact(jar.name) for jar in self.jars.glob("*.jar")}
            staging = self.security_jars.with_name(f"{self.security_jars.name}.partial")
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(parents=True)
            (plugin_zip,) = zips.glob("opensearch-security-*.zip")
            with zipfile.ZipFile(plugin_zip) as archive:
                for member in archive.namelist():
                    if "/" not in member and member.endswith(".jar") and _artifact(member) not in core:
                        (staging / member).write_bytes(archive.read(member))
            (staging / ".complete").write_text(f"{plugin_zip.name}\n")
            shutil.rmtree(self.security_jars, ignore_errors=True)
            staging.rename(self.security_jars)

    def _security_settings(self, config: Path) -> dict[str, Any]:
        """TLS material, the security index's seed files, and the node settings that use them."""
        make_tls(config / "tls")
        meta = {"config": "config", "internal_users": "internalusers", "roles": "roles",
                "roles_mapping": "rolesmapping", "action_groups": "actiongroups", "tenants": "tenants",
                "nodes_dn": "nodesdn", "allowlist": "allowlist", "audit": "audit"}  # fmt: skip
        files: dict[str, dict[str, Any]] = {name: {"_meta": {"type": kind, "config_version": 2}} for name, kind in meta.items()}
        files["config"]["config"] = {
            "dynamic": {
                "http": {"anonymous_auth_enabled": False},
                "authc": {
                    "basic_internal_auth_domain": {
                        "http_enabled": True,
                        "transport_enabled": True,
                        "order": 0,
                        "http_authenticator": {"type": "basic", "challenge": True},
                        "authentication_backend": {"type": "intern"},
                    }
                },
            }
        }
        for user, password in self.security_users.items():
            files["internal_users"][user] = {"hash": bcrypt_hash(password), "description": "aisoar local stack"}
        files["roles_mapping"]["all_access"] = {"users": sorted(self.security_users)}
        files["allowlist"]["config"] = {"enabled": False}
        files["audit"]["config"] = {"enabled": False}
        seed = config / "opensearch-security"
        seed.mkdir(exist_ok=True)
        for name, body in files.items():
            (seed / f"{name}.yml").write_text(json.dumps(body, indent=1))  # JSON is YAML
        tls = {"pemcert_filepath": "tls/node.pem", "pemkey_filepath": "tls/node-key.pem", "pemtrustedcas_filepath": "tls/ca.pem"}
        return {
            **{f"plugins.security.ssl.transport.{key}": value for key, value in tls.items()},
            **{f"plugins.security.ssl.http.{key}": value for key, value in tls.items()},
            "plugins.security.ssl.http.enabled": True,
            "plugins.security.ssl.transport.enforce_hostname_verification": False,
            # Seed the security index from config/opensearch-security/ (no securityadmin run).
            "plugins.security.allow_default_init_securityindex": True,
            "plugins.security.nodes_dn": [NODE_DN],
            "plugins.security.authcz.admin_dn": [ADMIN_DN],
            "plugins.security.audit.type": "noop",
        }

    def _write_config(self) -> Path:
        assert self.port is not None and self.transport_port is not None
        config = self.home / "config"
        config.mkdir(parents=True, exist_ok=True)
        settings: dict[str, Any] = {
            "cluster.name": "aisoar",
            "node.name": "aisoar-node",
            "path.home": str(self.home),
            "path.data": str(self.home / "data"),
            "path.logs": str(self.home / "logs"),
            "discovery.type": "single-node",
            "network.host": "127.0.0.1",
            "http.port": self.port,
            "transport.port": self.transport_port,
            # Test machines run with little free disk: never turn indices read-only.
            "cluster.routing.allocation.disk.threshold_enabled": False,
            # One node: replicas could never be assigned and would keep indices yellow.
            "cluster.default_number_of_replicas": 0,
            "action.auto_create_index": True,
        }
        if self.secured:
            settings.update(self._security_settings(config))
        # JSON values are valid YAML scalars: paths and strings stay quoted correctly.
        (config / "opensearch.yml").write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items()))
        (config / "log4j2.properties").write_text(_LOG4J2)
        return config

    def start(self) -> None:
        shutil.rmtree(self.home / "data", ignore_errors=True)
        self.home.mkdir(parents=True, exist_ok=True)
        self.port, self.transport_port = free_port(), free_port()
        while self.transport_port == self.port:
            self.transport_port = free_port()
        config = self._write_config()
        cmd = [
            java(), f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseG1GC", *self._cds.java_options(),
            "-Djava.awt.headless=true", "-Dfile.encoding=UTF-8", "-Dlog4j2.formatMsgNoLookups=true",
            "-Dlog4j.shutdownHookEnabled=false", "-Dlog4j2.disable.jmx=true",
            f"-Djava.io.tmpdir={self.home / 'tmp'}",
            # The secured node is for tests: C1 only. C2's compiler threads fought the security
            # index's initialisation for the 2 cores (start 74-81 s -> 18-20 s at load average 17-21).
            *(["-XX:TieredStopAtLevel=1", f"-Daisoar.plugins={SECURITY_PLUGIN}"] if self.secured else []),
            *self.java_opts,  # last: a user's flag wins
            "-cp", self._classpath, "AisoarOpenSearchNode", str(config),
        ]  # fmt: skip
        (self.home / "tmp").mkdir(exist_ok=True)
        self.proc = spawn(cmd, log=self.log, cwd=self.home)
        url = self.info()["url"]
        verify: ssl.SSLContext | bool = True
        auth = None
        if self.secured:
            verify = ssl.create_default_context(cafile=str(config / "tls" / "ca.pem"))
            auth = next(iter(self.security_users.items()))
        wait_until(lambda: cluster_ready(url, verify=verify, auth=auth), timeout=self.ready_timeout,
                   what=f"opensearch at {url}", log=self.log, proc=self.proc)  # fmt: skip
        self._cds.check(self.log)

    def stop(self) -> None:
        super().stop()
        self._cds.adopt()

    def info(self) -> dict[str, Any]:
        if self.port is None:
            raise StackError("opensearch has not been started")
        if not self.secured:
            return {"url": f"http://127.0.0.1:{self.port}", "version": self.version}
        return {
            "url": f"https://127.0.0.1:{self.port}",
            "version": self.version,
            "ca_file": str(self.home / "config" / "tls" / "ca.pem"),
            "users": sorted(self.security_users),  # names only: passwords stay with the caller
            "security_plugin": self.security_version,
        }


SERVICE = OpenSearch
