"""ceap end to end next to the floor on the same file, and each stage on one core.

- ``e2e-<size>``: generates ``size`` order events once with ``examples/generate_orders.py``,
  then runs ``ceap run --local`` on them (a subprocess, real clock, the embedded file and
  SQLite backends, worker processes for big parts: one per core) and the floor
  (``benchmarks/floor.py``, a plain streaming standard-library program doing the same
  logical work, one process) on the same file, one after the other. Two rows:
  ``e2e-<size>`` (ceap; records/s per stage from the history's timestamps) and
  ``floor-<size>``. Both report the process wall time and the peak of the summed RSS of
  the command's whole process tree (:class:`benchmarks.measure.ProcessTreeRss`, sampled
  every 100 ms), and what they counted (candidates, stored, actions), so a reader can check
  that both did the same work.
- ``stage-speed``: :mod:`benchmarks.stage_speed` - each stage's real code through the stage
  runtime, on its input part, in this process (one core, in-memory stores; Store and Reactive
  also on the SQLite candidate store in a file).

Example::

    python -m benchmarks --quick --only e2e-10k,stage-speed
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from datetime import datetime
from pathlib import Path
from typing import Any

from .measure import (
    ProcessRun,
    ProcessTreeRss,
    Run,
    peak_rss_mib,
    result_row,
    run_sampled,
)
from .scenarios import PAYLOAD, REPO_ROOT, STAGES, BenchmarkFailed, Scenario

__all__ = ["end_to_end", "run_scenario", "stage_seconds", "stage_speed"]

FLOOR = Path(__file__).resolve().with_name("floor.py")


def _ceap_command() -> list[str] | None:
    """The ``ceap`` command of this environment, if it has ``run --local``."""
    script = Path(sys.executable).with_name("ceap")
    command = [str(script)] if script.is_file() else ([found] if (found := shutil.which("ceap")) else None)
    if command is None:
        return None
    probe = subprocess.run([*command, "run", "--help"], capture_output=True, text=True, timeout=120, check=False)
    return command if probe.returncode == 0 and "--local" in probe.stdout else None


def _parse_time(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return datetime.fromisoformat(str(value)).timestamp()  # Python 3.11 reads a trailing Z


def stage_seconds(events: list[dict[str, Any]]) -> dict[str, float]:
    """Per stage: seconds from the first of its states entered to the last of its states exited.

    A stage's states are the one named after it and those named ``<Stage>.<anything>``:
    a later stage is a Map (``Filter``) whose iterations are ``Filter.Part`` Tasks, then a
    ``Filter.Manifest`` Task, so its span runs from the Map entered to the manifest written.
    Events are AWS-shaped (``type``, ``timestamp``, ``state{Entered,Exited}EventDetails.name``).
    """
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for event in events:
        kind = event["type"]
        entered = kind.endswith("StateEntered")
        if not entered and not kind.endswith("StateExited"):
            continue
        details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails") or {}
        stage = str(details.get("name", "")).split(".", 1)[0]
        at = _parse_time(event["timestamp"])
        if entered:
            first[stage] = min(first.get(stage, at), at)
        elif stage in first:
            last[stage] = max(last.get(stage, at), at)
    return {stage: last[stage] - first[stage] for stage in first if stage in last}


def _generate_orders(records: int, out: Path) -> None:
    generator = REPO_ROOT / "examples" / "generate_orders.py"
    done = subprocess.run([sys.executable, str(generator), "--count", str(records), "--out", str(out)],
                          capture_output=True, text=True, timeout=1800, check=False)
    if done.returncode != 0:
        raise BenchmarkFailed(f"examples/generate_orders.py failed: {done.stderr.strip()[-2000:]}")


def _run_command(argv: list[str], out: Path, what: str) -> tuple[str, ProcessRun]:
    """Run ``argv`` with its output in ``out`` (stderr beside it); its stdout and what it measured."""
    with open(out, "wb") as stdout, open(out.with_suffix(".err"), "wb") as stderr:
        done = run_sampled(argv, stdout=stdout, stderr=stderr)
    text = out.read_text(encoding="utf-8")
    if done.returncode != 0:
        err = out.with_suffix(".err").read_text(encoding="utf-8", errors="replace")
        raise BenchmarkFailed(f"{what}: `{' '.join(argv)}` exited {done.returncode}: {(err or text).strip()[-2000:]}")
    return text, done


async def _run_in_process(payload: dict[str, Any], store: Path) -> tuple[dict[str, Any], ProcessRun]:
    """The same run as ``ceap run --local`` without the CLI (used when the CLI has no ``run --local``)."""
    from adapters.local import FileObjectStore, SQLiteCandidateStore
    from ceap_engine.pipeline import REALTIME
    from ceap_engine.pipeline.local import LocalPipeline
    from ceap_engine.runtime.clock import RealClock

    clock = RealClock()
    with ProcessTreeRss(os.getpid()) as tree, SQLiteCandidateStore(store / "candidates.sqlite3", clock=clock) as candidates:
        pipeline = LocalPipeline(REALTIME, objects=FileObjectStore(store / "objects"), candidates=candidates, clock=clock)
        started = time.perf_counter()
        result = await pipeline.run(payload)
        wall = time.perf_counter() - started
    document = result.execution.to_json()
    document["counts"] = result.counts
    own = peak_rss_mib()
    return document, ProcessRun(0, wall, max(tree.peak_mib, own), own, tree.samples, tree.most_processes)


def _memory(done: ProcessRun) -> dict[str, Any]:
    return {
        "process_wall_s": round(done.wall_s, 3),
        "process_peak_rss_mib": round(done.process_peak_rss_mib, 1),
        "rss_samples": done.samples,
        "rss_interval_ms": 100,
        "processes": done.most_processes,
    }


def _ceap_row(scenario: Scenario, document: dict[str, Any], done: ProcessRun, driver: str) -> dict[str, Any]:
    records = scenario.records
    if document.get("status") != "SUCCEEDED":
        raise BenchmarkFailed(f"{scenario.name}: the run ended {document.get('status')}: "
                              f"{document.get('error')}: {document.get('cause')}")
    events = document["events"]
    spans = stage_seconds(events)
    counts = document.get("counts") or {}
    execution_s = _parse_time(document["stopDate"]) - _parse_time(document["startDate"])
    stages: dict[str, Any] = {}
    for stage in STAGES:
        seconds = spans.get(stage)
        stage_records = records if stage == STAGES[0] else (counts.get(stage) or {}).get("inputCount")
        stages[stage] = {
            "records": stage_records,
            "seconds": None if seconds is None else round(seconds, 3),
            "records_per_s": round(stage_records / seconds, 1) if seconds and stage_records is not None else None,
        }

    def count(stage: str, key: str) -> int | None:
        return (counts.get(stage) or {}).get(key)

    transitions = sum(1 for e in events if e["type"].endswith("StateEntered"))
    run = Run(1, 1, execution_s, array("d", [execution_s]))
    row = result_row(scenario.name, run, transitions=transitions, details={
        "records": records,
        "records_per_s": round(records / execution_s, 1) if execution_s > 0 else None,
        **_memory(done),
        "workers": os.cpu_count(),
        "stages": stages,
        "counts": {"errors": count("ETL", "errorCount"), "candidates": count("Filter", "inputCount"),
                   "passed": count("Filter", "passedCount"), "stored": count("Store", "storedCount"),
                   "actions": count("Reactive", "actionCount")},
        "driver": driver,
        "timestamps": "history timestamps: milliseconds, real clock",
    })
    row["peak_rss_mib"] = round(done.peak_rss_mib, 1)  # the ceap process tree's, not this harness's
    return row


def _floor_row(scenario: Scenario, counts: dict[str, Any], done: ProcessRun) -> dict[str, Any]:
    name = "floor-" + scenario.name.removeprefix("e2e-")
    wall = done.wall_s
    row = result_row(name, Run(1, 1, wall, array("d", [wall])), transitions=0, details={
        "records": scenario.records,
        "records_per_s": round(scenario.records / wall, 1),
        **_memory(done),
        "work_s": counts.get("wallSeconds"),
        "counts": {key: counts.get(key) for key in ("errors", "candidates", "passed", "stored", "actions")},
        "rejection_reasons": counts.get("rejectionReasons"),
        "driver": "python benchmarks/floor.py PAYLOAD --out DIR (subprocess, standard library only, one process)",
        "peer_of": scenario.name,
    })
    row["peak_rss_mib"] = round(done.peak_rss_mib, 1)
    return row


def end_to_end(scenario: Scenario) -> list[dict[str, Any]]:
    """ceap's row and the floor's, on one generated file (see the module doc)."""
    with tempfile.TemporaryDirectory(prefix="ceap-bench-") as folder:
        work = Path(folder)
        source = work / "orders.jsonl"
        _generate_orders(scenario.records, source)
        payload = {**PAYLOAD, "source": str(source)}
        payload_file = work / "payload.json"
        payload_file.write_text(json.dumps(payload), encoding="utf-8")
        command = _ceap_command()
        if command is not None:
            argv = [*command, "run", "--local", str(payload_file), "--store", str(work / "store"),
                    "--clock", "real", "--format", "json"]
            text, done = _run_command(argv, work / "run.json", scenario.name)
            document = json.loads(text)
            driver = f"ceap run --local PAYLOAD --store DIR --clock real --format json (subprocess: {command[0]})"
        else:
            document, done = asyncio.run(_run_in_process(payload, work / "store"))
            driver = "LocalPipeline in-process (this ceap has no `ceap run --local`)"
        ceap = _ceap_row(scenario, document, done, driver)
        shutil.rmtree(work / "store", ignore_errors=True)  # the floor gets the disk as ceap had it
        argv = [sys.executable, str(FLOOR), str(payload_file), "--out", str(work / "floor")]
        text, done = _run_command(argv, work / "floor.json", f"floor on {scenario.name}'s file")
        floor = _floor_row(scenario, json.loads(text.strip().splitlines()[-1]), done)
    return [ceap, floor]


def stage_speed(scenario: Scenario) -> list[dict[str, Any]]:
    """One row: each stage's records/s on one core (:func:`benchmarks.stage_speed.run`)."""
    from . import stage_speed as speed

    measured = speed.run(scenario.records)
    rounds = next(iter(measured.values()))["rounds"]
    seconds = sum(s["seconds"] for s in measured.values())
    stages = {name: {"records": s["records"], "seconds": round(s["seconds"], 3),
                     "records_per_s": round(s["recordsPerSecond"], 1),
                     "median_records_per_s": round(s["medianRecordsPerSecond"], 1)} for name, s in measured.items()}
    slowest = min(stages, key=lambda name: stages[name]["records_per_s"])
    row = result_row(scenario.name, Run(1, 1, seconds, array("d", [seconds])), transitions=0, details={
        "records": scenario.records,
        "stages": stages,
        "slowest_stage": slowest,
        "min_records_per_s": stages[slowest]["records_per_s"],
        "rounds": rounds,
        "driver": "benchmarks.stage_speed in this process: each stage's real code through the stage runtime on "
                  "its input parts, in-memory object and candidate stores, one core; the (SQLite) rows run Store "
                  "and Reactive again on the same parts with a new SQLite candidate store in a file; the whole "
                  f"chain runs {rounds} times, each on new stores, and a stage's records/s is its fastest round "
                  "(the median round beside it)",
    })
    return [row]


def run_scenario(scenario: Scenario, *, mode: str, keep_histories: bool = False) -> list[dict[str, Any]]:
    """Run one ``e2e`` or ``stage-speed`` scenario in this process and return its rows."""
    if scenario.kind == "e2e":
        return end_to_end(scenario)
    if scenario.kind == "stage-speed":
        return stage_speed(scenario)
    raise ValueError(f"unknown scenario kind {scenario.kind!r}")
