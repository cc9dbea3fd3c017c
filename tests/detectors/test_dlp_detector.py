"""DLPDetector: fields, severities, ids, truncation, policy, engines, exports."""

from __future__ import annotations

import random
import string
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

import detectors.dlp
from aisoar.errors import ConfigError
from aisoar.events import PromptEvent, ToolCall
from aisoar.findings import finding_id, fingerprint, mask
from detectors.dlp import DLPDetector, Scanner, data_classes, load_policy, parse_policy

TS = datetime(2026, 11, 25, 10, tzinfo=UTC)
RNG = random.Random(11)
TOKEN = "ghp_" + "".join(RNG.choice(string.ascii_letters + string.digits) for _ in range(36))


def event(prompt: str = "", response: str = "", tool_calls: list[ToolCall] | None = None) -> PromptEvent:
    return PromptEvent(schema_version=1, event_id="ev-1", timestamp=TS, user_id="alice", session_id="s1",
                       credential_id="cred-9", server_address="api.openai.com", provider="openai",
                       request_model="gpt-4o", prompt=prompt, response=response, tool_calls=tool_calls or [])


@pytest.fixture(scope="module")
def detector() -> DLPDetector:
    return DLPDetector()


def test_exports_are_exactly_the_public_names() -> None:
    public = {n for n in dir(detectors.dlp) if not n.startswith("_")}
    modules = {"_detector", "_policy", "_rules", "_scanner", "_validators"}
    assert set(detectors.dlp.__all__) == public - modules
    assert len(detectors.dlp.__all__) == len(set(detectors.dlp.__all__))


def test_every_field_scanned_with_its_name(detector: DLPDetector) -> None:
    ev = event(prompt=f"use {TOKEN}", response=f"here: {TOKEN}",
               tool_calls=[ToolCall(name="http", arguments=f'{{"auth": "{TOKEN}"}}', output=f"echo {TOKEN}")])
    got = [(f.evidence[0].field, f.evidence[0].start, f.severity) for f in detector.check(ev)]
    assert got == [
        ("prompt", 4, "high"),
        ("response", 6, "critical"),  # leaked to the user: one step higher
        ("tool_calls[0].arguments", 10, "critical"),  # the model sends it out through a tool
        ("tool_calls[0].output", 5, "high"),
    ]


def test_finding_contents(detector: DLPDetector) -> None:
    (f,) = detector.check(event(prompt=f"use {TOKEN}"))
    assert f.id == finding_id("ev-1", "secret.github_token", "prompt:4")
    assert (f.rule_id, f.category, f.detector, f.detector_version) == (
        "secret.github_token", "secret", "content.dlp", DLPDetector.version)
    assert f.owasp == ("LLM02:2025",) and f.atlas == ("AML.T0057", "AML.T0055")
    assert (f.entities.user_id, f.entities.credential_id, f.entities.gen_ai_model) == ("alice", "cred-9", "gpt-4o")
    ev = f.evidence[0]
    assert (ev.start, ev.end, ev.redacted, ev.sha) == (4, 44, mask(TOKEN), fingerprint(TOKEN))
    assert TOKEN not in msgspec.json.encode(f).decode()  # no raw value anywhere in the finding


def test_ids_are_deterministic(detector: DLPDetector) -> None:
    ev = event(prompt=f"a {TOKEN} b jane@corp-mail.com")
    assert [f.id for f in detector.check(ev)] == [f.id for f in DLPDetector().check(ev)]


def test_truncation_scans_head_and_tail_with_note() -> None:
    d = DLPDetector(max_scan_length=1000)
    text = f"{TOKEN} " + "lorem ipsum " * 10_000 + f" {TOKEN}"
    findings = d.check(event(prompt=text))
    assert [f.evidence[0].start for f in findings] == [0, len(text) - len(TOKEN)]
    assert all("scanned first and last 500" in f.evidence[0].detail for f in findings)
    middle = "x" * 600 + TOKEN + "x" * 600
    assert d.check(event(prompt="a " * 400 + f" {TOKEN} " + "b " * 400 + middle)) == []  # middle not scanned


def test_findings_per_rule_are_capped() -> None:
    d = DLPDetector(max_findings_per_rule=3)
    findings = d.check(event(prompt=" ".join(f"user{i}@corp-mail.com" for i in range(10))))
    assert len(findings) == 3
    assert findings[-1].evidence[0].detail.endswith("7 more in this field not reported")


def test_source_code_only_outside_responses(detector: DLPDetector) -> None:
    code = "import os\nimport sys\n\ndef main():\n    x = os.getcwd()\n    return x\n"
    assert [f.rule_id for f in detector.check(event(prompt=code))] == ["source_code.block"]
    assert detector.check(event(response=code)) == []
    assert [f.rule_id for f in DLPDetector(code_in_responses=True).check(event(response=code))] == ["source_code.block"]


