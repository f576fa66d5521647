"""``python -m benchmarks``: run every scenario, each in its own process, print a table, write JSON.

    python -m benchmarks                          # the full run (tens of minutes: 1M records end to end)
    python -m benchmarks --quick                  # smaller counts
    python -m benchmarks --json results.json --markdown docs/benchmarks.md
    python -m benchmarks --quick --only bound,ceap-realtime-c1000
    python -m benchmarks --quick --only e2e-10k,stage-speed   # ceap beside the floor; each stage on one core
    python -m benchmarks --quick --only serve     # only ceap serve over HTTP beside MiniStack and moto

Each scenario runs as ``python -m benchmarks --run-scenario NAME`` so that its
peak RSS is its own; the child prints its rows as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ceap_engine.runtime.collector import tune_collector

from .environment import machine, versions
from .report import markdown, ratios, table
from . import end_to_end, peer
from . import queue as queue_scenarios
from .scenarios import Scenario, run_scenario
from .scenarios import plan as _own_plan

__all__ = ["main", "run_all"]

ROWS_MARKER = "BENCHMARK-ROWS "
#: Longest a scenario may take before it is stopped and reported as failed ...
DEFAULT_TIMEOUT_S = 1800.0
#: ... plus, for an e2e scenario (generating the file, ceap and the floor on it), 1 s per this many records.
E2E_RECORDS_PER_TIMEOUT_S = 500


def scenario_timeout(scenario: Scenario, given: float | None = None) -> float:
    """``given`` (``--timeout``) if set, else the default for this scenario.

    >>> scenario_timeout(Scenario("e2e-1m", "e2e", records=1_000_000)), scenario_timeout(Scenario("bound", "bound"), 60)
    (3800.0, 60)
    """
    if given is not None:
        return given
    extra = scenario.records / E2E_RECORDS_PER_TIMEOUT_S if scenario.kind == "e2e" else 0.0
    return DEFAULT_TIMEOUT_S + extra


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Throughput and scaling of the ceap engine, next to the asyncio bound and moto, and the "
                    "pipeline end to end next to the floor (a plain standard-library program doing the same work "
                    "on the same file), in one run.",
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="smaller counts, a run of a minute or two (e2e at 10k records; the Glue job only with --only glue-job)")
    size.add_argument("--smoke", action="store_true", help="tiny counts: checks that the harness works (tests)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the results document here")
    parser.add_argument("--markdown", type=Path, metavar="FILE",
                        help="write the results page here (docs/benchmarks.md comes from a full run)")
    parser.add_argument("--only", action="append", default=[], metavar="NAMES",
                        help="run only these scenarios (comma-separated; see --list); 'serve' names the ceap serve "
                             "section (benchmarks/serve.py)")
    parser.add_argument("--list", action="store_true", help="list the scenarios of this mode and exit")
    parser.add_argument("--keep-histories", action="store_true",
                        help="scaling runs keep every finished execution's result and history (shows their memory cost)")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help=f"stop a scenario that runs longer than this (default {DEFAULT_TIMEOUT_S:.0f}; an e2e "
                             f"scenario gets {DEFAULT_TIMEOUT_S:.0f} plus 1 s per {E2E_RECORDS_PER_TIMEOUT_S} records)")
    parser.add_argument("--no-serve", action="store_true",
                        help="leave out the ceap serve endpoint beside MiniStack and moto (benchmarks/serve.py; "
                             "full and --quick runs include it, and --only serve runs it alone)")
    parser.add_argument("--run-scenario", metavar="NAME", help=argparse.SUPPRESS)
    return parser


def plan(mode: str) -> list[Scenario]:
    """Every scenario of a run: ceap's own, then the peer's side by side with ceap's (benchmarks.peer)."""
    return _own_plan(mode) + peer.plan(mode)


def _mode(args: argparse.Namespace) -> str:
    return "quick" if args.quick else "smoke" if args.smoke else "full"


#: The name ``--only`` takes for the ceap serve section (benchmarks/serve.py), which is no scenario.
SERVE = "serve"

#: Scenarios a --quick or --smoke run leaves out unless named with --only: the
#: Glue job starts a JVM and Spark (20-40 s here), which alone would double --quick's time.
FULL_RUN_ONLY = ("glue-job",)


def _wanted(only: list[str]) -> list[str]:
    return [name.strip() for item in only for name in item.split(",") if name.strip()]


def _select(scenarios: list[Scenario], only: list[str], mode: str = "full") -> list[Scenario]:
    """The scenarios ``--only`` names (``serve`` is not one of them: see :func:`_runs_serve`)."""
    wanted = _wanted(only)
    if SERVE in wanted:
        wanted.remove(SERVE)
        if not wanted:
            return []
    if not wanted:
        return scenarios if mode == "full" else [s for s in scenarios if s.name not in FULL_RUN_ONLY]
    known = {s.name for s in scenarios}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {', '.join(unknown)}: choose from {', '.join(sorted(known))} "
                         f"(or {SERVE})")
    return [s for s in scenarios if s.name in wanted]


