"""The HeavyETL Glue job on local Spark: cold start and warm runs on 100k candidates.

    python -m benchmarks.glue_job                  # 100k candidates (full)
    python -m benchmarks.glue_job --mode quick     # 10k
    python -m benchmarks.glue_job --candidates 25000 --json

What is timed is what ``ceap run --local --workflow batch`` pays for its
HeavyETL step: the local Glue runner's ``glue:startJobRun.sync`` call, which
loads the script and runs ``glue_jobs/heavy_etl.py`` on the process's local
SparkSession against the file object store. Rows:

- ``glue-job-cold``: the first run in a fresh process. ``session_start_s`` is
  the JVM and SparkSession start; ``first_run_s`` the first job on it (Spark
  plans, compiles and JITs everything once); the row's latency is their sum;
- ``glue-job-warm``: later runs on the same session (what every further run
  of a long-lived process pays).

``details.phases_s`` splits a run into the job's phases: ``readInput`` (read
and parse the Filter output on the driver), ``spark`` (read, classify and
aggregate the source, join and collect the candidates' customers),
``assemble`` (merge the features into the candidates and serialise the one
output object) and ``write`` (store it). ``assemble`` + ``write`` is what the
one-object layout costs (docs/glue.md).

The input is made, untimed, the way a run makes it: order events from
``examples/generate_orders.py``, candidates from the real ETL stage, the first
N written as the Filter output. ``run(mode)`` is the entry point of
``python -m benchmarks`` (scenario ``glue-job``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from adapters.local.glue import LocalGlueRunner, local_spark_session, require_glue
from adapters.local.objects import FileObjectStore
from ceap_engine.pipeline.stage import StageContext
from ceap_engine.ports import TaskContext
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.runtime.tasks import parse_resource
from ceap_engine.storage.objects import write_json
from stages import etl

from .measure import peak_rss_mib

__all__ = ["SIZES", "main", "measure", "run"]

REPO_ROOT = Path(__file__).resolve().parent.parent
BUCKET = "ceap-bench"
JOB = "ceap-batch-heavy-etl"
INPUT_KEY = "executions/bench/Filter/output.json"
DATE_RANGE = {"start": "2025-03-01", "end": "2025-04-04"}

#: Candidates per mode, and how many warm runs follow the cold one.
SIZES = {"full": (100_000, 3), "quick": (10_000, 2), "smoke": (500, 1)}


def _jvm_peak_rss_mib(spark: Any) -> float | None:
    # The JVM is a child process of this one; its peak RSS is not in our rusage.
    try:
        pid = spark.sparkContext._gateway.proc.pid
        with open(f"/proc/{pid}/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (AttributeError, OSError, ValueError):
        pass
    return None


async def _make_input(candidates: int, folder: Path, objects: FileObjectStore) -> dict[str, Any]:
    """Order events and the Filter output of ``candidates`` candidates; returns what was made."""
    events = int(candidates * 1.3) + 100
    source = folder / "orders.jsonl"
    while True:
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(REPO_ROOT / "examples" / "generate_orders.py"), "--count", str(events), "--out", str(source)],
            check=True,
            capture_output=True,
        )
        payload = etl.EtlInput.model_validate(
            {"programId": "review-solicitation", "marketplace": "US", "dateRange": DATE_RANGE, "source": str(source)}
        )
        context = StageContext(
            execution_id="bench", stage="ETL", bucket=BUCKET, objects=objects, clock=VirtualClock(1_743_811_200)
        )
        made = await etl.run(payload, context)
        if made.candidate_count >= candidates:
            break
        events = int(events * candidates / max(1, made.candidate_count) * 1.1) + 100
    # ETL writes its candidates as parts (JSON Lines); the job's input here is one Filter document.
    chosen: list[Any] = []
    for part in context.written_parts()["candidates"]:
        body = await objects.get(BUCKET, part.key)
        chosen += [json.loads(line) for line in body.splitlines() if line.strip()]
    chosen = chosen[:candidates]
    size = await write_json(
        objects,
        BUCKET,
        INPUT_KEY,
        {
            "programId": payload.program_id,
            "marketplace": payload.marketplace,
            "dateRange": DATE_RANGE,
            "candidates": chosen,
            "rejected": [],
            "metrics": {"inputCount": len(chosen), "passedCount": len(chosen), "rejectedCount": 0, "rejectionReasons": {}},
        },
    )
    return {"source": str(source), "source_records": events, "input_mib": round(size / 2**20, 1)}


async def _one_run(runner: LocalGlueRunner, clock: VirtualClock, execution_id: str, source: str) -> tuple[float, dict]:
    arguments = {
        "--execution-id": execution_id,
        "--input-bucket": BUCKET,
        "--input-key": INPUT_KEY,
        "--output-bucket": BUCKET,
        "--output-key": f"executions/{execution_id}/HeavyETL/output.json",
        "--source-uri": source,
        "--date-start": DATE_RANGE["start"],
        "--date-end": DATE_RANGE["end"],
    }
    resource = parse_resource("arn:aws:states:::glue:startJobRun.sync")
    context = TaskContext(
        resource=resource, state_name="HeavyETL", execution_arn=f"arn:aws:states:::execution:batch:{execution_id}",
        execution_name=execution_id, state_machine_arn="arn:aws:states:::stateMachine:batch", clock=clock,
        rng=random.Random(execution_id),
    )
    began = time.perf_counter()
    with clock.activity():
        job_run = await runner(resource, {"JobName": JOB, "Arguments": arguments}, context)
    return time.perf_counter() - began, runner.summaries[job_run["Id"]]


async def measure(candidates: int = 100_000, warm_runs: int = 3) -> dict[str, Any]:
    """Make the input, then time the session start, the first run and ``warm_runs`` more.

    Example::

        numbers = asyncio.run(measure(10_000, warm_runs=2))
        numbers["cold"]["total_s"], numbers["warm"]["runs_s"]
    """
    require_glue()
    folder = Path(tempfile.mkdtemp(prefix="ceap-bench-glue-"))
    try:
        objects = FileObjectStore(folder / "store")
        made_began = time.perf_counter()
        made = await _make_input(candidates, folder, objects)
        made["setup_s"] = round(time.perf_counter() - made_began, 2)

        began = time.perf_counter()
        spark = local_spark_session()
        session_start = time.perf_counter() - began
        runner = LocalGlueRunner(objects, {JOB: REPO_ROOT / "glue_jobs" / "heavy_etl.py"})
        clock = VirtualClock(1_743_811_200)
        first, first_summary = await _one_run(runner, clock, "bench-cold", made["source"])
        warm = [await _one_run(runner, clock, f"bench-warm-{n}", made["source"]) for n in range(1, warm_runs + 1)]
        return {
            "candidates": candidates,
            "input": made,
            "cold": {
                "session_start_s": round(session_start, 2),
                "first_run_s": round(first, 2),
                "total_s": round(session_start + first, 2),
                "phases_s": {k: round(v, 2) for k, v in first_summary["timings"].items()},
            },
            "warm": {
                "runs_s": [round(seconds, 2) for seconds, _ in warm],
                "median_s": round(statistics.median(seconds for seconds, _ in warm), 2) if warm else None,
                "phases_s": {k: round(v, 2) for k, v in warm[-1][1]["timings"].items()} if warm else None,
            },
            "metrics": first_summary["metrics"],
            "output_mib": round(first_summary["outputBytes"] / 2**20, 1),
            "jvm_peak_rss_mib": _jvm_peak_rss_mib(spark),
            "python_peak_rss_mib": round(peak_rss_mib(), 1),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _rows(numbers: dict[str, Any]) -> list[dict[str, Any]]:
    candidates = numbers["candidates"]
    common = {
        "candidates": candidates,
        "source_records": numbers["input"]["source_records"],
        "input_mib": numbers["input"]["input_mib"],
        "output_mib": numbers["output_mib"],
        "jvm_peak_rss_mib": numbers["jvm_peak_rss_mib"],
    }
    cold = numbers["cold"]
    rows = [
        {
            "name": "glue-job-cold",
            "executions": 1,
            "concurrency": 1,
            "executions_per_s": round(1 / cold["total_s"], 3),
            "transitions_per_s": None,
            "p50_ms": round(cold["total_s"] * 1000, 1),
            "p99_ms": round(cold["total_s"] * 1000, 1),
            "peak_rss_mib": numbers["python_peak_rss_mib"],
            "details": {
                **common,
                "session_start_s": cold["session_start_s"],
                "first_run_s": cold["first_run_s"],
                "candidates_per_s": round(candidates / cold["total_s"]),
                "phases_s": cold["phases_s"],
            },
        }
    ]
    warm = numbers["warm"]
    if warm["runs_s"]:
        runs = sorted(warm["runs_s"])
        rows.append(
            {
                "name": "glue-job-warm",
                "executions": len(runs),
                "concurrency": 1,
                "executions_per_s": round(len(runs) / sum(runs), 3),
                "transitions_per_s": None,
                "p50_ms": round(warm["median_s"] * 1000, 1),
                "p99_ms": round(runs[-1] * 1000, 1),
                "peak_rss_mib": numbers["python_peak_rss_mib"],
                "details": {
                    **common,
                    "runs_s": warm["runs_s"],
                    "candidates_per_s": round(candidates / warm["median_s"]),
                    "phases_s": warm["phases_s"],
                },
            }
        )
    return rows


def run(mode: str = "full") -> list[dict[str, Any]]:
    """Result rows for ``python -m benchmarks`` (``mode``: full = 100k candidates, quick = 10k, smoke = 500)."""
    if mode not in SIZES:
        raise ValueError(f"unknown mode {mode!r}: use full, quick or smoke")
    candidates, warm_runs = SIZES[mode]
    return _rows(asyncio.run(measure(candidates, warm_runs)))


def _print(numbers: dict[str, Any]) -> None:
    cold, warm, made = numbers["cold"], numbers["warm"], numbers["input"]
    print(f"HeavyETL Glue job on local Spark, {numbers['candidates']:,} candidates "
          f"({made['input_mib']} MiB Filter output, {made['source_records']:,} source records; input made in {made['setup_s']} s)")
    print(f"  cold: {cold['total_s']:.2f} s = session start {cold['session_start_s']:.2f} s + first run {cold['first_run_s']:.2f} s")
    if warm["runs_s"]:
        print(f"  warm: median {warm['median_s']:.2f} s over {len(warm['runs_s'])} runs {warm['runs_s']}")
    for label, phases in (("cold", cold["phases_s"]), ("warm", warm["phases_s"])):
        if phases:
            print(f"  {label} phases: " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phases.items()))
    print(f"  output {numbers['output_mib']} MiB; peak RSS: python {numbers['python_peak_rss_mib']} MiB, "
          f"JVM {numbers['jvm_peak_rss_mib']} MiB")
    metrics = numbers["metrics"]
    print(f"  enriched {metrics['enrichedCount']:,} of {metrics['inputCount']:,} candidates from "
          f"{metrics['sourceEventCount']:,} events ({metrics['customerCount']:,} customers)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the HeavyETL Glue job on local Spark (cold start and warm runs).")
    parser.add_argument("--mode", choices=sorted(SIZES), default="full", help="full: 100k candidates, quick: 10k, smoke: 500")
    parser.add_argument("--candidates", type=int, help="candidates in the Filter output (overrides --mode)")
    parser.add_argument("--warm-runs", type=int, help="warm runs after the cold one")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args(argv)
    candidates, warm_runs = SIZES[args.mode]
    candidates = args.candidates or candidates
    warm_runs = warm_runs if args.warm_runs is None else args.warm_runs
    if candidates < 1 or warm_runs < 0:
        parser.error("--candidates must be at least 1 and --warm-runs at least 0")
    numbers = asyncio.run(measure(candidates, warm_runs))
    if args.json:
        print(json.dumps(numbers, indent=2))
    else:
        _print(numbers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