def test_data_classes(detector: DLPDetector) -> None:
    code = "import os\nimport sys\n\ndef main():\n    x = os.getcwd()\n    return x\n"
    ev = event(prompt=f"TOP SECRET {TOKEN}\n{code}", response="mail jane@corp-mail.com",
               tool_calls=[ToolCall(name="crm", arguments="INTERNAL ONLY", output="ssn 256-35-1794")])
    findings = detector.check(ev)
    # Only what reached the AI service: the prompt and the tool output fed back to it.
    assert data_classes(findings) == {"secret", "pii", "source_code", "classified:restricted"}
    assert data_classes(findings, sent_only=False) == {
        "secret", "pii", "source_code", "classified:restricted", "classified:confidential"}
    assert data_classes(detector.check(event(response="mail jane@corp-mail.com"))) == frozenset()
    assert data_classes([]) == frozenset()


def test_custom_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: 1\nclassifications:\n  secret_project:\n    severity: high\n    terms: [Orca Nine]\n")
    d = DLPDetector(policy=path)
    (f,) = d.check(event(prompt="status of orca  nine?"))
    assert (f.rule_id, f.severity, f.evidence[0].start) == ("classified.secret_project", "high", 10)


@pytest.mark.parametrize(("doc", "key"), [
    ({"version": 1, "classifications": []}, "classifications"),
    ({"version": 1, "classifications": {"Bad Name": {"terms": ["x"]}}}, "classifications.Bad Name"),
    ({"version": 1, "classifications": {"c": {"severity": "huge", "terms": ["x"]}}}, "classifications.c.severity"),
    ({"version": 1, "classifications": {"c": {"terms": [""]}}}, "classifications.c.terms[0]"),
])
def test_policy_errors_name_the_key(doc: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_policy(doc, "p.yaml")
    assert exc.value.key == key and exc.value.file == "p.yaml"


def test_unreadable_policy(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read policy"):
        load_policy(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [1\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_policy(bad)


def test_invalid_options() -> None:
    with pytest.raises(ValueError, match="engine must be one of auto, hyperscan, re"):
        DLPDetector(engine="pcre")
    with pytest.raises(ValueError, match="max_scan_length"):
        DLPDetector(max_scan_length=0)


def test_re_fallback_agrees_with_hyperscan() -> None:
    from tests.detectors.test_dlp_rules import FALSE_CASES, TRUE_CASES

    policy = load_policy()
    hs, rx = Scanner(policy=policy, engine="hyperscan"), Scanner(policy=policy, engine="re")
    assert rx.engine_used == "re"
    texts = [t.format(v) for _, t, v in TRUE_CASES] + [t for _, t in FALSE_CASES]
    for text in texts:
        assert hs.scan(text) == rx.scan(text), text


@pytest.mark.parametrize("engine", ["hyperscan", "re"])
def test_scan_without_code_is_the_scan_minus_source_code(engine: str) -> None:
    # responses are scanned without the code markers (code there is not reported): every
    # other match must be exactly what the full scan finds, code or no code around it
    from tests.detectors.test_dlp_rules import FALSE_CASES, TRUE_CASES

    scanner = Scanner(policy=load_policy(), engine=engine)
    code = "import os\nimport sys\n\ndef main():\n    x = os.getcwd()\n    return x\n"
    texts = [t.format(v) for _, t, v in TRUE_CASES] + [t for _, t in FALSE_CASES]
    texts += [code + t + "\n" + code for t in texts[:20]]
    for text in texts:
        full = scanner.scan(text)
        assert scanner.scan(text, code=False) == [m for m in full if m.category != "source_code"], text
    assert any(m.category == "source_code" for m in scanner.scan(texts[-1]))


def test_secret_in_a_code_heavy_response_is_still_found(detector: DLPDetector) -> None:
    code = "import os\nimport sys\n\ndef main():\n    x = os.getcwd()\n    return x\n"
    findings = detector.check(event(response=code + 'token = "ghp_' + "A1b2C3d4E5" * 3 + 'abcdef"\n' + code))
    assert [(f.rule_id, f.evidence[0].field) for f in findings] == [("secret.github_token", "response")]


@pytest.mark.parametrize("min_lines", [1, 2, 4])
def test_code_block_needs_min_code_lines_lines_exactly(min_lines: int) -> None:
    # texts with fewer lines than min_code_lines skip the code markers: the edge stays exact
    scanner = Scanner(min_code_lines=min_lines)
    lines = ["import os", "import sys", "def main():", "    return os.getcwd()"]
    enough = "\n".join(lines[:min_lines])
    assert [m.rule_id for m in scanner.scan(enough)] == ["source_code.block"]
    assert [m.rule_id for m in scanner.scan(enough + "\n")] == ["source_code.block"]
    if min_lines > 1:
        assert scanner.scan("\n".join(lines[: min_lines - 1])) == []
