"""Per-stage speed: each stage's real code, through the stage runtime, on one part.

Generates ``--count`` order events, runs ETL over them and then Filter, Score, Store and
Reactive each on its input part (in-memory object and candidate stores, one process, one
core), then Store and Reactive again on the same parts against the embedded SQLite candidate
store in a file (``Store (SQLite)``, ``Reactive (SQLite)``: a new database, as a first run
sees it), and prints records per second per stage, JSON decoding and encoding of the part
included (msgspec decodes a part into the stages' Structs in one call and encodes their
records; the pydantic models see only what the Structs refuse - see
``ceap_engine/pipeline/record_codec.py``). The stage modules are imported before the clock
starts: an import is once a process (a Lambda's cold start), not a cost of the records.

The whole chain runs ``--rounds`` times (default 3), each round on new stores (a Store that
finds its candidates already stored takes another path); a stage's row is its fastest round,
the least disturbed by the rest of a shared machine, with the median round beside it.

    python -m benchmarks.stage_speed [--count 10000] [--rounds 3]

``python -m benchmarks`` runs it as its ``stage-speed`` row (:func:`run`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from adapters.local import SQLiteCandidateStore
from ceap_engine.pipeline.stage_runtime import invoke_stage, load_stage_function
from ceap_engine.storage.memory import MemoryCandidateStore, MemoryObjectStore

ROOT = Path(__file__).resolve().parents[1]
STAGES = [("Filter", "stages.filter:run"), ("Score", "stages.score:run"), ("Store", "stages.store:run"),
          ("Reactive", "stages.reactive:run")]
#: The stages that use the candidate store, run again on SQLite after the in-memory pass.
SQLITE_STAGES = STAGES[2:]


async def measure(source: Path, database: Path) -> dict[str, dict[str, float]]:
    """Records per second of each stage on ``source`` (each stage on the part the previous one wrote).

    The rows ``Store (SQLite)`` and ``Reactive (SQLite)`` run those stages again with a new
    SQLite candidate store at ``database``.
    """
    objects, candidates = MemoryObjectStore(), MemoryCandidateStore()
    payload = json.loads((ROOT / "examples" / "payload.json").read_text())
    payload["source"] = str(source)

    def request(stage: str, previous: str | None, **extra: object) -> dict[str, object]:
        return {"executionId": "bench", "currentStage": stage, "previousStage": previous, "workflowBucket": "bench", **extra}

    out: dict[str, dict[str, float]] = {}
    for function in ["stages.etl:run", *(function for _, function in STAGES)]:
        load_stage_function(function)
    began = time.perf_counter()
    pointer = await invoke_stage(request("ETL", None, input=payload), None, function="stages.etl:run", objects=objects)
    seconds = time.perf_counter() - began
    lines = sum(1 for _ in source.open("rb"))
    out["ETL"] = {"records": lines, "seconds": seconds, "recordsPerSecond": lines / seconds}
    previous = "ETL"
    inputs: dict[str, tuple[dict[str, object], str]] = {}  # each stage's input pointer and previous stage
    for stage, function in STAGES:
        inputs[stage] = (pointer, previous)
        pointer = await time_stage(out, stage, function, pointer, request(stage, previous), objects, candidates)
        previous = stage
    with SQLiteCandidateStore(database) as sqlite:
        pointer = inputs[SQLITE_STAGES[0][0]][0]
        for stage, function in SQLITE_STAGES:
            previous = inputs[stage][1]
            pointer = await time_stage(out, f"{stage} (SQLite)", function, pointer, request(stage, previous), objects,
                                       sqlite)
    return out


async def time_stage(out: dict[str, dict[str, float]], row: str, function: str, previous: dict[str, object],
                     event: dict[str, object], objects: MemoryObjectStore, candidates: object) -> dict[str, object]:
    """Run one stage on all of ``previous``'s parts, put its row into ``out``; return its pointer."""
    records = sum(p["records"] for p in previous["parts"])  # type: ignore[attr-defined,index]
    began = time.perf_counter()
    pointer = await invoke_stage(event, None, function=function, objects=objects, candidates=candidates)  # type: ignore[arg-type]
    seconds = time.perf_counter() - began
    out[row] = {"records": records, "seconds": seconds, "recordsPerSecond": records / seconds if seconds else 0.0}
    return pointer


def run(count: int, rounds: int = 3) -> dict[str, dict[str, float]]:
    """Generate ``count`` order events and :func:`measure` the stages on them ``rounds`` times (the
    ``stage-speed`` row): each stage's fastest round, with ``medianRecordsPerSecond`` and ``rounds``."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "orders.jsonl"
        subprocess.run([sys.executable, str(ROOT / "examples" / "generate_orders.py"), "--count", str(count),
                        "--out", str(source)], check=True, capture_output=True)
        measured = [asyncio.run(measure(source, Path(tmp) / f"candidates-{n}.sqlite3")) for n in range(rounds)]
    out: dict[str, dict[str, float]] = {}
    for stage in measured[0]:
        runs = sorted((m[stage] for m in measured), key=lambda row: row["seconds"])
        out[stage] = {**runs[0], "medianRecordsPerSecond": statistics.median(r["recordsPerSecond"] for r in runs),
                      "rounds": rounds}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3, help="runs of the whole chain, each on new stores (default 3)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    result = run(args.count, args.rounds)
    print(f"{'stage':<17} {'records':>8}  {'seconds':>7}  {'records/s':>9}  {'median':>9}   (fastest of {args.rounds} rounds)")
    for stage, row in result.items():
        print(f"{stage:<17} {row['records']:>8,}  {row['seconds']:7.3f}  {row['recordsPerSecond']:>9,.0f}"
              f"  {row['medianRecordsPerSecond']:>9,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
