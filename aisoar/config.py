"""Settings: one TOML file plus ``AISOAR_<SECTION>__<KEY>`` environment overrides.

Secrets are never read from the file itself: only from the environment or from
a file named by a ``*_file`` key (e.g. ``siem.password_file``). Validation
errors name the file and the key.

>>> s = load_settings(env={"AISOAR_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9999"})
>>> s.kafka.bootstrap_servers, s.topics.prompts
('127.0.0.1:9999', 'ai.prompts')
>>> load_settings(env={"AISOAR_WORKER__PROCESSING_GUARANTEE": "maybe"})
Traceback (most recent call last):
...
aisoar.errors.ConfigError: <env>:worker.processing_guarantee: Invalid enum value 'maybe'
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec

from aisoar.errors import ConfigError

__all__ = [
    "IdentitySettings",
    "KafkaSettings",
    "OncallSettings",
    "PlaybookSettings",
    "RegistrySettings",
    "Settings",
    "SiemSettings",
    "TopicSettings",
    "WorkerSettings",
    "apply_stack_state",
    "load_settings",
    "read_secret",
]

ENV_PREFIX = "AISOAR_"


class _Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    pass


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password_file: str | None = None  # or AISOAR_KAFKA__SASL_PASSWORD
    ssl_cafile: str | None = None


class TopicSettings(_Section):
    prompts: str = "ai.prompts"
    inference: str = "ai.inference"
    security: str = "security.events"
    findings: str = "aisoar.findings"
    incidents: str = "aisoar.incidents"
    actions: str = "aisoar.actions"
    deadletter: str = "aisoar.deadletter"
    partitions: int = 4
    replication_factor: int = 1


class SiemSettings(_Section):
    url: str | None = "http://127.0.0.1:9200"  # None: do not index
    index_prefix: str = "aisoar"
    username: str | None = None
    password_file: str | None = None  # or AISOAR_SIEM__PASSWORD
    api_key_file: str | None = None  # or AISOAR_SIEM__API_KEY
    ca_file: str | None = None
    verify: bool = True
    flush_max_docs: int = 2000
    flush_interval_s: float = 0.2


class WorkerSettings(_Section):
    id: str = "aisoar"
    # at-least-once with idempotent writes everywhere (README "Guarantees"): Faust 0.15's
    # exactly-once mode crashed here with ProducerFenced after idle partitions' transactions timed out.
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    store: str = "memory://"  # "rocksdb://" when state exceeds RAM
    data_dir: str = ".aisoar-data"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    batch_max: int = 1000
    batch_within_s: float = 0.05
    # Containment first (streams/detect.py): detection pauses while more records than this
    # wait for fan-out, correlation and respond in this worker (0: never pause) ...
    containment_backlog_max: int = 64
    # ... for at most this long per pause, so detection (and the SIEM) never stops for good.
    containment_max_pause_s: float = 0.25
    policy_dir: str | None = None  # overrides the shipped detector policy files
    log_format: Literal["json", "text"] = "json"


class IdentitySettings(_Section):
    """The OAuth 2.0 server whose tokens playbooks revoke (RFC 7009 / RFC 7662)."""

    issuer_url: str | None = None
    revocation_endpoint: str | None = None  # default: discovered, else <issuer>/token/revocation
    introspection_endpoint: str | None = None
    client_id: str | None = None
    client_secret_file: str | None = None  # or AISOAR_IDENTITY__CLIENT_SECRET


class RegistrySettings(_Section):
    mlflow_url: str | None = None
    serving_alias: str = "champion"


class OncallSettings(_Section):
    alertmanager_url: str | None = None
    pagerduty_url: str | None = None
    pagerduty_routing_key_file: str | None = None
    slack_webhook_file: str | None = None
    approval_base_url: str | None = None


class PlaybookSettings(_Section):
    dir: str | None = None  # default: the shipped playbooks/definitions
    kill_switch: bool = False  # no action at all, not even planned
    dry_run: bool = False  # every playbook behaves as observe
    api_token_file: str | None = None  # or AISOAR_PLAYBOOKS__API_TOKEN: the "oncall" approver's bearer token
    approvers_file: str | None = None  # more approvers: one "name token" per line (audited by name)
    approvals_host: str = "127.0.0.1"
    approvals_port: int = 6067  # the approvals API and web page; 0 = a free port
    approval_ttl_s: float = 3600.0  # a pending approval nobody decides expires (audited "expired")
    check_interval_s: float = 10.0  # how often the worker expires approvals and runs due verifications
    concurrency: int = 16  # incidents the respond stage works on at once (each incident's records stay in order)
    # TLS for that listener: PEM files kept outside the repo, like every secret. With the
    # certificate (chain) and its key set, the listener serves https only; with a client CA
    # too, it also requires a client certificate signed by that CA (mutual TLS).
    approvals_tls_cert_file: str | None = None
    approvals_tls_key_file: str | None = None
    approvals_tls_client_ca_file: str | None = None
    # The client side (``aisoar actions ...``): the CA that signed the listener's certificate
    # (default: the system's CAs), and a client certificate when the listener requires one.
    approvals_ca_file: str | None = None
    approvals_client_cert_file: str | None = None
    approvals_client_key_file: str | None = None

    def __post_init__(self) -> None:
        # msgspec turns these ValueErrors into validation errors naming `playbooks`.
        if bool(self.approvals_tls_cert_file) != bool(self.approvals_tls_key_file):
            raise ValueError("approvals_tls_cert_file and approvals_tls_key_file must be set together")
        if self.approvals_tls_client_ca_file and not self.approvals_tls_cert_file:
            raise ValueError("approvals_tls_client_ca_file needs approvals_tls_cert_file and approvals_tls_key_file")
        if self.approvals_client_key_file and not self.approvals_client_cert_file:
            raise ValueError("approvals_client_key_file needs approvals_client_cert_file")

    @property
    def approvals_tls(self) -> bool:
        """True when the approvals listener serves https."""
        return bool(self.approvals_tls_cert_file)

    @property
    def approvals_url(self) -> str:
        """The listener's base URL, ``https`` when TLS is on (the alert's link, the CLI's default)."""
        return f"{'https' if self.approvals_tls else 'http'}://{self.approvals_host}:{self.approvals_port}"


