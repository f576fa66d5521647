"""The Pipe from a workflow's queue to its state machine, on the local engine and a virtual clock."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest

from ceap_engine.pipeline import BATCH, REALTIME
from ceap_engine.pipeline.local import LocalPipeline
from ceap_engine.ports import MessageAttribute, OutgoingMessage, QueueCounts, QueueSettings, ReceivedMessage
from ceap_engine.queueing.pipe import (
    FIRE_AND_FORGET,
    REQUEST_RESPONSE,
    Delivery,
    LocalPipelineTarget,
    Pipe,
    apply_input_template,
    create_workflow_queues,
    sqs_record,
)
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.storage.memory import MemoryCandidateStore, MemoryObjectStore
from ceap_engine.storage.memory_queue import MemoryQueues

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _payload(source: Path) -> dict:
    payload = json.loads((EXAMPLES / "payload.json").read_text())
    payload["source"] = str(source)
    return payload


class Wiring:
    def __init__(self, spec=REALTIME, runners=None) -> None:
        self.clock = VirtualClock(start=1_800_000_000)
        self.queues = MemoryQueues(clock=self.clock)
        self.candidates = MemoryCandidateStore()
        self.pipeline = LocalPipeline(spec, objects=MemoryObjectStore(), candidates=self.candidates, clock=self.clock,
                                      runners=runners)
        self.target = LocalPipelineTarget(self.pipeline)
        self.deliveries: list[Delivery] = []
        self.spec = spec

    async def pipe(self, **kwargs) -> Pipe:
        self.queue, self.dlq = await create_workflow_queues(self.queues, self.spec)
        return Pipe(self.queues, self.queue, self.target, clock=self.clock, spec_type=self.spec.type,
                    observer=self.deliveries.append, **kwargs)


def test_the_input_template_makes_the_execution_input_the_body_object() -> None:
    message = ReceivedMessage("m-1", "rh", '{"programId": "p1"}', "md5", 2, 1_800_000_000.0,
                              attributes={"k": MessageAttribute("String", "v")})
    record = sqs_record(message, "ceap-workflow-demo-queue")

    assert record["eventSourceARN"] == "arn:aws:sqs:us-east-1:123456789012:ceap-workflow-demo-queue"
    assert record["attributes"]["ApproximateReceiveCount"] == "2"
    assert record["messageAttributes"]["k"]["stringValue"] == "v"
    assert apply_input_template("<$.body>", record) == {"programId": "p1"}
    assert apply_input_template('{"m": <$.attributes>, "id": "<$.messageId>"}', record)["id"] == "m-1"
    # A body that is not JSON stays text.
    assert apply_input_template("<$.body>", sqs_record(message.__class__("m", "r", "plain", "x", 1, 0.0), "q")) == "plain"


async def test_a_batch_of_one_reaches_the_state_machine_as_a_one_element_array(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "data" / "orders.jsonl", tmp_path / "orders.jsonl")
    w = Wiring()
    pipe = await w.pipe()
    payload = _payload(tmp_path / "orders.jsonl")
    await w.queues.send(w.queue, OutgoingMessage(json.dumps(payload)))

    await pipe.drain()

    [delivery] = w.deliveries
    assert delivery.execution_input == [payload]
    assert (delivery.status, delivery.receive_count, delivery.deleted) == ("SUCCEEDED", 1, True)
    [result] = w.target.results
    assert result.status == "SUCCEEDED"
    assert result.output["input"] == [payload]  # ETL read the payload out of the array (Input.Unwrap)
    assert await w.queues.counts(w.queue) == QueueCounts()


async def test_a_poison_message_reaches_the_dlq_after_exactly_3_receives_and_succeeds_once_redriven(
        tmp_path: Path) -> None:
    w = Wiring()
    pipe = await w.pipe()
    source = tmp_path / "orders.jsonl"  # not there yet: ETL fails permanently
    await w.queues.send(w.queue, OutgoingMessage(json.dumps(_payload(source))))
    began, wall = w.clock.time(), time.perf_counter()

    await pipe.drain()

    assert [(d.receive_count, d.status, d.deleted) for d in w.deliveries] == [
        (1, "FAILED", False), (2, "FAILED", False), (3, "FAILED", False)]
    assert {r.error for r in w.target.results} == {"Ceap.PermanentError"}
    # Each redelivery waited out the 600 s visibility timeout - on the virtual clock.
    assert w.clock.time() - began >= 2 * 600
    assert time.perf_counter() - wall < 30
    [dead] = await w.queues.peek(w.dlq)
    assert dead.receive_count == 3 and dead.dead_letter_source == w.queue
    assert await w.queues.counts(w.queue) == QueueCounts()

    shutil.copy(EXAMPLES / "data" / "orders.jsonl", source)  # the fix
    assert await w.queues.move_messages(w.dlq) == 1
    await pipe.drain()

    assert [(d.receive_count, d.status, d.deleted) for d in w.deliveries[3:]] == [(1, "SUCCEEDED", True)]
    assert w.target.results[-1].status == "SUCCEEDED"
    assert await w.queues.counts(w.dlq) == QueueCounts()


async def test_pipe_errors_are_retried_by_the_pipe_and_do_not_count_towards_max_receive_count() -> None:
    w = Wiring()
    attempts = []

    async def throttled(execution_input, hold):
        attempts.append(execution_input)
        if len(attempts) <= 4:
            raise ConnectionError("StartSyncExecution throttled")
        return "SUCCEEDED"

    w.target = throttled
    pipe = await w.pipe()
    await w.queues.send(w.queue, OutgoingMessage('{"programId": "p"}'))

    await pipe.drain()

    assert len(attempts) == 5
    assert [(d.receive_count, d.status) for d in w.deliveries] == [(1, "SUCCEEDED")]
    assert pipe.stats.internal_errors == 4
    assert await w.queues.counts(w.dlq) == QueueCounts()


async def test_a_failed_standard_execution_never_reaches_the_dlq(tmp_path: Path) -> None:
    w = Wiring(BATCH, runners={"glue:startJobRun": _no_glue})
    pipe = await w.pipe()
    assert pipe.invocation == FIRE_AND_FORGET
    await w.queues.send(w.queue, OutgoingMessage(json.dumps(_payload(tmp_path / "missing.jsonl"))))

    await pipe.drain()

    assert [(d.receive_count, d.status, d.deleted) for d in w.deliveries] == [(1, "STARTED", True)]
    [result] = w.target.results
    assert result.status == "FAILED"  # the failure shows as a FAILED execution ...
    assert await w.queues.counts(w.queue) == QueueCounts()
    assert await w.queues.counts(w.dlq) == QueueCounts()  # ... never in the DLQ


async def _no_glue(resource, parameters, context):  # ETL fails first: HeavyETL is never reached
    raise AssertionError("HeavyETL should not run")


class _CountingReceives(MemoryQueues):
    """Memory queues that say when they were polled ``n`` times."""

    def __init__(self, clock, n: int) -> None:
        super().__init__(clock=clock)
        self.polls, self.n = 0, n
        self.polled = asyncio.Event()

    async def receive(self, *args, **kwargs):
        self.polls += 1
        if self.polls >= self.n:
            self.polled.set()
        return await super().receive(*args, **kwargs)


async def test_polling_until_stopped_on_a_virtual_clock_moves_time_only_for_a_message_in_flight() -> None:
    clock = VirtualClock(start=0)
    queues = _CountingReceives(clock, n=5)
    await queues.create_queue("q", QueueSettings(visibility_timeout=600))
    starts: list[float] = []

    async def target(execution_input, hold) -> str:
        starts.append(clock.time())
        return "FAILED" if len(starts) == 1 else "SUCCEEDED"

    pipe = Pipe(queues, "q", target, clock=clock, spec_type="express")
    running = asyncio.ensure_future(pipe.run())
    await asyncio.wait_for(queues.polled.wait(), 30)
    assert clock.time() == 0  # five empty polls of an idle `ceap serve`: no time passed

    await queues.send("q", OutgoingMessage("{}"))

    async def two_deliveries() -> None:
        while len(starts) < 2:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(two_deliveries(), 30)
    pipe.stop()
    await running
    # The failed delivery came back when its visibility timeout ended, and no later.
    assert starts[0] == 0 and 600 <= starts[1] < 620


def test_the_invocation_type_follows_the_workflow_type() -> None:
    assert Pipe(MemoryQueues(VirtualClock()), "q", LocalPipelineTarget(None), clock=VirtualClock(),
                spec_type="express").invocation == REQUEST_RESPONSE
    with pytest.raises(ValueError):
        Pipe(MemoryQueues(VirtualClock()), "q", LocalPipelineTarget(None), clock=VirtualClock(), invocation="SYNC")


# -- load and faults ------------------------------------------------------------------------

LOAD_MESSAGES = int(__import__("os").environ.get("CEAP_LOAD_MESSAGES", "10000"))


async def test_load_with_poison_and_transient_faults_loses_nothing_and_stores_each_message_once() -> None:
    from ceap_engine.pipeline.spec import StageSpec, WorkflowSpec

    from . import load_stages

    seed = 16
    print(f"load-and-fault seed: {seed}")
    load_stages.FAULTS.seed(seed)
    picks = __import__("random").Random(seed)
    spec = WorkflowSpec(name="load", type="express", stages=(
        StageSpec(name="Work", function="tests.queueing.load_stages:work"),
        StageSpec(name="Act", function="tests.queueing.load_stages:act"),
    ))
    w = Wiring(spec)
    pipe = await w.pipe(pollers=10)
    poison = {f"m{i}" for i in range(LOAD_MESSAGES) if picks.random() < 0.05}
    for start in range(0, LOAD_MESSAGES, 10):
        batch = [OutgoingMessage(json.dumps({"id": f"m{i}", "poison": f"m{i}" in poison}), id=f"e{i}")
                 for i in range(start, start + 10)]
        assert not (await w.queues.send_batch(w.queue, batch)).failed
    wall = time.perf_counter()

    await pipe.drain()

    wall = time.perf_counter() - wall
    by_message: dict[str, list[Delivery]] = {}
    for d in w.deliveries:
        by_message.setdefault(d.execution_input[0]["id"], []).append(d)
    succeeded = {m for m, ds in by_message.items() if any(d.status == "SUCCEEDED" for d in ds)}
    dead = {json.loads(m.body)["id"]: m for m in await w.queues.peek(w.dlq, limit=LOAD_MESSAGES)}
    assert len(by_message) == LOAD_MESSAGES  # every message was delivered
    assert not succeeded & set(dead)
    assert len(succeeded) + len(dead) == LOAD_MESSAGES  # N in = successes + DLQ: none lost
    assert set(dead) == poison
    for message_id in dead:
        assert [d.receive_count for d in by_message[message_id]] == [1, 2, 3]
        assert dead[message_id].receive_count == 3
    for message_id in succeeded:  # a success is the last delivery, and is deleted
        assert by_message[message_id][-1].status == "SUCCEEDED" and by_message[message_id][-1].deleted
    redelivered = sum(1 for m in succeeded if len(by_message[m]) > 1)
    assert redelivered > 0  # some executions failed even after their retries, and came back
    assert await w.queues.counts(w.queue) == QueueCounts()
    # Exactly one stored row and one action per successful message, however often it was delivered.
    rows = await w.candidates.query(load_stages.PROGRAM)
    assert sorted(r.customer_id for r in rows) == sorted(succeeded)
    actions = await w.pipeline.objects.list(w.pipeline.bucket, "actions/")
    assert sorted(actions) == sorted(f"actions/{m}.json" for m in succeeded)
    print(f"{LOAD_MESSAGES} messages, {len(poison)} poison, {redelivered} redelivered after a failed execution, "
          f"{pipe.stats.internal_errors} pipe errors; {wall:.1f} s wall, "
          f"{LOAD_MESSAGES / wall:.0f} messages/s")
    assert wall < 300


class _ActionsWritesFail:
    """An object store whose puts of Reactive's actions parts fail while ``failing`` (a broken disk)."""

    def __init__(self, inner: MemoryObjectStore) -> None:
        self.inner = inner
        self.failing = True

    async def put(self, bucket: str, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        if self.failing and "/Reactive/actions-" in key:
            raise OSError(f"disk error writing {key}")
        await self.inner.put(bucket, key, data, content_type)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


async def test_a_redelivered_message_writes_the_actions_its_failed_execution_had_claimed(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "data" / "orders.jsonl", tmp_path / "orders.jsonl")
    w = Wiring()
    objects = _ActionsWritesFail(MemoryObjectStore())
    w.pipeline = LocalPipeline(REALTIME, objects=objects, candidates=w.candidates, clock=w.clock)
    w.target = LocalPipelineTarget(w.pipeline)
    pipe = await w.pipe()
    await w.queues.send(w.queue, OutgoingMessage(json.dumps(_payload(tmp_path / "orders.jsonl"))))

    # First delivery: Reactive claims every engagement for its execution, then cannot write its
    # actions (its retries too): the execution fails and the message stays on the queue.
    receipts = await w.queues.receive(w.queue, max_messages=1, visibility_timeout=0)
    assert len(receipts) == 1
    status = await pipe.target(pipe.execution_input(receipts), _NoHold(), message_ids=[receipts[0].message_id])
    assert status == "FAILED"
    objects.failing = False

    # The redelivery runs under the same execution name: the claims are its own, the actions get written.
    await pipe.drain()

    assert [d.status for d in w.deliveries][-1] == "SUCCEEDED"
    [*_, result] = w.target.results
    actions = [json.loads(line) for key in await objects.list(w.pipeline.bucket)
               if "/Reactive/actions-" in key for line in (await objects.get(w.pipeline.bucket, key)).splitlines()]
    assert len(actions) == result.output["stages"]["Reactive"]["counts"]["actionCount"] == 473
    assert result.name == f"msg-{receipts[0].message_id}"
    assert await w.queues.counts(w.queue) == QueueCounts()


class _NoHold:
    """A stand-in for the Pipe's per-message activity (the call above is the Pipe's own, made by hand)."""

    def idle(self):
        import contextlib

        return contextlib.nullcontext()

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None
