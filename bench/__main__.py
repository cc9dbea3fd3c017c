"""``python -m bench [--quick] [--only NAME,...] [--output bench/results.json] [--stack-file F]``

Runs the performance benchmarks of issue 6, each in its own process, prints one table
and writes every figure to ``bench/results.json``:

==================  ==========================================================  =========
name                what                                                        stack
==================  ==========================================================  =========
detect_core         events/s on one core, full detector set, realistic mix     no
scanner_compare     our DLP secrets vs detect-secrets 1.5.0, same texts         no
memory              RSS with 100k / 1M principals + sessions                    no
end_to_end          sustained events/s, 1 then 2 worker processes, lag          Kafka, OpenSearch
latency             MTTD / MTTC at 1,000 and 5,000 events/s background          + oidc-provider
==================  ==========================================================  =========

The stack benchmarks reuse a running stack (``--stack-file`` / ``$AISOAR_STACK_FILE``)
or start one in a temporary directory and stop it afterwards. The CPU-bound benchmarks
measure CPU seconds of their own single-threaded process (one core); the stack ones are
wall-clock and therefore depend on the machine's load, recorded next to every figure.
``--quick`` (reduced sizes, < 5 minutes) runs the CPU-bound benchmarks in parallel with
the stack ones; a full run runs them one after the other.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench._common import ROOT, load_avg, machine, write_json

CPU_BENCHES = ["detect_core", "scanner_compare", "memory"]
STACK_BENCHES = ["end_to_end", "latency"]
ALL = CPU_BENCHES + STACK_BENCHES
TIMEOUTS = {  # seconds per benchmark process: (quick, full)
    "detect_core": (150, 900), "scanner_compare": (120, 900), "memory": (200, 2400),
    "end_to_end": (170, 2400), "latency": (150, 1800),
}
QUICK_ARGS = {"latency": ["--offenders", "5", "--every", "0.5", "--timeout", "15"],
              "end_to_end": ["--timeout", "40"]}

#: (key, label, target text, passes(value) or None)
ROWS: list[tuple[str, str, str, Any]] = [
    ("detect_core_eps", "detection core, events/s (1 core, CPU time)", ">= 50,000", lambda v: v >= 50_000),
    ("detect_core_content_eps", "content detectors together (DLP + injection + response), prompts/s (1 core)",
     ">= 20,000", lambda v: v >= 20_000),
    ("detect_core_rss_mb", "detection core, peak RSS MB", "", None),
    ("e2e_eps_1w", "end to end, 1 worker, events/s", ">= 10,000", lambda v: v >= 10_000),
    ("e2e_eps_2w", "end to end, 2 workers, events/s", ">= 1.7x 1 worker", None),
    ("e2e_scaling_2w_over_1w", "end to end, 2w / 1w", ">= 1.7", lambda v: v >= 1.7),
    ("mttd_p50_ms_at_100", "MTTD p50 ms @ 100 ev/s (floor)", "", None),
    ("mttd_p99_ms_at_100", "MTTD p99 ms @ 100 ev/s (floor)", "", None),
    ("mttc_p50_ms_at_100", "MTTC p50 ms @ 100 ev/s (floor)", "", None),
    ("mttc_p99_ms_at_100", "MTTC p99 ms @ 100 ev/s (floor)", "", None),
    ("mttd_p50_ms_at_1000", "MTTD p50 ms @ 1,000 ev/s", "", None),
    ("mttd_p99_ms_at_1000", "MTTD p99 ms @ 1,000 ev/s", "", None),
    ("mttc_p50_ms_at_1000", "MTTC p50 ms @ 1,000 ev/s", "", None),
    ("mttc_p99_ms_at_1000", "MTTC p99 ms @ 1,000 ev/s", "< 1,000 (issue 5)", lambda v: v < 1000),
    ("mttd_p50_ms", "MTTD p50 ms @ 5,000 ev/s", "", None),
    ("mttd_p99_ms", "MTTD p99 ms @ 5,000 ev/s", "<= 500", lambda v: v <= 500),
    ("mttc_p50_ms", "MTTC p50 ms @ 5,000 ev/s", "", None),
    ("mttc_p99_ms", "MTTC p99 ms @ 5,000 ev/s", "<= 1,000", lambda v: v <= 1000),
    ("rss_mb_100k_principals", "RSS MB, 100k principals", "", None),
    ("rss_mb_1m_principals", "RSS MB, 1M principals", "< 1,024", lambda v: v < 1024),
    ("bytes_per_idle_principal", "bytes per idle principal", "<= 1,024", lambda v: v <= 1024),
    ("our_secrets_eps", "our DLP, prompts/s (1 core)", ">= 10x scanner", None),
    ("scanner_eps", "scanner prompts/s (1 core)", "", None),
    ("scanner_speedup", "speed-up over the scanner", ">= 10", lambda v: v >= 10),
    ("our_secrets_recall", "our secrets recall", ">= scanner", None),
    ("scanner_secrets_recall", "scanner secrets recall", "", None),
]
BENCH_OF = {
    "detect_core": "detect_core", "e2e": "end_to_end", "mtt": "latency", "rss_mb_": "memory", "bytes_per": "memory",
    "scanner": "scanner_compare", "our_": "scanner_compare",
}


def _bench_of(key: str) -> str:
    return next((b for prefix, b in BENCH_OF.items() if key.startswith(prefix)), "")


def run_one(name: str, quick: bool, stack_file: str | None, out_dir: Path) -> dict[str, Any]:
    out = out_dir / f"{name}.json"
    cmd = [sys.executable, "-m", f"bench.{name}", "--json-out", str(out)]
    if quick:
        cmd += ["--quick", *QUICK_ARGS.get(name, [])]
    if name in STACK_BENCHES and stack_file:
        cmd += ["--stack-file", stack_file]
    began, load0 = time.monotonic(), load_avg()
    limit = TIMEOUTS[name][0 if quick else 1]
    child = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = child.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        child.terminate()  # SIGTERM: the benchmark stops its workers (and a stack it started)
        try:
            child.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
        return {"error": f"timed out after {limit}s", "load_avg_start": load0,
                "load_avg_end": load_avg(), "seconds": round(time.monotonic() - began, 1)}
    proc = subprocess.CompletedProcess(cmd, child.returncode, stdout, stderr)
    if proc.returncode != 0 or not out.exists():
        return {"error": (proc.stderr or proc.stdout)[-3000:], "load_avg_start": load0, "load_avg_end": load_avg(),
                "seconds": round(time.monotonic() - began, 1)}
    result: dict[str, Any] = json.loads(out.read_text())
    result["command"] = " ".join(["python", *cmd[1:3], *[c for c in cmd[3:] if c not in (str(out), "--json-out")]])
    return result


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def print_table(results: dict[str, Any], per_bench: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="aisoar benchmarks (issue 6)")
    for col in ("metric", "value", "target", "ok", "load avg (1m) start→end", "benchmark"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for key, label, target, ok in ROWS:
        value = results.get(key)
        if key not in results and "_at_" in key:
            continue  # a rate this run did not measure
        bench = _bench_of(key)
        b = per_bench.get(bench, {})
        load = f"{b['load_avg_start'][0]}→{b['load_avg_end'][0]}" if "load_avg_start" in b else ""
        status = "" if ok is None or value is None else ("[green]yes[/]" if ok(value) else "[red]no[/]")
        if value is None and key.startswith(("mttd_p", "mttc_p")) and bench in per_bench:
            rate = key.rsplit("_at_", 1)[1] if "_at_" in key else "5000"
            done = results.get(f"{key[:4]}_done_at_{rate}")
            if done:  # some offenders were not detected / contained before the timeout
                value, status = f"> timeout ({done} done)", "[red]no[/]" if ok else ""
                table.add_row(label, value, target, status, load, bench)
                continue
        if key == "rss_mb_1m_principals" and results.get("rss_mb_1m_principals_extrapolated"):
            label += " (extrapolated)"
        table.add_row(label, _fmt(value), target, status, load, bench)
    console = Console(width=140)
    console.print(table)
    per = results.get("per_detector") or {}
    if per:
        t2 = Table(title="per detector (CPU µs per event it sees, one core)")
        for col in ("detector", "µs/event", "events/s", "events", "findings"):
            t2.add_column(col, justify="left" if col == "detector" else "right")
        for name, row in sorted(per.items(), key=lambda kv: -kv[1].get("us_per_event", 0)):
            t2.add_row(name, _fmt(row.get("us_per_event")), _fmt(row.get("eps")), _fmt(row.get("events")),
                       _fmt(row.get("findings")))
        console.print(t2)
    m = results["machine"]
    console.print(f"machine: {m['cpu_model']}, {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}; "
                  f"load avg start {m['load_avg_start']} end {m['load_avg_end']}")
    for name, b in per_bench.items():
        if b.get("error"):
            console.print(f"[red]{name} failed[/]: {b['error'][-800:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes, under 5 minutes")
    parser.add_argument("--only", help=f"comma-separated subset of: {','.join(ALL)}")
    parser.add_argument("--output", default=str(ROOT / "bench" / "results.json"), help="JSON file to write")
    parser.add_argument("--stack-file", help="state.json of a running local stack to reuse")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",")] if args.only else ALL
    unknown = [n for n in names if n not in ALL]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ALL)}")

    began = time.monotonic()
    info = machine()
    info["load_avg_start"] = load_avg()
    per_bench: dict[str, dict[str, Any]] = {}
    out_dir = Path(tempfile.mkdtemp(prefix="aisoar-bench-"))
    stack_names = [n for n in names if n in STACK_BENCHES]
    cpu_names = [n for n in names if n in CPU_BENCHES]

    def stack_lane() -> None:
        if not stack_names:
            return
        from bench._stackrun import running_stack

        services = ["kafka", "opensearch"] + (["oidc"] if "latency" in stack_names else [])
        try:
            with running_stack(services, args.stack_file) as (_, state_file):
                for name in stack_names:
                    per_bench[name] = run_one(name, args.quick, str(state_file), out_dir)
        except Exception as exc:  # the stack did not come up
            for name in stack_names:
                per_bench.setdefault(name, {"error": f"local stack: {type(exc).__name__}: {exc}"[:3000]})

    def cpu_lane() -> None:
        for name in cpu_names:
            per_bench[name] = run_one(name, args.quick, None, out_dir)

    if args.quick:  # CPU-time figures are not skewed by the other lane's wall-clock work
        lane = threading.Thread(target=stack_lane)
        lane.start()
        cpu_lane()
        lane.join()
    else:
        cpu_lane()
        stack_lane()

    info["load_avg_end"] = load_avg()
    results: dict[str, Any] = {}
    if args.only and Path(args.output).exists():  # a partial rerun updates the figures it measured
        try:
            results = json.loads(Path(args.output).read_text())
        except ValueError:
            results = {}
    results.update({"machine": info, "quick": args.quick,
                    "parallel_lanes": bool(args.quick and stack_names and cpu_names)})
    for name in names:
        b = per_bench.get(name, {})
        for key, value in b.items():
            if key in ("load_avg_start", "load_avg_end", "seconds", "command", "error"):
                continue
            results[key] = value
    results.setdefault("benchmarks", {}).update(
        {name: {k: per_bench.get(name, {}).get(k) for k in ("load_avg_start", "load_avg_end", "seconds", "command", "error")}
         for name in names})
    per_bench = {**{n: b for n, b in results["benchmarks"].items() if n not in per_bench}, **per_bench}
    for key in ("detect_core_eps", "detect_core_rss_mb", "e2e_eps_1w", "e2e_eps_2w", "mttd_p50_ms", "mttd_p99_ms",
                "mttc_p50_ms", "mttc_p99_ms", "rss_mb_100k_principals", "rss_mb_1m_principals", "scanner_name",
                "scanner_eps", "our_secrets_eps", "scanner_secrets_recall", "our_secrets_recall"):
        results.setdefault(key, None)
    results["total_seconds"] = round(time.monotonic() - began, 1)
    write_json(args.output, results)
    print_table(results, per_bench)
    print(f"figures written to {args.output} in {results['total_seconds']:.0f}s")
    return 0 if not any("error" in per_bench.get(n, {}) for n in names) else 1


if __name__ == "__main__":
    sys.exit(main())
