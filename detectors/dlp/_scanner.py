"""One pass over a text for every DLP pattern at once.

All rule anchors, classification terms and source-code line markers are compiled
into a single hyperscan database (block mode). Hyperscan runs in linear time with
no backtracking, so a hostile 10 MB prompt costs a scan, not a hang. Only the few
anchor hits go on to Python: a regex on a small window around each hit extracts the
candidate, a validator confirms it, and overlaps are settled by rule priority.
If hyperscan cannot be imported, the same anchors run through :mod:`re` (slower,
same results on the anchors used here).

>>> scanner = Scanner()
>>> [(m.rule_id, m.start, m.end, m.detail) for m in scanner.scan("card 4111 1111 1111 1111 exp 12/27")]
[('pii.payment_card', 5, 24, 'luhn ok, visa')]
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from aisoar.findings import Category, Severity

from ._policy import Policy, Term
from ._rules import RULES, Rule

_hs: Any
try:  # pragma: no cover - exercised by whichever engine is installed
    import hyperscan as _hs
except ImportError:  # pragma: no cover
    _hs = None

__all__ = ["ENGINES", "Match", "Scanner"]

ENGINES = ("auto", "hyperscan", "re")

# Line markers of source code (multi-line mode): a statement start or a line ending in ; { } or ):
_CODE_MARKERS: tuple[bytes, ...] = (
    rb"^[ \t]*(?:def|async def|class|fn|func|function|pub fn|impl|struct|interface|enum)[ \t]+\w+[ \t]*[(:<{]",
    (rb"^[ \t]*(?:import[ \t]+[\w.{*]|from[ \t]+[\w.]+[ \t]+import[ \t]|#include[ \t]*[<\"]|#define[ \t]|"
    rb"package[ \t]+[\w.]+;|using[ \t]+(?:namespace[ \t]+)?[\w.]+;|require\(['\"])"),
    (rb"^[ \t]*(?:public|private|protected|static|const|let|var|val|return|if|for|while|else|elif|try|catch|"
    rb"except|switch|case)\b[^\n]*(?:[;{:]|\)|=)[ \t]*$"),
    rb"[^\s][ \t]*[;{}][ \t]*$",
    rb"^[ \t]*(?:SELECT|INSERT INTO|UPDATE|DELETE FROM|CREATE TABLE)\b",
    rb"^[ \t]*[}\])][;,)]*[ \t]*$",
    # Python and other brace-less code: indented assignments, bare calls, flow keywords, doctests.
    rb"^[ \t]+[\w.\[\]'\"]+(?:,[ \t]*[\w.]+)*[ \t]*(?:[+\-*/%|&^]|//|\*\*)?=[ \t]*[^=\s]",
    rb"^[ \t]*[\w.]+\([^\n]*\)[ \t]*$",
    rb"^[ \t]*(?:return|raise|yield|assert|pass|break|continue|del|global|nonlocal|await)\b",
    rb"^[ \t]*(?:>>>|\.\.\.)[ \t]",
)

# Bytes that are not UTF-8 continuation bytes: deleting them counts continuation bytes,
# which turns a byte offset into a character offset without decoding.
_LEADS = bytes(b for b in range(256) if not 0x80 <= b <= 0xBF)


class Match(NamedTuple):
    """One confirmed value: where it is (character offsets) and what kind it is."""

    rule_id: str
    name: str
    category: Category
    severity: Severity
    start: int
    end: int
    value: str
    detail: str
    confidence: float
    priority: int


class _Spans:
    """Disjoint spans, sorted: ``add`` refuses one that overlaps a kept span (O(log n))."""

    __slots__ = ("ends", "starts")

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self.starts, end)
        if i and self.ends[i - 1] > start:
            return False
        self.starts.insert(i, start)
        self.ends.insert(i, end)
        return True


def _collect(id_: int, frm: int, to: int, flags: int, hits: list[tuple[int, int, int]]) -> None:
    hits.append((id_, frm, to))


def _hit_order(hit: tuple[int, int, int]) -> tuple[int, int]:
    return hit[2], hit[0]


class Scanner:
    """Scan text for every rule, classification term and source-code marker in one pass.

    Parameters
    ----------
    rules
        The rule table (default: :data:`RULES`).
    policy
        Classification terms (default: none); see :func:`load_policy`.
    min_code_lines
        Distinct code-like lines needed to report ``source_code.block``.
    engine
        ``"auto"`` (hyperscan when importable), ``"hyperscan"`` or ``"re"``.
    max_hits
        Anchor hits looked at per scan; beyond it the rest of the text yields nothing new
        (bounds Python work on adversarial input made of nothing but anchors).
    """

    def __init__(
        self,
        rules: Sequence[Rule] = RULES,
        policy: Policy | None = None,
        min_code_lines: int = 4,
        engine: str = "auto",
        max_hits: int = 4096,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
        if engine == "hyperscan" and _hs is None:
            raise ValueError("engine 'hyperscan' requested but the hyperscan module is not importable")
        self.rules = tuple(rules)
        self.policy = policy
        self.min_code_lines = min_code_lines
        self.engine = engine
        self.max_hits = max_hits
        self._reset()

    def _reset(self) -> None:
        terms: tuple[Term, ...] = self.policy.terms if self.policy else ()
        # Pattern id -> (kind, index): 0 rule anchor, 1 classification term, 2 code marker.
        exprs: list[bytes] = []
        flags: list[int] = []
        self._kinds: list[tuple[int, int]] = []
        hs_caseless = _hs.HS_FLAG_CASELESS if _hs else 0
        hs_som = _hs.HS_FLAG_SOM_LEFTMOST if _hs else 0
        hs_multi = _hs.HS_FLAG_MULTILINE if _hs else 0
        for i, rule in enumerate(self.rules):
            for anchor in rule.anchors:
                exprs.append(anchor)
                flags.append(0)
                self._kinds.append((0, i))
        for i, term in enumerate(terms):
            exprs.append(term.pattern)
            flags.append(hs_som | (0 if term.case_sensitive else hs_caseless))
            self._kinds.append((1, i))
        for i, marker in enumerate(_CODE_MARKERS):
            exprs.append(marker)
            flags.append(hs_multi)
            self._kinds.append((2, i))
        self._terms = terms
        use_hs = _hs is not None and self.engine != "re"
        self.engine_used = "hyperscan" if use_hs else "re"
        # Code-marker patterns are the last ones (~40 % of the pass): a second database
        # without them serves fields where source code is not reported (responses, by default).
        n_code = len(_CODE_MARKERS)
        if use_hs:
            db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            db.compile(expressions=exprs, ids=list(range(len(exprs))), elements=len(exprs), flags=flags)
            self._db: Any = db
            self._scratch = _hs.Scratch(db)
            no_code = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            no_code.compile(expressions=exprs[:-n_code], ids=list(range(len(exprs) - n_code)),
                            elements=len(exprs) - n_code, flags=flags[:-n_code])
            self._db_no_code: Any = no_code
            self._scratch_no_code = _hs.Scratch(no_code)
        else:
            self._res = []
            for expr, kind in zip(exprs, self._kinds):
                f = re.MULTILINE if kind[0] == 2 else 0
                if kind[0] == 1 and not terms[kind[1]].case_sensitive:
                    f |= re.IGNORECASE
                self._res.append(re.compile(expr, f))

    def _hits(self, data: bytes, code: bool = True) -> list[tuple[int, int, int]]:
        hits: list[tuple[int, int, int]] = []
        if self.engine_used == "hyperscan":
            if code:
                self._db.scan(data, match_event_handler=_collect, context=hits, scratch=self._scratch)
            else:
                self._db_no_code.scan(data, match_event_handler=_collect, context=hits, scratch=self._scratch_no_code)
        else:
            for i, rx in enumerate(self._res if code else self._res[: -len(_CODE_MARKERS)]):
                hits.extend((i, m.start(), m.end()) for m in rx.finditer(data))
        # One order for both engines (hyperscan leaves ties at one offset unordered).
        if len(hits) > 1:  # most texts have no anchor hit at all
            hits.sort(key=_hit_order)
        return hits

    def scan(self, text: str, code: bool = True) -> list[Match]:
        """All confirmed matches in ``text``, ordered by start offset (characters);
        ``code=False`` skips source-code detection (the other matches are the same)."""
        data = text.encode("utf-8", "surrogatepass")
        if code and data.count(b"\n") + 1 < self.min_code_lines:
            code = False  # too few lines for a source-code block: skip the code markers (most prompts)
        hits = self._hits(data, code)
        if not hits:
            return []
        n = len(data)
        found: list[tuple[int, int, int, Rule | None, str, tuple[Any, ...]]] = []
        last: dict[int, tuple[int, int]] = {}
        seen: set[tuple[str, int]] = set()
        code_lines: dict[int, int] = {}
        for id_, frm, to in hits[: self.max_hits]:
            kind, index = self._kinds[id_]
            if kind == 2:
                if len(code_lines) < 10_000:
                    line = data.rfind(b"\n", 0, to - 1) + 1
                    code_lines.setdefault(line, to)
                continue
            if kind == 1:
                term = self._terms[index]
                found.append((term.priority, frm, to, None, f"policy term {index}", (term,)))
                continue
            rule = self.rules[index]
            span = last.get(index)
            if rule.cover and span is not None and span[0] < to <= span[1]:
                continue
            # A few bytes past the window let the extractor's lookahead see what follows a value.
            for m in rule.extract.finditer(data, max(0, to - rule.back), min(n, to + rule.fwd + 8)):
                s, e = m.span()
                if rule.cover:
                    if s >= to:
                        break
                    if e < to:
                        continue
                    last[index] = (s, e)
                vs, ve = rule.span(m)
                if (rule.rule_id, vs) in seen:
                    continue
                verdict = rule.validate(m) if rule.validate else "format"
                if verdict is None:
                    if rule.cover:
                        break
                    continue
                if isinstance(verdict, tuple):
                    verdict, keep = verdict
                    ve = vs + keep
                seen.add((rule.rule_id, vs))
                found.append((rule.priority, vs, ve, rule, verdict, ()))
                if rule.cover:
                    break
        if len(code_lines) >= self.min_code_lines:
            lines = sorted(code_lines)
            end = data.find(b"\n", code_lines[lines[-1]] - 1)
            found.append((90, lines[0], n if end < 0 else end, None, f"{len(lines)} code lines", ()))
        return self._resolve(data, text, found)

    def _resolve(self, data: bytes, text: str, found: list[tuple[Any, ...]]) -> list[Match]:
        found.sort(key=lambda f: (f[0], f[1]))
        kept = _Spans()
        kept_terms = _Spans()
        out: list[Match] = []
        ascii_ = text.isascii()
        for priority, s, e, rule, detail, extra in found:
            # A value inside a stronger finding is part of it (an e-mail inside a DB URL).
            if rule is not None and not kept.add(s, e):
                continue
            cs, ce = (s, e) if ascii_ else (s - len(data[:s].translate(None, _LEADS)),
                                             e - len(data[:e].translate(None, _LEADS)))
            value = text[cs:ce]
            if rule is not None:
                out.append(Match(rule.rule_id, rule.name, rule.category, rule.severity, cs, ce, value, detail,
                                 rule.confidence, priority))
            elif extra:
                if not kept_terms.add(s, e):
                    continue
                term: Term = extra[0]
                out.append(Match(f"classified.{term.classification}", f"Classification label: {term.classification}",
                                 "classified", term.severity, cs, ce, value, detail, 0.9, priority))
            else:
                severity: Severity = "medium" if detail.split()[0].isdigit() and int(detail.split()[0]) >= 20 else "low"
                out.append(Match("source_code.block", "Source code", "source_code", severity, cs, ce, value, detail,
                                 0.7, priority))
        out.sort(key=lambda m: (m.start, m.priority))
        return out
