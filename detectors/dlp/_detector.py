"""DLP over LLM traffic: secrets, PII, classified labels and source code in every text field.

>>> from datetime import datetime, timezone
>>> from aisoar.events import PromptEvent, ToolCall
>>> event = PromptEvent(schema_version=1, event_id="e1", timestamp=datetime(2026, 11, 25, tzinfo=timezone.utc),
...     user_id="alice", session_id="s1", server_address="api.openai.com", provider="openai",
...     request_model="gpt-4o", prompt="deploy with key AKIAQYLPMN5HFIQR7XYZ please",
...     response="Mail bob.smith@acme-corp.com for access.",
...     tool_calls=[ToolCall(name="search", output="INTERNAL USE ONLY roadmap")])
>>> detector = DLPDetector()
>>> for f in detector.check(event):
...     print(f.rule_id, f.severity, f.evidence[0].field, f.evidence[0].start, f.evidence[0].redacted)
secret.aws_access_key high prompt 16 AKIA************7XYZ
pii.email medium response 5 bob.***************.com
classified.confidential medium tool_calls[0].output 0 INTE*********ONLY
>>> sorted(data_classes(detector.check(event)))  # what the AI service received
['classified:confidential', 'secret']
>>> sorted(data_classes(detector.check(event), sent_only=False))
['classified:confidential', 'pii', 'secret']
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from aisoar.events import PromptEvent
from aisoar.findings import (
    SEVERITIES,
    Entities,
    Evidence,
    Finding,
    Severity,
    finding_id,
    fingerprint,
    mask,
)
from detectors.base import PromptDetector, prompt_entities

from ._policy import Policy, load_policy
from ._rules import ATLAS, OWASP
from ._scanner import Match, Scanner

__all__ = ["DLPDetector", "data_classes"]


def _bump(severity: Severity) -> Severity:
    return SEVERITIES[min(SEVERITIES.index(severity) + 1, len(SEVERITIES) - 1)]


def _printable(text: str) -> str:
    # A lone surrogate (valid in a Python str, invalid in UTF-8) would break the finding's JSON.
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


def data_classes(findings: Iterable[Finding], *, sent_only: bool = True) -> frozenset[str]:
    """The data classes in an event's findings, for the shadow-AI policy: ``secret``, ``pii``,
    ``source_code`` and ``classified:<classification>``.

    With ``sent_only`` (the default) only text the AI service *receives* counts (the prompt
    and tool outputs fed back to the model): that is what a service must be cleared for.
    Leaks in responses are findings of their own.
    """
    classes = set()
    for f in findings:
        if sent_only and f.evidence and not _received(f.evidence[0].field):
            continue
        if f.category == "classified":
            classes.add(f"classified:{f.rule_id.partition('.')[2]}")
        elif f.category in ("secret", "pii", "source_code"):
            classes.add(f.category)
    return frozenset(classes)


def _received(field: str) -> bool:
    return field == "prompt" or field.endswith(".output")


class DLPDetector(PromptDetector):
    """Find sensitive data in prompts, responses and tool-call arguments / outputs.

    Every field is scanned once for all rules (see :class:`Scanner`). Text the model
    *produces* (``response``, ``tool_calls[i].arguments``) ranks one severity higher than
    text it *receives* (``prompt``, ``tool_calls[i].output``): there the data is already
    leaving, to the user or to a tool.

    Parameters
    ----------
    policy
        Classification policy: a path, a :class:`Policy`, or ``None`` for the shipped
        ``classifications.yaml``.
    max_scan_length
        Characters scanned per field. A longer field is scanned head and tail
        (``max_scan_length // 2`` each) and its findings say so in ``Evidence.detail``,
        so a 10 MB prompt costs bounded time.
    max_findings_per_rule
        Findings kept per (field, rule); the last one kept notes how many were dropped.
    code_in_responses
        Report source code in responses too (off: assistants answer with code all day).
    min_code_lines
        Distinct code-like lines that make a ``source_code.block`` finding.
    engine
        ``"auto"``, ``"hyperscan"`` or ``"re"`` (see :class:`Scanner`).
    """

    name = "content.dlp"
    version = "1.0.0"

    def __init__(
        self,
        policy: str | Path | Policy | None = None,
        max_scan_length: int = 256 * 1024,
        max_findings_per_rule: int = 20,
        code_in_responses: bool = False,
        min_code_lines: int = 4,
        engine: str = "auto",
    ) -> None:
        if max_scan_length < 2:
            raise ValueError(f"max_scan_length must be at least 2; got {max_scan_length}")
        self.policy = policy
        self.max_scan_length = max_scan_length
        self.max_findings_per_rule = max_findings_per_rule
        self.code_in_responses = code_in_responses
        self.min_code_lines = min_code_lines
        self.engine = engine
        self._reset()

    def _reset(self) -> None:
        policy = self.policy if isinstance(self.policy, Policy) else load_policy(self.policy)
        self.scanner = Scanner(policy=policy, min_code_lines=self.min_code_lines, engine=self.engine)

    def scan_text(self, text: str, code: bool = True) -> tuple[list[Match], str]:
        """Matches in one text, honouring ``max_scan_length``; returns (matches, truncation note).
        ``code=False`` leaves source code out (see :meth:`Scanner.scan`)."""
        if len(text) <= self.max_scan_length:
            return self.scanner.scan(text, code), ""
        half = self.max_scan_length // 2
        tail_at = len(text) - half
        tail = [m._replace(start=m.start + tail_at, end=m.end + tail_at)
                for m in self.scanner.scan(text[tail_at:], code)]
        note = f"field of {len(text)} chars: scanned first and last {half}"
        return self.scanner.scan(text[:half], code) + tail, note

    def check(self, event: PromptEvent) -> list[Finding]:
        fields = [("prompt", event.prompt, False), ("response", event.response, True)]
        for i, call in enumerate(event.tool_calls):
            fields.append((f"tool_calls[{i}].arguments", call.arguments, True))
            fields.append((f"tool_calls[{i}].output", call.output, False))
        findings: list[Finding] = []
        entities: Entities | None = None
        for field, text, produced in fields:
            if not text:
                continue
            # source code in a response is not reported (unless code_in_responses): not looked for
            code = self.code_in_responses or field != "response"
            # (the common, short field skips scan_text's head-and-tail bookkeeping)
            matches, note = ((self.scanner.scan(text, code), "") if len(text) <= self.max_scan_length
                             else self.scan_text(text, code))
            if not matches:
                continue
            if entities is None:
                entities = prompt_entities(event)
            per_rule: dict[str, int] = {}
            for m in matches:
                count = per_rule[m.rule_id] = per_rule.get(m.rule_id, 0) + 1
                if count > self.max_findings_per_rule:
                    continue
                detail = m.detail
                if count == self.max_findings_per_rule:
                    more = sum(1 for x in matches if x.rule_id == m.rule_id) - count
                    detail += f"; {more} more in this field not reported" if more else ""
                if note:
                    detail += f"; {note}"
                findings.append(self._finding(event, entities, field, m, produced, detail))
        return findings

    def _finding(self, event: PromptEvent, entities: Entities, field: str, m: Match, produced: bool,
                 detail: str) -> Finding:
        severity = _bump(m.severity) if produced else m.severity
        where = "response to the user" if field == "response" else ("tool call" if produced else field)
        return Finding(
            id=finding_id(event.event_id, m.rule_id, f"{field}:{m.start}"),
            rule_id=m.rule_id,
            rule_name=m.name,
            category=m.category,
            severity=severity,
            confidence=m.confidence,
            timestamp=event.timestamp,
            event_id=event.event_id,
            event_kind="prompt",
            entities=entities,
            detector=self.name,
            detector_version=self.version,
            evidence=(Evidence(field=field, start=m.start, end=m.end, redacted=_printable(mask(m.value)),
                               sha=fingerprint(m.value), detail=detail),),
            atlas=ATLAS.get(m.category, ATLAS["default"]),
            owasp=OWASP,
            description=f"{m.name} in {where}",
        )
