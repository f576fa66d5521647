"""Per-stage speed: each stage's real code, through the stage runtime, on one part.

Generates ``--count`` order events, runs ETL over them and then Filter, Score, Store and
Reactive each on its input part (in-memory object and candidate stores, one process, one
core), and prints records per second per stage, JSON decoding and encoding of the part
included (msgspec decodes a part into the stages' Structs in one call and encodes their
records; the pydantic models see only what the Structs refuse - see
``ceap_engine/pipeline/record_codec.py``).

    python -m benchmarks.stage_speed [--count 10000]

``python -m benchmarks`` runs it as its ``stage-speed`` row (:func:`run`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ceap_engine.pipeline.stage_runtime import invoke_stage
from ceap_engine.storage.memory import MemoryCandidateStore, MemoryObjectStore

ROOT = Path(__file__).resolve().parents[1]
STAGES = [("Filter", "stages.filter:run"), ("Score", "stages.score:run"), ("Store", "stages.store:run"),
          ("Reactive", "stages.reactive:run")]


async def measure(source: Path) -> dict[str, dict[str, float]]:
    """Records per second of each stage on ``source`` (each stage on the part the previous one wrote)."""
    objects, candidates = MemoryObjectStore(), MemoryCandidateStore()
    payload = json.loads((ROOT / "examples" / "payload.json").read_text())
    payload["source"] = str(source)

    def request(stage: str, previous: str | None, **extra: object) -> dict[str, object]:
        return {"executionId": "bench", "currentStage": stage, "previousStage": previous, "workflowBucket": "bench", **extra}

    out: dict[str, dict[str, float]] = {}
    began = time.perf_counter()
    pointer = await invoke_stage(request("ETL", None, input=payload), None, function="stages.etl:run", objects=objects)
    seconds = time.perf_counter() - began
    lines = sum(1 for _ in source.open("rb"))
    out["ETL"] = {"records": lines, "seconds": seconds, "recordsPerSecond": lines / seconds}
    previous = "ETL"
    for stage, function in STAGES:
        records = sum(p["records"] for p in pointer["parts"])
        began = time.perf_counter()
        pointer = await invoke_stage(request(stage, previous), None, function=function, objects=objects, candidates=candidates)
        seconds = time.perf_counter() - began
        out[stage] = {"records": records, "seconds": seconds, "recordsPerSecond": records / seconds if seconds else 0.0}
        previous = stage
    return out


def run(count: int) -> dict[str, dict[str, float]]:
    """Generate ``count`` order events and :func:`measure` the stages on them (the ``stage-speed`` row)."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "orders.jsonl"
        subprocess.run([sys.executable, str(ROOT / "examples" / "generate_orders.py"), "--count", str(count),
                        "--out", str(source)], check=True, capture_output=True)
        return asyncio.run(measure(source))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args(argv)
    result = run(args.count)
    for stage, row in result.items():
        print(f"{stage:<9} {row['records']:>8,} records  {row['seconds']:7.2f} s  {row['recordsPerSecond']:>9,.0f} records/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