def _runs_serve(args: argparse.Namespace, mode: str) -> bool:
    """The serve section runs in full and --quick runs without --only, or when --only names it."""
    if args.no_serve or mode == "smoke":
        return False
    return SERVE in _wanted(args.only) or not args.only


def _failed_row(scenario: Scenario, error: str) -> dict[str, Any]:
    return {
        "name": scenario.name,
        "executions": scenario.executions,
        "concurrency": scenario.concurrency,
        "executions_per_s": None,
        "transitions_per_s": None,
        "p50_ms": None,
        "p99_ms": None,
        "peak_rss_mib": None,
        "details": {"error": error},
    }


def _run_child(scenario: Scenario, mode: str, keep_histories: bool, timeout: float) -> list[dict[str, Any]]:
    argv = [sys.executable, "-m", "benchmarks", "--run-scenario", scenario.name]
    if mode != "full":
        argv.append(f"--{mode}")
    if keep_histories:
        argv.append("--keep-histories")
    cwd = Path(__file__).resolve().parent.parent  # so `-m benchmarks` finds this package
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        return [_failed_row(scenario, f"stopped after {timeout:.0f} s (raise --timeout to let it finish)")]
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(ROWS_MARKER):
            return json.loads(line[len(ROWS_MARKER):])
    tail = (done.stderr or done.stdout).strip().splitlines()[-12:]
    return [_failed_row(scenario, f"exited {done.returncode}: " + " | ".join(tail))]


def run_all(
    scenarios: list[Scenario], *, mode: str, keep_histories: bool = False, timeout: float | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Run each scenario in a process of its own and assemble the results document.

    Returns ``{"machine", "versions", "results", "ratios"}``; a scenario that
    fails has a row with ``None`` numbers and ``details.error``.
    """
    host = machine()  # before the run, so the load average is what else was running
    results: list[dict[str, Any]] = []
    for number, scenario in enumerate(scenarios, 1):
        started = time.perf_counter()
        if progress:
            print(f"[{number}/{len(scenarios)}] {scenario.name} ...", end="", file=progress, flush=True)
        rows = _run_child(scenario, mode, keep_histories, scenario_timeout(scenario, timeout))
        results.extend(rows)
        if progress:
            failed = any(r.get("details", {}).get("error") for r in rows)
            print(f" {'FAILED ' if failed else ''}{time.perf_counter() - started:.1f} s", file=progress, flush=True)
    return {"machine": host, "versions": versions(), "results": results, "ratios": ratios(results)}


def _child(name: str, mode: str, keep_histories: bool) -> int:
    scenarios = {s.name: s for s in [*plan(mode), *queue_scenarios.plan(mode)]}
    if name not in scenarios:
        print(f"unknown scenario {name!r} in {mode} mode: choose from {', '.join(scenarios)}", file=sys.stderr)
        return 2
    # Every scenario's process starts as the ceap command does (the bound's and moto's too).
    tune_collector()
    try:
        kind = scenarios[name].kind
        if kind == "queue-pipe":
            runner = queue_scenarios.run_scenario
        elif kind.startswith("peer-"):
            runner = peer.run_scenario
        elif kind in ("e2e", "stage-speed"):
            runner = end_to_end.run_scenario
        else:
            runner = run_scenario
        rows = runner(scenarios[name], mode=mode, keep_histories=keep_histories)
    except Exception as exc:  # noqa: BLE001 - reported as the scenario's row, the run goes on
        traceback.print_exc()
        rows = [_failed_row(scenarios[name], f"{type(exc).__name__}: {exc}")]
    print(ROWS_MARKER + json.dumps(rows), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks``; returns the exit code (1 if any scenario failed)."""
    args = _parser().parse_args(argv)
    mode = _mode(args)
    if args.run_scenario:
        return _child(args.run_scenario, mode, args.keep_histories)
    scenarios = _select([*plan(mode), *queue_scenarios.plan(mode)], args.only, mode)
    serve = _runs_serve(args, mode)
    if args.list:
        for s in scenarios:
            print(f"{s.name}\t{s.kind}\texecutions={s.executions}\tconcurrency={s.concurrency}\trecords={s.records}")
        if serve:
            print(f"{SERVE}\tserve\t(benchmarks/serve.py: ceap serve over HTTP beside MiniStack and moto)")
        return 0
    started_at = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    started = time.perf_counter()
    document = run_all(scenarios, mode=mode, keep_histories=args.keep_histories, timeout=args.timeout,
                       progress=sys.stderr)
    if serve:
        from .serve import run_reported

        document["serve"] = run_reported(quick=mode == "quick", progress=sys.stderr)
    duration = time.perf_counter() - started
    print(table(document))
    print(f"\n{mode} run: {len(scenarios)} scenarios in {duration:.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        command = shlex.join(["python", "-m", "benchmarks", *(argv if argv is not None else sys.argv[1:])])
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(
            markdown(document, command=command, mode=mode, started=started_at, duration_s=duration), encoding="utf-8"
        )
    failed = [r["name"] for r in document["results"] if r.get("details", {}).get("error")]
    return 1 if failed else 0
