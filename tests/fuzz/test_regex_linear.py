"""Every regular expression the content detectors run outside hyperscan, timed on
pathological 50,000-character inputs.

Why the detectors are linear in the size of a record
----------------------------------------------------
* The scan over the whole text is hyperscan (``detectors/dlp/_scanner.py``,
  ``detectors/injection/rules.py``): an automaton, linear by construction, no
  backtracking. The test asserts that hyperscan, not the ``re`` fallback, is in use.
* Python ``re`` (a backtracking engine) only ever runs on **bounded windows**: a DLP
  rule's extractor on ``[anchor_end - back, anchor_end + fwd + 8)``, an injection
  pattern on ``[end - 320, end + 320)``, validators on the extracted candidate or on
  a few bytes around it (``m.string[start-24:start]``, ``[end:end+12]``), the
  refusal pattern on the first 200 characters of a response. A super-linear pattern
  on a window of constant size costs a constant per anchor hit, and the number of
  hits is capped (``Scanner.max_hits``), so the total stays linear.
* The normaliser's patterns (``detectors/injection/normalize.py``) and the other
  module-level ones do run over whole texts, so they must be linear themselves: the
  test runs each with ``finditer`` (the most expensive use: a search from every
  position) over every pathological input and asserts < 1 s.

The list of sites comes from the source (every ``re.<function>(...)`` call under
``detectors/``, found with :mod:`ast`), so a new regex cannot escape the test: a
call with a literal pattern is timed automatically; a call with a computed pattern
must be listed in :data:`DYNAMIC_SITES` with how it is covered.
"""

from __future__ import annotations

import ast
import re
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
N = 50_000
LIMIT_S = 1.0

#: Repeated units that make backtracking engines work hardest on typical patterns.
UNITS = ["a", "A", "0", "9", " ", "\n", "\t", "-", "_", ".", "@", "/", "=", "%41", "\\x41", "ab", "a-", "a.", "1 ",
         "[", "(", "]", ")", "<", "!", "*", "AKIA", "eyJ", "a@b.", "aa ", "x ", "ф", "\u200b", "é", "1-", "+1 ",
         "password=", "ignore ", "](http://", "<img src=", "BEGIN ", "phone ", "mobile",
         "-----BEGIN RSA PRIVATE KEY-----\n", "eyJhbGciOiJI.eyJ", "postgres://u:p@", "AKIAABCDEFGHIJKLMNOP "]

#: Calls whose pattern is computed, and how each is covered below.
DYNAMIC_SITES = {
    ("detectors/dlp/_rules.py", "compile"): "RULES[*].extract: run by _scanner.py on anchor windows -> test_dlp_extractors",
    ("detectors/dlp/_scanner.py", "compile"): "the `re` fallback, used only without hyperscan -> test_hyperscan_is_the_engine",
    ("detectors/injection/rules.py", "compile"): "RuleSet._regexes: searched on +-320-byte windows -> test_injection_patterns",
    ("detectors/policy/shadow_ai.py", "compile"): "fnmatch host/model globs, matched on <=512-char names -> test_shadow_ai_globs",
}

#: Literal patterns that are only ever applied to a bounded slice: (file, line) -> (how, slice length).
BOUNDED_LITERALS = {
    "_REFUSAL": ("match", 200),  # principal.py: _REFUSAL.match(event.response, 0, 200)
    "_PHONE_AFTER": ("match", 12),  # _validators.py: _PHONE_AFTER.match(m.string[end:end + 12])
    "_PHONE_WORDS": ("search", 24),  # m.string[start - 24:start]
    "_PHONE_CONTEXT": ("search", 24),
    "_VERSION_CONTEXT": ("search", 16),  # m.string[start - 16:start]
}


