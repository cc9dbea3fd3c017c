"""The new-user walkthrough (docs/walkthrough.md), kept from rotting: real Kafka, the real
worker process, real OpenSearch.

``examples/otel_genai_app.py`` - an app instrumented with the OpenTelemetry SDK, its GenAI
spans written to Kafka as OTLP/JSON the way the Collector's Kafka exporter does - is run
as a user runs it. Its planted secret comes back as a finding in the index whose event id
is the span's ``<traceId>-<spanId>``, the jailbreak session is flagged, the benign call is
not, and /metrics counts it. Every line the worker wrote to stdout and stderr (Faust's
startup included) is a JSON object, one of them the "worker started" record with the
facts Faust's banner used to print, and none holds prompt text.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

import httpx
import pytest

from tests.e2e.conftest import ROOT, run
from tests.e2e.kafka_io import search_index, wait_for_count

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# Texts of the example's prompts: none of them may reach a log line.
PROMPT_FRAGMENTS = ["GITHUB_TOKEN", "Ignore all previous instructions", "Do Anything Now",
                    "release notes", "hidden configuration"]  # fmt: skip
TOKEN = re.compile(r"ghp_[A-Za-z0-9]{36}")  # the planted GitHub token, whole


def test_example_otel_app_findings_indexed_and_worker_logs_only_json(start_worker) -> None:
    worker = start_worker()
    settings = worker.settings
    sent = subprocess.run(
        [sys.executable, "examples/otel_genai_app.py", "--scenario", "benign", "--scenario", "secret",
         "--scenario", "jailbreak", "--json"],
        env=worker.env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    report = json.loads(sent.stdout)
    assert report["topic"] == settings.topics.prompts and report["spans"] == 6
    assert len(report["traces"]) == 6  # one trace per chat call, one Kafka message per trace

    secret_query = {"bool": {"filter": [{"term": {"rule.id": "secret.github_token"}},
                                        {"term": {"user.id": "alice@corp.example"}}]}}  # fmt: skip
    assert run(wait_for_count(settings, "finding", secret_query, 1, timeout=180)) == 1
    (finding,) = run(search_index(settings, "finding", secret_query))
    trace_id, span_id = finding["aisoar"]["event"]["id"].split("-")
    assert trace_id in report["traces"] and len(span_id) == 16  # the span's own ids, hex
    assert finding["aisoar"]["entities"]["credential_id"] == "cred-alice"
    assert finding["aisoar"]["entities"]["app_id"] == "support-copilot"  # from the OTel resource
    assert not TOKEN.search(json.dumps(finding))  # masked evidence only (ghp_****...)

    mallory = {"term": {"user.id": "mallory@corp.example"}}
    assert run(wait_for_count(settings, "finding", mallory, 1, timeout=120)) >= 1
    categories = {doc["aisoar"]["category"] for doc in run(search_index(settings, "finding", mallory))}
    assert categories & {"jailbreak", "prompt_injection", "system_prompt_leak"}, categories
    assert run(wait_for_count(settings, "finding", {"term": {"user.id": "bob@corp.example"}}, 0, timeout=10)) == 0

    metrics = httpx.get(f"http://127.0.0.1:{settings.worker.web_port}/metrics", timeout=10).text
    assert 'aisoar_findings_total{rule="secret.github_token",severity=' in metrics

    worker.stop()  # shutdown output counts too
    lines = worker.log.read_text(errors="replace").splitlines()
    assert lines, "the worker wrote nothing"
    not_json = []
    records = []
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            not_json.append(line)
            continue
        if isinstance(doc, dict):
            records.append(doc)
        else:
            not_json.append(line)
    assert not_json == [], f"{len(not_json)} of {len(lines)} lines are not JSON objects, e.g. {not_json[:5]}"
    started = [r for r in records if r["message"] == "worker started"]
    assert len(started) == 1
    assert started[0]["labels"]["id"] == settings.worker.id
    assert started[0]["labels"]["web"].endswith(f":{settings.worker.web_port}")
    log_text = "\n".join(lines)
    assert [fragment for fragment in PROMPT_FRAGMENTS if fragment in log_text] == []
    assert not TOKEN.search(log_text)


@pytest.mark.stack_services("oidc")
def test_stack_env_mints_live_tokens_and_exports_what_responding_needs(stack, tmp_path) -> None:
    """Step 3 of the walkthrough: ``eval "$(aisoar stack env --mint cred-mallory)"``."""
    from aisoar.demo import introspect

    oidc = stack["oidc"]
    (tmp_path / "state.json").write_text(json.dumps(stack.state()))
    env = {**os.environ, "AISOAR_STACK_DIR": str(tmp_path)}
    command = [sys.executable, "-m", "aisoar.cli", "stack", "env", "--mint", "cred-mallory", "--mint", "cred-mallory"]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    exports = dict(shlex.split(line.removeprefix("export "))[0].split("=", 1) for line in done.stdout.splitlines())
    assert exports == {"AISOAR_IDENTITY__CLIENT_SECRET": oidc["clients"]["aisoar-responder"]["client_secret"],
                       "AISOAR_CREDENTIAL_VAULT": str(tmp_path / "credentials.json")}  # fmt: skip
    vault = tmp_path / "credentials.json"
    assert vault.stat().st_mode & 0o777 == 0o600
    tokens = json.loads(vault.read_text())["cred-mallory"]
    assert len(tokens) == 2 and all(introspect(oidc, token) for token in tokens)  # live at the identity server
    assert not any(token in done.stdout + done.stderr for token in tokens)  # tokens stay in the file

    (tmp_path / "state.json").write_text(json.dumps({"services": {}}))
    refused = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1 and "aisoar stack up" in refused.stderr
