"""Messages per second through queue -> Pipe -> workflow (``python -m benchmarks --only queue-pipe-memory``).

- ``queue-pipe-memory``: N payloads sent in batches of 10 to the in-memory queue,
  then the Pipe (REQUEST_RESPONSE, batch of one, 10 pollers, as for Express)
  starts one execution of the realtime workflow's ASL per message - the same
  no-op stages and virtual clock as ``ceap-realtime``, so the two rows side by
  side show what the queue and the Pipe add to each execution.
- ``queue-pipe-sqlite``: the same through the durable SQLite queue (a file in a
  temporary folder): every receive and delete is a committed transaction.

A row's ``executions`` counts messages; its latency is a message's time from
receive to delete. Every message must end SUCCEEDED and deleted, or the scenario fails.
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

POLLERS = 10


def plan(mode: str) -> list[Scenario]:
    """The queue scenarios of a run (``full``, ``quick`` or ``smoke``)."""
    n = {"full": 20_000, "quick": 2_000, "smoke": 20}[mode]
    return [Scenario("queue-pipe-memory", "queue-pipe", n, POLLERS),
            Scenario("queue-pipe-sqlite", "queue-pipe", n, POLLERS)]


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


def run_scenario(scenario: Scenario, *, mode: str, keep_histories: bool = False) -> list[dict[str, Any]]:
    """Run one queue scenario in this process and return its rows."""
    return asyncio.run(_run(scenario))
