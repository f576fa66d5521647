"""Test stages and whole workflows without AWS, with virtual time.

Two environments, in the spirit of Temporal's ``ActivityEnvironment`` and
time-skipping ``WorkflowEnvironment``. Both default to the engine's in-memory
storage and a :class:`~ceap_engine.runtime.clock.VirtualClock`, and take any other
backends as arguments.

One stage::

    env = StageTestEnvironment()
    output = await env.run("stages.filter:run", {"candidates": [...]})
    assert output.metrics.rejected_count == 1

The same stage through the runtime Lambda uses (reads the previous stage's
output from the object store, writes its own, returns the pointer)::

    pointer = await env.invoke("stages.filter:run", stage="Filter", previous="ETL", previous_output=etl_doc)

A whole workflow, with a stage replaced by a fault-injecting handler::

    wf = WorkflowTestEnvironment()
    result = await wf.run("realtime", payload, handlers={"Score": flaky})
    result.status, result.counts, result.execution.history.types()

Faults to inject (a throttled or raced candidate store, a process killed after a
stage) are in :mod:`ceap_engine.testing.faults`.

With the pytest plugin (installed with ceap) the fixtures ``ceap_stage_env``,
``ceap_workflow_env`` and ``ceap_clock`` give fresh environments per test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import BaseModel

from ceap_engine.pipeline import WorkflowSpec, builtin
from ceap_engine.pipeline.layout import execution_key
from ceap_engine.pipeline.local import LocalPipeline, PipelineResult
from ceap_engine.pipeline.names import lambda_function_name
from ceap_engine.pipeline.stage import StageContext
from ceap_engine.pipeline.stage_runtime import invoke_stage, load_stage_function
from ceap_engine.ports import CandidateStore, Clock, ObjectStore, TaskRunner
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.runtime.tasks import FakeLambdaContext
from ceap_engine.storage.memory import MemoryCandidateStore, MemoryObjectStore
from ceap_engine.storage.objects import read_json, write_json

__all__ = ["StageTestEnvironment", "WorkflowTestEnvironment"]

DEFAULT_BUCKET = "ceap-test-bucket"
Handler = Callable[[Any, Any], Any]


def _stage_name(function: str) -> str:
    """The name a shipped workflow gives the stage running ``function`` (``stages.etl:run`` -> ``ETL``)."""
    from ceap_engine.pipeline import BUILTIN

    for spec in BUILTIN.values():
        for stage in spec.stages:
            if stage.function == function:
                return stage.name
    return function.rpartition(":")[0].rpartition(".")[2].capitalize()


class StageTestEnvironment:
    """Run one stage function with in-memory ports, a fake Lambda context and virtual time."""

    def __init__(
        self,
        *,
        objects: ObjectStore | None = None,
        candidates: CandidateStore | None = None,
        clock: Clock | None = None,
        bucket: str = DEFAULT_BUCKET,
        execution_id: str = "test-execution",
    ) -> None:
        self.objects = objects if objects is not None else MemoryObjectStore()
        self.candidates = candidates if candidates is not None else MemoryCandidateStore()
        self.clock = clock if clock is not None else VirtualClock()
        self.bucket = bucket
        self.execution_id = execution_id

    def context(self, stage: str = "Stage", *, config: Mapping[str, Any] | None = None,
                previous_stage: str | None = None) -> StageContext:
        """A :class:`StageContext` on this environment's ports (for calling a stage by hand)."""
        return StageContext(
            execution_id=self.execution_id, stage=stage, bucket=self.bucket, objects=self.objects,
            candidates=self.candidates, previous_stage=previous_stage, clock=self.clock, config=dict(config or {}),
            lambda_context=FakeLambdaContext(f"test-{stage}", clock=self.clock),
        )

    async def run(self, function: str, input: Any, *, stage: str | None = None,
                  config: Mapping[str, Any] | None = None) -> Any:
        """Call the stage function directly with ``input`` (a dict or its model); return its output model."""
        fn = load_stage_function(function)
        model = input if isinstance(input, BaseModel) else fn.parse_input(input, "the test input")
        context = self.context(stage or _stage_name(function), config=config)
        if fn.is_async:
            return await fn.function(model, context)
        return await asyncio.to_thread(fn.function, model, context)

    async def invoke(
        self,
        function: str,
        *,
        stage: str,
        previous: str | None = None,
        previous_output: Any = None,
        execution_input: Any = None,
        config: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Run the stage through the stage runtime, exactly as Lambda runs it; return its pointer.

        ``previous_output`` (a dict or model) is written where the runtime reads
        it; for a first stage pass ``execution_input`` instead.
        """
        if previous is not None and previous_output is not None:
            doc = previous_output.model_dump(mode="json", by_alias=True) if isinstance(previous_output, BaseModel) else previous_output
            await write_json(self.objects, self.bucket, execution_key(self.execution_id, previous), doc)
        event = {"executionId": self.execution_id, "currentStage": stage, "previousStage": previous,
                 "workflowBucket": self.bucket}
        if previous is None:
            event["input"] = execution_input
        return await invoke_stage(
            event, FakeLambdaContext(f"test-{stage}", clock=self.clock), function=function, objects=self.objects,
            candidates=self.candidates, clock=self.clock, config=config,
        )

    async def output_of(self, stage: str) -> Any:
        """What a stage wrote at ``executions/{id}/{stage}/output.json``."""
        return await read_json(self.objects, self.bucket, execution_key(self.execution_id, stage))


class WorkflowTestEnvironment:
    """Run whole workflows locally: the built ASL on the interpreter, stages in-process."""

    def __init__(
        self,
        *,
        objects: ObjectStore | None = None,
        candidates: CandidateStore | None = None,
        clock: Clock | None = None,
        seed: int | None = 0,
    ) -> None:
        self.objects = objects if objects is not None else MemoryObjectStore()
        self.candidates = candidates if candidates is not None else MemoryCandidateStore()
        self.clock = clock if clock is not None else VirtualClock()
        self.seed = seed

    def pipeline(
        self,
        workflow: str | WorkflowSpec,
        *,
        handlers: Mapping[str, Handler] | None = None,
        runners: Mapping[str, TaskRunner] | None = None,
    ) -> LocalPipeline:
        """The :class:`LocalPipeline` of a workflow; ``handlers`` replace stages' Lambda handlers by stage name."""
        spec = builtin(workflow) if isinstance(workflow, str) else workflow
        pipeline = LocalPipeline(spec, objects=self.objects, candidates=self.candidates, clock=self.clock,
                                 runners=runners, seed=self.seed)
        functions = pipeline.lambda_functions
        for stage_name, handler in (handlers or {}).items():
            stage = spec.stage(stage_name)
            functions.register(lambda_function_name(spec, stage), handler, timeout_seconds=stage.timeout_seconds,
                               memory_mb=stage.memory_mb)
        return pipeline

    async def run(
        self,
        workflow: str | WorkflowSpec,
        payload: Any,
        *,
        name: str | None = None,
        handlers: Mapping[str, Handler] | None = None,
        runners: Mapping[str, TaskRunner] | None = None,
        replace: bool = False,
    ) -> PipelineResult:
        """Run one execution to its end; the result carries status, counts, outputs and the full history.

        ``name`` follows ceap's execution-name rule (:mod:`ceap_engine.pipeline.executions`);
        ``replace`` reuses a name that holds a run of another input.
        """
        pipeline = self.pipeline(workflow, handlers=handlers, runners=runners)
        return await pipeline.run(payload, name=name, replace=replace)

    def stage_handler(self, workflow: str | WorkflowSpec, stage: str) -> Callable[[Any, Any], Awaitable[Any]]:
        """The real handler of a stage on this environment's ports (to wrap in a fault-injecting one)."""
        from ceap_engine.pipeline.stage_runtime import make_stage_handler

        spec = builtin(workflow) if isinstance(workflow, str) else workflow
        s = spec.stage(stage)
        return make_stage_handler(s.function, objects=self.objects, candidates=self.candidates, clock=self.clock,
                                  config=s.config)