class Settings(_Section):
    kafka: KafkaSettings = msgspec.field(default_factory=KafkaSettings)
    topics: TopicSettings = msgspec.field(default_factory=TopicSettings)
    siem: SiemSettings = msgspec.field(default_factory=SiemSettings)
    worker: WorkerSettings = msgspec.field(default_factory=WorkerSettings)
    identity: IdentitySettings = msgspec.field(default_factory=IdentitySettings)
    registry: RegistrySettings = msgspec.field(default_factory=RegistrySettings)
    oncall: OncallSettings = msgspec.field(default_factory=OncallSettings)
    playbooks: PlaybookSettings = msgspec.field(default_factory=PlaybookSettings)


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``AISOAR_SIEM__URL=...`` → ``{"siem": {"url": ...}}``; values are parsed as JSON when they can be."""
    out: dict[str, dict[str, Any]] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if key in _SECRET_KEYS.get(section, ()):
            continue  # secrets are read on use by read_secret, never stored in Settings
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        if isinstance(value, (dict, list)):
            value = raw
        out.setdefault(section, {})[key] = value
    return out


_SECRET_KEYS = {
    "kafka": ("sasl_password",),
    "siem": ("password", "api_key"),
    "identity": ("client_secret",),
    "playbooks": ("api_token",),
    "oncall": ("pagerduty_routing_key", "slack_webhook"),
}


def load_settings(path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None) -> Settings:
    """Load ``path`` (TOML; default: ``$AISOAR_CONFIG`` if set) and apply environment overrides."""
    env = os.environ if env is None else env
    path = path or env.get("AISOAR_CONFIG")
    doc: dict[str, Any] = {}
    source = "<defaults>"
    if path:
        source = str(path)
        try:
            doc = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", file=source) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML: {exc}", file=source) from exc
    settings = _validate(doc, source)
    stack_file = env.get("AISOAR_STACK_FILE")
    if stack_file:  # the local stack's addresses, then explicit overrides on top of them
        settings = apply_stack_state(settings, json.loads(Path(stack_file).read_text()))
        doc = msgspec.to_builtins(settings)
    overrides = _env_overrides(env)
    for section, values in overrides.items():
        doc.setdefault(section, {}).update(values)
    return _validate(doc, "<env>") if overrides else settings


def _validate(doc: dict[str, Any], source: str) -> Settings:
    try:
        return msgspec.convert(doc, Settings, strict=False)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$.")
        key = where.rstrip("`") if where else None
        if message.startswith("Object contains unknown field"):
            message = f"unknown key {message.rsplit(' ', 1)[-1]}"
        raise ConfigError(message, file=source, key=key) from None


def apply_stack_state(settings: Settings, state: Mapping[str, Any]) -> Settings:
    """Point the settings at the servers of a running local stack (``aisoar stack status --json``)."""
    services = state.get("services", state)
    s = settings
    if kafka := services.get("kafka"):
        s = msgspec.structs.replace(s, kafka=msgspec.structs.replace(s.kafka, bootstrap_servers=kafka["bootstrap_servers"]))
    if opensearch := services.get("opensearch"):
        s = msgspec.structs.replace(s, siem=msgspec.structs.replace(s.siem, url=opensearch["url"]))
    if mlflow := services.get("mlflow"):
        s = msgspec.structs.replace(s, registry=msgspec.structs.replace(s.registry, mlflow_url=mlflow["url"]))
    if am := services.get("alertmanager"):
        s = msgspec.structs.replace(s, oncall=msgspec.structs.replace(s.oncall, alertmanager_url=am["url"]))
    if oidc := services.get("oidc"):
        client = oidc.get("clients", {}).get("aisoar-responder", {})
        s = msgspec.structs.replace(
            s,
            identity=msgspec.structs.replace(
                s.identity, issuer_url=oidc.get("issuer") or oidc["url"], client_id=client.get("client_id")
            ),
        )
    return s


def read_secret(section: str, key: str, settings: Settings, *, env: Mapping[str, str] | None = None) -> str | None:
    """A secret from ``AISOAR_<SECTION>__<KEY>`` or the file named by ``<section>.<key>_file``."""
    env = os.environ if env is None else env
    value = env.get(f"{ENV_PREFIX}{section.upper()}__{key.upper()}")
    if value:
        return value
    file = getattr(getattr(settings, section), f"{key}_file", None)
    if file:
        try:
            return Path(file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read secret file: {exc.strerror}", file=file, key=f"{section}.{key}_file") from exc
    return None