def _regex_sites() -> list[dict[str, Any]]:
    sites = []
    for path in sorted((ROOT / "detectors").rglob("*.py")):
        tree = ast.parse(path.read_text())
        targets: dict[int, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                targets[id(node.value)] = node.targets[0].id
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"):
                continue
            if node.func.attr not in ("compile", "sub", "search", "match", "finditer", "findall", "fullmatch", "split"):
                continue
            arg = node.args[0] if node.args else None
            literal = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, (str, bytes)) else None
            flags = 0
            if literal is not None and node.func.attr == "compile" and len(node.args) > 1:
                flags = eval(compile(ast.Expression(node.args[1]), "flags", "eval"), {"re": re})
            sites.append({"file": path.relative_to(ROOT).as_posix(), "line": node.lineno, "call": node.func.attr,
                          "pattern": literal, "flags": flags, "name": targets.get(id(node))})
    return sites


SITES = _regex_sites()


def _inputs(pattern: str | bytes, n: int = N) -> list[str]:
    source = pattern.decode("latin-1") if isinstance(pattern, bytes) else pattern
    own = sorted({c for c in re.sub(r"\\.", "", source) if c.isprintable()})
    units = UNITS + ["".join(own)[:24]] + own[:8]
    return [(u * (n // len(u) + 1))[:n] for u in units if u]


def _as(pattern: re.Pattern[Any], text: str) -> Any:
    return text.encode("utf-8") if isinstance(pattern.pattern, bytes) else text


def _worst(run: Any, pattern: re.Pattern[Any], n: int = N) -> tuple[float, str]:
    worst = (0.0, "")
    for text in _inputs(pattern.pattern, n):
        data = _as(pattern, text)
        started = time.process_time()
        run(data)
        elapsed = time.process_time() - started
        worst = max(worst, (elapsed, text[:12]))
    return worst


def test_every_dynamic_site_is_covered() -> None:
    dynamic = {(s["file"], s["call"]) for s in SITES if s["pattern"] is None}
    # `re.match(r"\w", term)` in _policy.py has a literal pattern; only computed ones are listed.
    assert dynamic == set(DYNAMIC_SITES), f"a regex with a computed pattern must be covered: {dynamic - set(DYNAMIC_SITES)}"
    assert len([s for s in SITES if s["pattern"] is not None]) >= 30


@pytest.mark.parametrize("site", [s for s in SITES if s["pattern"] is not None], ids=lambda s: f"{s['file']}:{s['line']}")
def test_literal_pattern_is_fast_on_50k(site: dict[str, Any]) -> None:
    pattern = re.compile(site["pattern"], site["flags"])
    name = site["name"]
    if name in BOUNDED_LITERALS:
        how, size = BOUNDED_LITERALS[name]
        # As used: on a bounded slice of a 50k input (and the whole input stays untouched).
        elapsed, unit = _worst(lambda data: getattr(pattern, how)(data, 0, size), pattern)
    else:
        elapsed, unit = _worst(lambda data: sum(1 for _ in pattern.finditer(data)), pattern)
    print(f"{site['file']}:{site['line']} {name or site['call']}: worst {elapsed * 1000:.1f} ms on {unit!r}*")
    assert elapsed < LIMIT_S


def test_bounded_literals_are_used_as_documented() -> None:
    """The windows claimed in BOUNDED_LITERALS are the ones in the source."""
    principal = (ROOT / "detectors/behaviour/principal.py").read_text()
    validators = (ROOT / "detectors/dlp/_validators.py").read_text()
    assert "_REFUSAL.match(response, 0, 200)" in principal
    assert "m.string[start + len(value) : start + len(value) + 12]" in validators
    assert "m.string[max(0, start - 24) : start]" in validators
    assert "m.string[max(0, m.start() - 16) : m.start()]" in validators
    for name in BOUNDED_LITERALS:
        uses = re.findall(rf"{name}\.(\w+)\(", principal + validators)
        assert uses and set(uses) <= {"match", "search"}, (name, uses)


def test_hyperscan_is_the_engine() -> None:
    from detectors.dlp import Scanner, load_policy

    assert Scanner(policy=load_policy()).engine_used == "hyperscan"


#: Anchors followed by what keeps an extractor busy: the worst realistic DLP windows.
ANCHORED_UNITS = UNITS + ["password=" + "." * 200 + " ", "api_key: '" + "-" * 100, "secret = " + "a" * 300 + "\n",
                          "postgres://u:" + "p" * 100 + "@", "canary@" + "a." * 40, "4111 " * 8 + "x ",
                          "-----BEGIN PRIVATE KEY-----\n" + "QUJD" * 20 + "\n"]


def test_dlp_extractors() -> None:
    """Each DLP extractor runs with ``finditer`` on its window once per anchor hit, for at
    most ``Scanner.max_hits`` hits per text. For texts that make anchors fire over and over
    (each unit repeated to 200 kB), the windows of the real hyperscan hits are timed; the
    mean cost of a window times ``max_hits`` bounds a whole record and must stay < 5 s."""
    from detectors.dlp import Scanner, load_policy

    scanner = Scanner(policy=load_policy())
    max_hits = scanner.max_hits
    worst: dict[str, tuple[float, str]] = {}
    for unit in ANCHORED_UNITS:
        data = (unit * (200_000 // len(unit) + 1))[:200_000].encode("utf-8")
        n = len(data)
        per_rule: dict[int, list[int]] = {}
        for id_, _frm, to in scanner._hits(data):
            kind, index = scanner._kinds[id_]
            if kind == 0 and len(per_rule.setdefault(index, [])) < 100:
                per_rule[index].append(to)
        for index, ends in per_rule.items():
            rule = scanner.rules[index]
            started = time.process_time()
            for to in ends:
                for _ in rule.extract.finditer(data, max(0, to - rule.back), min(n, to + rule.fwd + 8)):
                    pass
            per_window = (time.process_time() - started) / len(ends)
            worst[rule.rule_id] = max(worst.get(rule.rule_id, (0.0, "")), (per_window, unit[:16]))
    assert worst, "no anchor fired: the units do not exercise the extractors"
    for rule_id, (per_window, unit) in sorted(worst.items(), key=lambda kv: -kv[1][0])[:5]:
        print(f"{rule_id}: worst window {per_window * 1000:.2f} ms on {unit!r}* -> {per_window * max_hits:.1f} s per record")
    slow = {rule_id: round(t * max_hits, 1) for rule_id, (t, _) in worst.items() if t * max_hits >= 5.0}
    assert slow == {}, f"extractor window x max_hits over 5 s per record: {slow}"


def test_injection_patterns() -> None:
    from detectors.injection.rules import _WINDOW, RuleSet

    ruleset = RuleSet()
    slowest = 0.0
    for rx in ruleset._regexes:
        for text in _inputs(rx.pattern):
            data = text.encode("utf-8")
            started = time.process_time()
            for end in range(_WINDOW, min(len(data), 20 * _WINDOW), _WINDOW // 2):
                rx.search(data, max(0, end - _WINDOW), end + _WINDOW)
            elapsed = time.process_time() - started
            slowest = max(slowest, elapsed)
            assert elapsed < LIMIT_S, (rx.pattern[:60], text[:10])
    print(f"slowest injection pattern window sweep: {slowest * 1000:.1f} ms")


def test_shadow_ai_globs() -> None:
    from detectors.registry import default_detectors

    policy = default_detectors().shadow_ai
    regexes = [getattr(service, attr) for service in _services(policy) for attr in ("_hosts_re", "_models_re")
               if getattr(service, attr, None) is not None]
    assert regexes
    for rx in regexes:
        elapsed, unit = _worst(rx.match, rx)
        assert elapsed < LIMIT_S, (rx.pattern[:60], unit)


def _services(policy: Any) -> list[Any]:
    found: list[Any] = []
    seen: set[int] = set()

    def walk(obj: Any, depth: int) -> None:
        if id(obj) in seen or depth > 4:
            return
        seen.add(id(obj))
        if hasattr(obj, "_hosts_re"):
            found.append(obj)
            return
        if isinstance(obj, dict):
            for v in obj.values():
                walk(v, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v, depth + 1)
        elif hasattr(obj, "__dict__") or hasattr(obj, "__slots__"):
            for attr in list(getattr(obj, "__dict__", {})) + list(getattr(type(obj), "__slots__", ())):
                walk(getattr(obj, attr, None), depth + 1)

    walk(policy, 0)
    return found
