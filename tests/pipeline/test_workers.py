"""Worker processes: big parts run in other processes, with the same results as in one."""

import asyncio
import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

from adapters.local import FileObjectStore, LocalStores, SQLiteCandidateStore
from ceap_engine.pipeline.stage import PermanentError
from ceap_engine.pipeline import builtin
from ceap_engine.pipeline.local import LocalPipeline
from ceap_engine.pipeline.stage import StageContext
from ceap_engine.pipeline.workers import StagePool, WorkerDied
from ceap_engine.runtime.clock import VirtualClock

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 1, 5, tzinfo=UTC)


class Empty(BaseModel):
    pass


def kill_myself(input: Empty, context: StageContext) -> Empty:
    """A stage whose process dies mid-call, as one killed by the OOM killer would."""
    os.kill(os.getpid(), signal.SIGKILL)
    return input  # pragma: no cover - never reached


def report_pid_and_hang(input: Empty, context: StageContext) -> Empty:
    """A stage that says which process runs it, then works for a long time."""
    print(f"worker {os.getpid()}", flush=True)
    time.sleep(120)
    return input


def pid_of_worker(input: Empty, context: StageContext) -> dict:
    raise PermanentError(f"ran in process {os.getpid()}")


def _orders(path: Path, count: int) -> Path:
    spec = importlib.util.spec_from_file_location("generate_orders", ROOT / "examples" / "generate_orders.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path.write_text("\n".join(module.generate(count)) + "\n")
    return path


def _spec():
    spec = builtin("realtime")
    # Parts of 2,000 records: each is big enough for a worker (MIN_PROCESS_RECORDS is 2,000).
    stages = tuple(s.model_copy(update={"config": {**s.config, "partRecords": 2_000}}) if s.name == "ETL" else s
                   for s in spec.stages)
    return spec.model_copy(update={"stages": stages})


def _run(root: Path, source: Path, workers: int) -> tuple[dict, list, list, bool]:
    clock = VirtualClock(START)
    candidates = SQLiteCandidateStore(LocalStores(root).candidates_path, clock=clock)
    payload = {"programId": "review-solicitation", "marketplace": "US",
               "dateRange": {"start": "2025-03-01", "end": "2025-04-04"}, "source": str(source)}
    try:
        with LocalPipeline(_spec(), objects=FileObjectStore(root), candidates=candidates, clock=clock, seed=1,
                           workers=workers, worker_stores=LocalStores(root)) as pipeline:
            result = asyncio.run(pipeline.run(payload, name="same-run"))
            used_workers = pipeline.stage_pool is not None and pipeline.stage_pool._pool is not None
    finally:
        candidates.close()
    with sqlite3.connect(LocalStores(root).candidates_path) as db:
        rows = db.execute("SELECT pk, sk, score, channels, json_extract(data, '$.metadata.version') FROM candidates "
                          "ORDER BY pk, sk").fetchall()
    actions = []
    manifest = json.loads((root / "buckets" / result.bucket / result.outputs["Reactive"]).read_text())
    for part in manifest["parts"]["actions"]:
        lines = (root / "buckets" / result.bucket / part["key"]).read_text().splitlines()
        actions += sorted(json.loads(line)["actionId"] for line in lines)
    assert result.status == "SUCCEEDED", result.execution.cause
    return result.counts, rows, sorted(actions), used_workers


def test_a_run_with_worker_processes_gives_what_one_process_gives(tmp_path):
    source = _orders(tmp_path / "orders.jsonl", 6_000)

    counts_1, rows_1, actions_1, used_1 = _run(tmp_path / "one", source, workers=1)
    counts_2, rows_2, actions_2, used_2 = _run(tmp_path / "two", source, workers=2)

    assert (used_1, used_2) == (False, True)
    assert counts_2 == counts_1
    assert counts_1["Filter"]["inputCount"] > 4_000  # several parts of 2,000 went through the Map
    assert rows_2 == rows_1 and len(rows_1) == counts_1["Store"]["storedCount"]
    assert actions_2 == actions_1 and len(actions_1) == counts_1["Reactive"]["actionCount"]


def test_a_stage_error_in_a_worker_comes_back_as_itself(tmp_path):
    pool = StagePool(1, LocalStores(tmp_path))
    event = {"executionId": "e-1", "currentStage": "Filter", "previousStage": None, "workflowBucket": "ceap-test",
             "input": {}}
    try:
        with pytest.raises(PermanentError, match=r"ran in process (\d+)") as raised:
            asyncio.run(pool.invoke("tests.pipeline.test_workers:pid_of_worker", event, config={},
                                    clock=VirtualClock(START)))
    finally:
        pool.close()
    assert int(raised.value.args[0].split()[-1]) != os.getpid()


def test_a_worker_that_dies_fails_the_call_and_the_next_call_gets_a_new_worker(tmp_path):
    pool = StagePool(1, LocalStores(tmp_path))
    event = {"executionId": "e-1", "currentStage": "Filter", "previousStage": None, "workflowBucket": "ceap-test",
             "input": {}}

    async def twice() -> str:
        with pytest.raises(WorkerDied, match="killed or out of memory"):
            await pool.invoke("tests.pipeline.test_workers:kill_myself", event, config={}, clock=VirtualClock(START))
        with pytest.raises(PermanentError, match="ran in process"):
            await pool.invoke("tests.pipeline.test_workers:pid_of_worker", event, config={}, clock=VirtualClock(START))
        return "ok"

    try:
        assert asyncio.run(twice()) == "ok"
    finally:
        pool.close()


# A `ceap run` stand-in: starts a pool, sends it a long stage call, and waits (to be killed).
PARENT = """
import asyncio, sys
from pathlib import Path
from adapters.local import LocalStores
from ceap_engine.pipeline.workers import StagePool
from ceap_engine.runtime.clock import VirtualClock
event = {"executionId": "e-1", "currentStage": "Filter", "previousStage": None, "workflowBucket": "ceap-test", "input": {}}
pool = StagePool(1, LocalStores(Path(sys.argv[1])))
asyncio.run(pool.invoke("tests.pipeline.test_workers:report_pid_and_hang", event, config={}, clock=VirtualClock(0)))
"""


def test_workers_end_when_the_run_that_started_them_is_killed(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline()  # the worker's own line: it is running the call
        assert line.startswith("worker "), line
        worker = int(line.split()[1])
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive(worker):
            time.sleep(0.1)
        assert not _alive(worker), "the worker outlived the killed run"
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
