"""Messages per second through queue -> Pipe -> workflow (``python -m benchmarks --only queue-pipe-memory``).

- ``queue-pipe-memory``: N payloads sent in batches of 10 to the in-memory queue,
  then the Pipe (REQUEST_RESPONSE, batch of one, 10 pollers, as for Express)
  starts one execution of the realtime workflow's ASL per message - the same
  no-op stages and virtual clock as ``ceap-realtime``, so the two rows side by
  side show what the queue and the Pipe add to each execution.
- ``queue-pipe-sqlite``: the same through the durable SQLite queue (a file in a
  temporary folder): every receive and delete is a committed transaction.
- ``queue-pipe-serve``: the whole front door over HTTP - N payloads sent with boto3's
  ``send_message_batch`` to a ``ceap serve`` subprocess (real clock), whose Pipe
  (REQUEST_RESPONSE, ``PIPE_POLLERS`` pollers) runs the realtime workflow with its real
  stages on a one-order source per message (ETL reads a file, Store writes SQLite, Reactive
  writes its actions), and deletes each message when its execution SUCCEEDED. The rate is
  messages over the time from the first send to the queue found empty; the latency is that
  of one message alone (sent, then the queue polled until it is empty), 20 times after the run.

A memory/sqlite row's latency is a message's time from receive to delete. Every message
must end SUCCEEDED and deleted (the serve row: the queue and its DLQ empty), or the
scenario fails.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

from ceap_engine.asl.interpreter import EXPRESS, Engine
from ceap_engine.ports import Activity, OutgoingMessage, Queues, QueueSettings, RedrivePolicy
from ceap_engine.queueing.pipe import LocalPipelineTarget, Pipe
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.storage.memory_queue import MemoryQueues

from .measure import Run, result_row
from .scenarios import PAYLOAD, BenchmarkFailed, Scenario, _runners, noop_stage, realtime_machine, state_transitions

__all__ = ["plan", "run_scenario"]

ROOT = Path(__file__).resolve().parents[1]

POLLERS = 10


def plan(mode: str) -> list[Scenario]:
    """The queue scenarios of a run (``full``, ``quick`` or ``smoke``)."""
    from ceap_engine.serve.pipes import PIPE_POLLERS

    n = {"full": 20_000, "quick": 2_000, "smoke": 20}[mode]
    served = {"full": 2_000, "quick": 300, "smoke": 20}[mode]
    return [Scenario("queue-pipe-memory", "queue-pipe", n, POLLERS),
            Scenario("queue-pipe-sqlite", "queue-pipe", n, POLLERS),
            Scenario("queue-pipe-serve", "queue-pipe", served, PIPE_POLLERS)]


class _EngineWorkflow:
    """What :class:`LocalPipelineTarget` needs of a pipeline: ``start`` and ``execution_type``, on the bare engine."""

    execution_type = EXPRESS

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.machine = realtime_machine()
        self.transitions = 0

    def start(self, execution_input: Any) -> Any:
        execution = self.engine.start(self.machine, execution_input, execution_type=EXPRESS)
        execution.task.add_done_callback(self._count)
        return execution

    def _count(self, task: asyncio.Future[Any]) -> None:
        self.transitions += state_transitions(task.result().history)


async def queue_pipe(scenario: Scenario, queues: Queues, clock: VirtualClock) -> dict[str, Any]:
    await queues.create_queue("bench-dlq")
    await queues.create_queue("bench", QueueSettings(visibility_timeout=600, redrive=RedrivePolicy("bench-dlq", 3)))
    body = json.dumps(PAYLOAD)
    for start in range(0, scenario.executions, 10):
        count = min(10, scenario.executions - start)
        await queues.send_batch("bench", [OutgoingMessage(body, id=str(i)) for i in range(count)])
    workflow = _EngineWorkflow(Engine(clock=clock, runners=_runners(noop_stage)))
    target = LocalPipelineTarget(workflow)
    latencies = array("d")

    async def timed(execution_input: Any, hold: Activity) -> str:
        began = time.perf_counter()
        status = await target(execution_input, hold)
        latencies.append(time.perf_counter() - began)
        return status

    pipe = Pipe(queues, "bench", timed, clock=clock, spec_type="express", pollers=scenario.concurrency)
    cpu, began = time.process_time(), time.perf_counter()
    stats = await pipe.drain()
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    if stats.succeeded != scenario.executions or stats.deleted != scenario.executions:
        raise BenchmarkFailed(f"{scenario.name}: {stats.succeeded} of {scenario.executions} messages succeeded "
                              f"({stats.deleted} deleted)")
    run = Run(scenario.executions, scenario.concurrency, wall, latencies, cpu)
    return result_row(scenario.name, run, transitions=workflow.transitions,
                      details={"messages_per_s": round(scenario.executions / wall, 1), "pollers": scenario.concurrency,
                               "queue": type(queues).__name__})


async def _run(scenario: Scenario) -> list[dict[str, Any]]:
    clock = VirtualClock(start=0)
    if scenario.name.endswith("sqlite"):
        from adapters.local.queue import SQLiteQueues

        with tempfile.TemporaryDirectory() as folder, SQLiteQueues(Path(folder) / "queues.sqlite3", clock=clock) as q:
            return [await queue_pipe(scenario, q, clock)]
    return [await queue_pipe(scenario, MemoryQueues(clock=clock), clock)]


def _one_order_sources(folder: Path, count: int) -> list[str]:
    """``count`` payloads, each naming a source file of one order of its own customer."""
    first = json.loads((ROOT / "examples" / "data" / "orders.jsonl").read_text().splitlines()[0])
    bodies = []
    for i in range(count):
        source = folder / f"m{i}.jsonl"
        source.write_text(json.dumps({**first, "eventId": f"evt-b{i}", "customerId": f"CB{i}", "orderId": f"ORD-B-{i}"})
                          + "\n")
        bodies.append(json.dumps({**PAYLOAD, "source": str(source)}))
    return bodies


def _depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return sum(int(attributes[a]) for a in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                                            "ApproximateNumberOfMessagesDelayed"))


def _until_empty(sqs: Any, url: str, timeout: float, interval: float) -> None:
    deadline = time.monotonic() + timeout
    while _depth(sqs, url):
        if time.monotonic() > deadline:
            raise BenchmarkFailed(f"queue-pipe-serve: the queue did not empty within {timeout:.0f} s")
        time.sleep(interval)


def queue_pipe_serve(scenario: Scenario) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    from .serve import ceap_server

    with tempfile.TemporaryDirectory() as folder, ceap_server(workflows=True) as url:
        bodies = _one_order_sources(Path(folder), scenario.executions + 20)
        sqs = boto3.client("sqs", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bench",
                           aws_secret_access_key="bench", config=Config(retries={"max_attempts": 0}))
        queue = sqs.get_queue_url(QueueName="ceap-workflow-realtime-queue")["QueueUrl"]
        dlq = sqs.get_queue_url(QueueName="ceap-workflow-realtime-dlq")["QueueUrl"]
        began = time.perf_counter()
        for start in range(0, scenario.executions, 10):
            entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start:min(start + 10, scenario.executions)])]
            if sqs.send_message_batch(QueueUrl=queue, Entries=entries).get("Failed"):
                raise BenchmarkFailed("queue-pipe-serve: a send failed")
        sent = time.perf_counter() - began
        _until_empty(sqs, queue, timeout=60 + scenario.executions, interval=0.05)
        wall = time.perf_counter() - began
        latencies = array("d")
        for body in bodies[scenario.executions:]:
            one = time.perf_counter()
            sqs.send_message(QueueUrl=queue, MessageBody=body)
            _until_empty(sqs, queue, timeout=60, interval=0.005)
            latencies.append(time.perf_counter() - one)
        if _depth(sqs, dlq):
            raise BenchmarkFailed("queue-pipe-serve: messages reached the DLQ")
    run = Run(scenario.executions, scenario.concurrency, wall, latencies, None)
    return result_row(scenario.name, run, transitions=0, details={
        "messages_per_s": round(scenario.executions / wall, 1), "pollers": scenario.concurrency,
        "send_s": round(sent, 3), "queue": "SQLiteQueues in ceap serve", "workload": "real stages, one order per message",
        "latency": "one message alone, send to deleted"})


def run_scenario(scenario: Scenario, *, mode: str, keep_histories: bool = False) -> list[dict[str, Any]]:
    """Run one queue scenario in this process and return its rows."""
    if scenario.name.endswith("serve"):
        return [queue_pipe_serve(scenario)]
    return asyncio.run(_run(scenario))
