"""A part of the maximum size fits each stage's Lambda memory: measured in a fresh process per stage."""

import json
import subprocess
import sys
from pathlib import Path

from ceap_engine.pipeline import builtin
from ceap_engine.pipeline.layout import execution_key
from ceap_engine.storage.parts import MAX_PART_RECORDS

ROOT = Path(__file__).resolve().parents[2]

# One stage call in a fresh interpreter, as a Lambda runs it: its peak RSS counts the runtime and imports too.
MEASURE = """
import asyncio, json, sys
from ceap_engine.runtime.memory import tune_malloc
tune_malloc()  # as the Lambda handler does at import
from adapters.local import LocalStores
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.pipeline.stage_runtime import invoke_stage
root, function, event, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
clock = VirtualClock(1767571200.0)
objects, candidates = LocalStores(__import__("pathlib").Path(root))(clock)
pointer = asyncio.run(invoke_stage(event, None, function=function, objects=objects, candidates=candidates, clock=clock,
                                   config=config))
if "part" in event:  # the step after the Map: the stage's manifest, which the next stage reads
    assembly = {k: v for k, v in event.items() if k != "part"} | {"assemble": True}
    asyncio.run(invoke_stage(assembly, None, function=function, objects=objects, candidates=candidates, clock=clock,
                             config=config))
candidates.close()
# VmHWM: this process image's own peak (ru_maxrss would carry over the parent's peak across fork and exec).
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peakMiB": hwm / 1024, "counts": pointer["counts"]}))
"""


def _eligible_events(count: int) -> str:
    """``count`` order events of distinct customers that pass every filter (so every stage sees them all)."""
    lines = []
    for i in range(count):
        lines.append(json.dumps({
            "eventId": f"e{i}", "customerId": f"C{i:06d}", "orderId": f"O{i}", "marketplace": "US", "productId": "B0X1",
            "category": "Books", "orderDate": "2025-03-20T10:00:00Z", "deliveryDate": "2025-03-22T10:00:00Z",
            "orderValue": 20.0 + i % 50, "currency": "USD", "quantity": 1,
            "channelOptIns": {"email": True, "push": True, "sms": False, "inApp": True},
            "customerTrustScore": 0.9, "fraudFlag": False, "reviewQualityScore": 0.8, "priorReviewCount": 3,
            "mediaEligible": True,
        }))
    return "\n".join(lines) + "\n"


def test_each_stage_handler_processes_a_max_size_part_within_its_lambda_memory(tmp_path):
    source = tmp_path / "orders.jsonl"
    source.write_text(_eligible_events(MAX_PART_RECORDS))
    spec = builtin("realtime")
    # One partition (so one merge call): the ETL writes all 10,000 candidates into one part, the largest a part may be.
    stages = tuple(s.model_copy(update={"config": {**s.config, "partitions": 1}}) if s.name == "ETL" else s
                   for s in spec.stages)
    spec = spec.model_copy(update={"stages": stages})
    root = tmp_path / "store"
    payload = {"programId": "review-solicitation", "marketplace": "US",
               "dateRange": {"start": "2025-03-01", "end": "2025-04-04"}, "source": str(source)}
    bucket = spec.workflow_bucket
    (root / "buckets" / bucket).mkdir(parents=True)

    # Each stage in its own process, in order, as the state machine calls them: ETL on the
    # execution input, then each later stage on part 0 of the previous stage's output.
    measured = {}
    previous = None
    for stage in spec.stages:
        event = {"executionId": "max-part", "currentStage": stage.name, "previousStage": previous,
                 "workflowBucket": bucket}
        if previous is None:
            event["input"] = payload
        else:
            manifest = json.loads((root / "buckets" / bucket / execution_key("max-part", previous)).read_text())
            (part,) = manifest["parts"]["candidates"]
            assert part["records"] == MAX_PART_RECORDS, (previous, part)  # this stage's input: one full part
            event["part"] = {"index": 0, "key": part["key"], "records": part["records"]}
        done = subprocess.run([sys.executable, "-c", MEASURE, str(root), stage.function, json.dumps(event),
                               json.dumps(stage.config)],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        measured[stage.name] = json.loads(done.stdout.splitlines()[-1])["peakMiB"]
        previous = stage.name

    print(f"peak RSS (MiB) of each stage's handler on a {MAX_PART_RECORDS:,}-record part: {measured}")
    over = {name: (round(peak), spec.stage(name).memory_mb) for name, peak in measured.items()
            if peak >= spec.stage(name).memory_mb}
    assert not over, f"peak RSS (MiB) over the stage's Lambda memory: {over}; all: {measured}"
