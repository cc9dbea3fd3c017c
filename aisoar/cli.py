"""``aisoar``: the command line (typer + rich)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="aisoar: detect, correlate and contain threats in AI telemetry.", no_args_is_help=True)
stack_app = typer.Typer(help="The local stack: Kafka, OpenSearch, MLflow, oidc-provider, Alertmanager.", no_args_is_help=True)
actions_app = typer.Typer(help="Response actions: list, approve, deny.", no_args_is_help=True)
config_app = typer.Typer(help="Configuration and policy files.", no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(actions_app, name="actions")
app.add_typer(config_app, name="config")
incidents_app = typer.Typer(help="Incidents: suppress a rule on an entity.", no_args_is_help=True)
app.add_typer(incidents_app, name="incidents")
siem_app = typer.Typer(help="SIEM content: saved searches and a dashboard for Kibana / OpenSearch Dashboards.",
                       no_args_is_help=True)
app.add_typer(siem_app, name="siem")

console = Console(stderr=True)
ConfigOption = Annotated[Optional[Path], typer.Option("--config", "-c", help="TOML config file (default: $AISOAR_CONFIG).")]


def _use_config(config: Path | None) -> None:
    if config is not None:
        os.environ["AISOAR_CONFIG"] = str(config)


def _stack_env() -> None:
    """Point the settings at the running local stack unless told otherwise."""
    if "AISOAR_STACK_FILE" in os.environ:
        return
    import stack
    import stack.manager

    state_file = stack.manager.state_path()
    if state_file.exists():
        os.environ["AISOAR_STACK_FILE"] = str(state_file)


# ---------------------------------------------------------------- stack


@stack_app.command("up")
def stack_up(
    services: Annotated[Optional[str], typer.Option(help="Comma-separated subset, e.g. kafka,opensearch.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
) -> None:
    """Install (first time) and start the local servers on free loopback ports."""
    import stack
    import stack.manager

    names = services.split(",") if services else None
    started = time.monotonic()
    state = stack.up(names)
    if as_json:
        print(json.dumps(state, indent=2))
        return
    _print_stack(state)
    console.print(f"stack up in {time.monotonic() - started:.1f}s; state in {stack.manager.state_path()}")


@stack_app.command("down")
def stack_down() -> None:
    """Stop every server of the local stack."""
    import stack
    import stack.manager

    stack.down()
    console.print("stack stopped")


@stack_app.command("status")
def stack_status(as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False) -> None:
    """Where each server is and whether it is running."""
    import stack
    import stack.manager

    state = stack.status()
    if as_json:
        print(json.dumps(state, indent=2))
    else:
        _print_stack(state)


@stack_app.command("env")
def stack_env(
    mint: Annotated[Optional[list[str]], typer.Option(
        "--mint", metavar="CREDENTIAL", help="Mint a live token at the local identity server for this credential id and add it "
                       "to the stack's credential vault (repeatable).")] = None,
) -> None:
    """Shell exports that let the worker respond on the local stack: the responder's client secret at
    the identity server and the credential vault. Use: eval "$(aisoar stack env --mint cred-mallory)"."""
    import shlex

    import stack
    import stack.manager
    from aisoar.demo import mint_token

    oidc = stack.status().get("services", {}).get("oidc")
    if not oidc or not oidc.get("alive"):
        console.print("[red]the local identity server is not running: aisoar stack up[/]")
        raise typer.Exit(1)
    vault = stack.manager.state_path().parent / "credentials.json"
    tokens: dict[str, list[str]] = json.loads(vault.read_text()) if vault.exists() else {}
    for credential in mint or []:
        tokens.setdefault(credential, []).append(mint_token(oidc))
        console.print(f"minted a live token for {credential} (kept in {vault})")
    # Owner-only from the first byte: the file holds live tokens.
    fd = os.open(vault, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(tokens, out)
    secret = oidc["clients"]["aisoar-responder"]["client_secret"]
    print(f"export AISOAR_IDENTITY__CLIENT_SECRET={shlex.quote(secret)}")
    print(f"export AISOAR_CREDENTIAL_VAULT={shlex.quote(str(vault))}")


def _print_stack(state: dict) -> None:
    table = Table("service", "running", "address")
    for name, info in state.get("services", {}).items():
        address = info.get("bootstrap_servers") or info.get("url") or ""
        table.add_row(name, "yes" if info.get("alive", True) else "no", address)
    console.print(table)


# ---------------------------------------------------------------- worker


@app.command()
def worker(
    config: ConfigOption = None,
    loglevel: Annotated[str, typer.Option("--loglevel", "-l")] = "info",
) -> None:
    """Run the streaming worker (Faust): detect, correlate, respond, index."""
    _use_config(config)
    _stack_env()
    from streams.main import run_worker

    run_worker(loglevel=loglevel)


# ---------------------------------------------------------------- simulate


@app.command()
def simulate(
    config: ConfigOption = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same records).")] = 42,
    benign: Annotated[int, typer.Option(help="Number of benign LLM calls.")] = 2000,
    inference: Annotated[int, typer.Option(help="Inference events per model version.")] = 600,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write JSONL here instead of producing to Kafka.")] = None,
) -> None:
    """Produce realistic telemetry with attack scenarios mixed into benign traffic."""
    from aisoar.simulate import Simulation

    from datetime import datetime, timedelta, timezone

    # The simulated half hour ends now, so event times, incident ages and MTTD are real.
    start = datetime.now(timezone.utc) - timedelta(minutes=30)
    sim = Simulation(seed=seed, benign=benign, inference_per_version=inference, start=start)
    records = list(sim.records())
    if output is not None:
        with open(output, "wb") as out:
            for _, _, value in records:
                out.write(value + b"\n")
        console.print(f"wrote {len(records)} records to {output}")
    else:
        _use_config(config)
        _stack_env()
        from aisoar.config import load_settings
        from streams.produce import produce_records

        settings = load_settings()
        topics = {"ai.prompts": settings.topics.prompts, "ai.inference": settings.topics.inference,
                  "security.events": settings.topics.security}
        with _progress() as progress:
            task = progress.add_task("producing", total=len(records))
            asyncio.run(produce_records(settings, [(topics[t], k, v) for t, k, v in records],
                                        on_sent=lambda n: progress.advance(task, n)))
    table = Table("scenario", "what was planted")
    for scenario in sim.scenarios:
        table.add_row(scenario.name, scenario.description)
    console.print(table)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


# ---------------------------------------------------------------- replay


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="JSONL of ai.prompts / ai.inference / security.events records.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Findings JSONL (default: stdout).")] = None,
    config: ConfigOption = None,
) -> None:
    """Run decode → detect → correlate → playbooks (observe) over a file, without Kafka."""
    _use_config(config)
    from aisoar.replay import replay_file

    out = open(output, "wb") if output else sys.stdout.buffer
    try:
        summary = replay_file(file, out, progress=_progress() if output else None)
    finally:
        if output:
            out.close()
    table = Table("records", "findings", "dead letters", "incidents", "actions planned")
    table.add_row(*(str(summary[k]) for k in ("records", "findings", "dead_letters", "incidents", "actions")))
    console.print(table)
    plan = Table("incident", "playbook", "action", "target", "status", "request", title="What the playbooks would do")
    for record in summary["planned"]:
        request = record.request or {}
        plan.add_row(record.incident_id or "", record.playbook, record.action, record.target, record.status,
                     f"{request.get('method', '')} {request.get('url', '')}".strip())
    console.print(plan)




# ---------------------------------------------------------------- demo


@app.command()
def demo(
    benign: Annotated[int, typer.Option(help="Benign LLM calls mixed with the attacks.")] = 2000,
    keep_stack: Annotated[bool, typer.Option(help="Leave the local stack running afterwards.")] = False,
) -> None:
    """Start the local stack, run the worker and the attack simulation, show what was found and done."""
    from aisoar.demo import run_demo

    raise typer.Exit(run_demo(console, benign=benign, keep_stack=keep_stack))


# ---------------------------------------------------------------- actions


def _approvals_client(url: str | None, config: Path | None, tls: _ClientTls) -> tuple[object, object]:
    from aisoar.config import load_settings, read_secret
    from aisoar.errors import ConfigError
    from playbooks.approvals_client import ApprovalsClient, http_client

    _use_config(config)
    settings = load_settings()
    p = settings.playbooks
    token = read_secret("playbooks", "api_token", settings)
    if not token:
        console.print("[red]set AISOAR_PLAYBOOKS__API_TOKEN (or playbooks.api_token_file) to your approver token[/]")
        raise typer.Exit(2)
    ca_file = tls.ca_file or p.approvals_ca_file
    cert_file = tls.client_cert or p.approvals_client_cert_file
    key_file = tls.client_key or (p.approvals_client_key_file if not tls.client_cert else None)
    # Default URL: https when this config serves TLS or names a CA to verify the listener with.
    scheme = "https" if p.approvals_tls or ca_file else "http"
    base = url or f"{scheme}://{p.approvals_host}:{p.approvals_port}"
    try:
        client = http_client(base, ca_file=ca_file, cert_file=cert_file, key_file=key_file)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    return ApprovalsClient(client, token), client


def _call_api(client: object, call: Callable[[], Awaitable[Any]]) -> Any:
    """Run one API call; an unreachable, untrusted or refusing API is a one-line error, exit 1."""
    from aisoar.errors import ActionError

    async def go() -> Any:
        try:
            return await call()
        finally:
            await client.aclose()  # type: ignore[attr-defined]

    try:
        return asyncio.run(go())
    except ActionError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None


@dataclass(frozen=True)
class _ClientTls:
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None


UrlOption = Annotated[Optional[str], typer.Option("--url", help="Approvals API base URL (default: from config).")]
CaFileOption = Annotated[Optional[Path], typer.Option(
    "--ca-file", help="PEM CA that signed the approvals listener's certificate (default: "
                      "playbooks.approvals_ca_file / AISOAR_PLAYBOOKS__APPROVALS_CA_FILE, else the system's CAs).")]
ClientCertOption = Annotated[Optional[Path], typer.Option(
    "--client-cert", help="PEM client certificate, when the listener requires one (playbooks.approvals_client_cert_file).")]
ClientKeyOption = Annotated[Optional[Path], typer.Option(
    "--client-key", help="PEM key of --client-cert, if not inside it (playbooks.approvals_client_key_file).")]


def _tls(ca_file: Path | None, client_cert: Path | None, client_key: Path | None) -> _ClientTls:
    return _ClientTls(*(str(p) if p else None for p in (ca_file, client_cert, client_key)))


@actions_app.command("list")
def actions_list(url: UrlOption = None, config: ConfigOption = None, ca_file: CaFileOption = None,
                 client_cert: ClientCertOption = None, client_key: ClientKeyOption = None) -> None:
    """Pending actions waiting for a human decision."""
    api, client = _approvals_client(url, config, _tls(ca_file, client_cert, client_key))
    table = Table("action id", "playbook", "action", "target", "incident", "expires")
    for item in _call_api(client, api.list_pending):  # type: ignore[attr-defined]
        table.add_row(item.get("action_id", ""), item.get("playbook", ""), item.get("action", ""),
                      item.get("target", ""), item.get("incident", {}).get("id", ""), str(item.get("expires_at", "")))
    console.print(table)


def _decide(action_id: str, approve: bool, url: str | None, config: Path | None, tls: _ClientTls) -> None:
    api, client = _approvals_client(url, config, tls)
    call = api.approve if approve else api.deny  # type: ignore[attr-defined]
    console.print_json(json.dumps(_call_api(client, lambda: call(action_id)), default=str))


@actions_app.command("approve")
def actions_approve(action_id: str, url: UrlOption = None, config: ConfigOption = None, ca_file: CaFileOption = None,
                    client_cert: ClientCertOption = None, client_key: ClientKeyOption = None) -> None:
    """Approve a pending action: the worker runs it and audits you as the approver."""
    _decide(action_id, True, url, config, _tls(ca_file, client_cert, client_key))


@actions_app.command("deny")
def actions_deny(action_id: str, url: UrlOption = None, config: ConfigOption = None, ca_file: CaFileOption = None,
                 client_cert: ClientCertOption = None, client_key: ClientKeyOption = None) -> None:
    """Deny a pending action."""
    _decide(action_id, False, url, config, _tls(ca_file, client_cert, client_key))


# ---------------------------------------------------------------- config


@config_app.command("check")
def config_check(config: ConfigOption = None, playbooks_dir: Annotated[Optional[Path], typer.Option()] = None) -> None:
    """Validate the config file and every policy file without starting anything."""
    from aisoar.policycheck import check_all

    _use_config(config)
    problems = check_all(playbooks_dir=playbooks_dir)
    for problem in problems:
        console.print(f"[red]✗[/] {problem}")
    if problems:
        raise typer.Exit(1)
    console.print("[green]✓[/] config and policy files are valid")


# ---------------------------------------------------------------- bench


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def bench(ctx: typer.Context) -> None:
    """Run the benchmarks in bench/ (``--quick`` for the short run); figures go to bench/results.json."""
    import runpy

    sys.argv = ["bench", *ctx.args]
    runpy.run_module("bench", run_name="__main__", alter_sys=True)


# ---------------------------------------------------------------- incidents


@incidents_app.command("suppress")
def incidents_suppress(
    rule_id: Annotated[str, typer.Argument(help="Incident rule, e.g. incident.single_finding.")],
    correlation_key: Annotated[str, typer.Argument(help="Entity, e.g. session:s1, principal:cred-7, model:m@3.")],
    hours: Annotated[float, typer.Option(help="For how long (event time).")] = 24.0,
    reason: Annotated[str, typer.Option(help="Why: kept in the worker log.")] = "",
    config: ConfigOption = None,
) -> None:
    """Mute an incident rule on one entity for a while (e.g. a known red-team session)."""
    import getpass
    from datetime import datetime, timedelta, timezone

    from aisoar.config import load_settings
    from aisoar.events import encode
    from aisoar.incidents import Suppression
    from streams.produce import produce_records

    _use_config(config)
    _stack_env()
    settings = load_settings()
    suppression = Suppression(rule_id=rule_id, correlation_key=correlation_key, reason=reason, actor=getpass.getuser(),
                              until=datetime.now(timezone.utc) + timedelta(hours=hours))
    asyncio.run(produce_records(settings, [(f"{settings.topics.findings}.by-key", correlation_key.encode(),
                                            encode(suppression))], headers=[("aisoar-kind", b"suppress")]))
    console.print(f"{rule_id} suppressed on {correlation_key} until {suppression.until:%Y-%m-%d %H:%M} UTC")


# ---------------------------------------------------------------- siem


@siem_app.command("dashboards")
def siem_dashboards(
    flavor: Annotated[str, typer.Option(help="kibana or opensearch-dashboards.")] = "kibana",
    prefix: Annotated[Optional[str], typer.Option(help="Index prefix (default: siem.index_prefix of the config).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    config: ConfigOption = None,
) -> None:
    """Print the saved objects (data view, saved searches, visualisations, dashboard) as the NDJSON
    that ``POST /api/saved_objects/_import`` takes (see docs/dashboards.md)."""
    from streams.siem.dashboards import FLAVORS, export_ndjson

    if flavor not in FLAVORS:
        console.print(f"[red]unknown flavor {flavor!r}; valid flavors: {', '.join(FLAVORS)}[/]")
        raise typer.Exit(2)
    if prefix is None:
        from aisoar.config import load_settings

        _use_config(config)
        prefix = load_settings().siem.index_prefix
    text = export_ndjson(flavor, prefix)  # type: ignore[arg-type]
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
        console.print(f"wrote {text.count(chr(10)) - 1} saved objects for {flavor} to {output}")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
