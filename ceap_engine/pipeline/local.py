"""Run a CEAP workflow locally: the built ASL on the interpreter, stages in-process.

:class:`LocalPipeline` builds the workflow's definition (the one that is
deployed), substitutes local names for the ``${...}`` placeholders as Step
Functions' DefinitionSubstitutions would, and runs it on an :class:`Engine`
whose ``lambda:invoke`` tasks call the stage runtime in this process and whose
``aws-sdk:s3:putObject`` writes to the given object store. Storage, clock and
extra runners (the local Glue runner) are arguments: the CLI passes the
embedded backends, the test kit the in-memory ones.

Example::

    pipeline = LocalPipeline(REALTIME, objects=MemoryObjectStore(), candidates=MemoryCandidateStore())
    result = await pipeline.run({"programId": "p", "marketplace": "US", ...})
    result.status, result.counts["Filter"]
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ceap_engine.asl.definition import StateMachine, load_definition
from ceap_engine.asl.interpreter import EXPRESS, STANDARD, Engine, ExecutionResult, validate_execution_name
from ceap_engine.errors import ObjectNotFound
from ceap_engine.pipeline.builder import (
    BUCKET_PLACEHOLDER,
    build_definition,
    function_placeholder,
    substitute,
)
from ceap_engine.pipeline.executions import NameClaim, claim_name, record_end, record_start
from ceap_engine.pipeline.layout import execution_key, failure_key
from ceap_engine.pipeline.names import glue_job_name, lambda_function_name, state_machine_name
from ceap_engine.pipeline.spec import WorkflowSpec
from ceap_engine.pipeline.stage_runtime import load_stage_function, make_stage_handler
from ceap_engine.pipeline.workers import StagePool, StoreFactory, goes_to_worker
from ceap_engine.ports import CandidateStore, Clock, ObjectStore, ResourceInfo, TaskContext, TaskRunner
from ceap_engine.runtime.clock import VirtualClock, pause_wall_backstops, restart_wall_backstops
from ceap_engine.runtime.tasks import LambdaFunctions, TaskFailed, TaskRunners
from ceap_engine.storage.objects import read_json

__all__ = ["LocalPipeline", "PipelineResult", "S3ObjectIntegration", "StageProgress", "failure_key"]


class S3ObjectIntegration:
    """``arn:aws:states:::aws-sdk:s3:putObject`` / ``getObject`` over an :class:`ObjectStore`."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    async def put_object(self, resource: ResourceInfo, parameters: Any, context: TaskContext) -> Any:
        bucket, key, body = parameters.get("Bucket"), parameters.get("Key"), parameters.get("Body", "")
        if not isinstance(bucket, str) or not isinstance(key, str):
            raise TaskFailed("S3.InvalidRequestException", "putObject needs string Bucket and Key parameters")
        data = body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode("utf-8")
        await self.objects.put(bucket, key, data, parameters.get("ContentType", "application/octet-stream"))
        return {"ETag": f'"{len(data):x}"'}

    async def get_object(self, resource: ResourceInfo, parameters: Any, context: TaskContext) -> Any:
        try:
            data = await self.objects.get(parameters["Bucket"], parameters["Key"])
        except ObjectNotFound:
            raise TaskFailed("S3.NoSuchKeyException", f"The specified key does not exist. (Key: {parameters['Key']})") from None
        return {"Body": data.decode("utf-8", errors="replace"), "ContentLength": len(data)}

    def register(self, runners: TaskRunners) -> None:
        runners.register("aws-sdk:s3:putObject", self.put_object)
        runners.register("aws-sdk:s3:getObject", self.get_object)


@dataclass(frozen=True)
class StageProgress:
    """One step of a stage, as a progress display shows it."""

    stage: str
    status: str  # "started", "succeeded" or "failed"
    attempt: int
    at: float  # the execution clock
    counts: Mapping[str, Any] | None = None
    error: str | None = None
    part: int | None = None  # the part of the previous stage's output this call works on (a Map iteration)
    part_count: int | None = None  # a finished stage call that wrote parts: how many (the next stage's Map items)


ProgressCallback = Callable[[StageProgress], None]


def _part_of(parameters: Any) -> int | None:
    """The part index of a stage request (``Payload.part.index``), if it is one Map iteration."""
    payload = parameters.get("Payload") if isinstance(parameters, Mapping) else None
    part = payload.get("part") if isinstance(payload, Mapping) else None
    index = part.get("index") if isinstance(part, Mapping) else None
    return index if isinstance(index, int) and not isinstance(index, bool) else None


def _reporting(runner: TaskRunner, progress: ProgressCallback) -> TaskRunner:
    """Wrap a task runner so every attempt of a state reports its start and end."""

    async def run(resource: ResourceInfo, parameters: Any, context: TaskContext) -> Any:
        attempt = context.retry_count + 1
        part = _part_of(parameters)
        progress(StageProgress(context.state_name, "started", attempt, context.clock.time(), part=part))
        try:
            result = await runner(resource, parameters, context)
        except TaskFailed as exc:
            progress(StageProgress(context.state_name, "failed", attempt, context.clock.time(), error=f"{exc.error}: {exc.cause}",
                                   part=part))
            raise
        except Exception as exc:
            progress(StageProgress(context.state_name, "failed", attempt, context.clock.time(),
                                   error=f"{type(exc).__name__}: {exc}", part=part))
            raise
        counts = part_count = None
        if isinstance(result, Mapping):
            payload = result.get("Payload")
            if isinstance(payload, Mapping):
                counts = payload.get("counts")
                found = payload.get("partCount")
                part_count = found if isinstance(found, int) and not isinstance(found, bool) else None
        progress(StageProgress(context.state_name, "succeeded", attempt, context.clock.time(), counts=counts, part=part,
                               part_count=part_count))
        return result

    return run


@dataclass
class PipelineResult:
    """An execution of a workflow, with where each stage's output is and what it counted."""

    workflow: str
    execution: ExecutionResult
    bucket: str
    outputs: dict[str, str] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    failure: dict[str, Any] | None = None
    name_claim: NameClaim | None = None
    """What the execution-name rule found (an earlier run resumed, re-run or replaced)."""
    #: Per stage, its manifest's reconciliation (``in``, ``out``, ``rejected``, ...).
    reconciliation: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return self.execution.status

    @property
    def execution_id(self) -> str:
        return self.execution.name


class LocalPipeline:
    """A workflow spec wired to local stages, storage and clock."""

    def __init__(
        self,
        spec: WorkflowSpec,
        *,
        objects: ObjectStore,
        candidates: CandidateStore | None = None,
        clock: Clock | None = None,
        runners: Mapping[str, TaskRunner] | None = None,
        seed: int | None = None,
        region: str = "us-east-1",
        account: str = "123456789012",
        progress: ProgressCallback | None = None,
        workers: int | None = None,
        worker_stores: StoreFactory | None = None,
    ) -> None:
        self.spec = spec
        # A Map runs its iterations concurrently, but each one holds a part in memory:
        # at most ``workers`` stage calls (default: one per core) run at once, the rest wait
        # their turn, so memory stays at workers x one part whatever the day's volume.
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._slots = asyncio.Semaphore(self.workers)
        # With a way to open the storage in another process, big parts go to worker processes
        # (one per slot), so that every core works; see ceap_engine.pipeline.workers.
        self.stage_pool = StagePool(self.workers, worker_stores) if worker_stores is not None and self.workers > 1 else None
        self.objects = objects
        self.candidates = candidates
        self.clock = clock or VirtualClock()
        self.bucket = spec.workflow_bucket
        self.definition = build_definition(spec)
        task_runners = TaskRunners()
        functions = task_runners.register_lambda(LambdaFunctions(region=region, account=account))
        self.lambda_functions = functions
        substitutions = {BUCKET_PLACEHOLDER: self.bucket}
        for stage in spec.stages:
            if stage.kind == "lambda":
                load_stage_function(stage.function)  # fail now, before any execution, on a bad import path
                name = lambda_function_name(spec, stage)
                handler = make_stage_handler(stage.function, objects=objects, candidates=candidates, clock=self.clock,
                                             config=stage.config)
                functions.register(
                    name,
                    self._bounded(self._in_workers(stage.function, stage.config, handler)),
                    timeout_seconds=stage.timeout_seconds,
                    memory_mb=stage.memory_mb,
                )
                substitutions[function_placeholder(stage)] = functions.arn(name)
            else:
                substitutions[function_placeholder(stage)] = glue_job_name(spec, stage)
        S3ObjectIntegration(objects).register(task_runners)
        for key, runner in (runners or {}).items():
            task_runners.register(key, runner)
        if progress is not None:
            for key in ("lambda:invoke", *(runners or {})):
                task_runners.register(key, _reporting(task_runners.runner_for_key(key), progress))
        self.substitutions = substitutions
        self._running: dict[str, tuple[NameClaim | None, dict[str, Any]]] = {}
        self.machine: StateMachine = load_definition(substitute(self.definition, substitutions))
        self.engine = Engine(clock=self.clock, runners=task_runners, seed=seed, region=region, account=account,
                             object_store=objects,
                             role_arn=f"arn:aws:iam::{account}:role/ceap-{spec.name}-local")
        self.engine.check_resources(self.machine)

    def _in_workers(self, function: str, config: Mapping[str, Any],
                    handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        pool = self.stage_pool
        if pool is None:
            return handler

        async def run(event: Any, context: Any) -> Any:
            if goes_to_worker(event):
                return await pool.invoke(function, event, config=config, clock=self.clock)
            return await handler(event, context)

        run.__name__ = getattr(handler, "__name__", "handler")
        return run

    def close(self) -> None:
        """Stop the worker processes, if any (a pipeline without workers has nothing to close)."""
        if self.stage_pool is not None:
            self.stage_pool.close()

    def __enter__(self) -> LocalPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _bounded(self, handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        async def run(event: Any, context: Any) -> Any:
            if self._slots.locked():
                # Waiting for a slot is this machine's wait, not the call's: hold the Task's timers meanwhile
                # (after one step, since a Task arms its timers once its runner first suspends).
                await asyncio.sleep(0)
                pause_wall_backstops()
            async with self._slots:
                # A call that waited for its slot starts now: the wait is this machine's (AWS gives
                # each call its own Lambda at once), so its TimeoutSeconds counts from here on wall time.
                restart_wall_backstops()
                return await handler(event, context)

        run.__name__ = getattr(handler, "__name__", "handler")
        return run

    @property
    def execution_type(self) -> str:
        return EXPRESS if self.spec.type == "express" else STANDARD

    def start(self, payload: Any, *, name: str | None = None) -> Any:
        """Start an execution (returns the running :class:`~ceap_engine.asl.interpreter.Execution`)."""
        return self.engine.start(self.machine, payload, name=name, state_machine_name=state_machine_name(self.spec),
                                 execution_type=self.execution_type)

    async def start_checked(self, payload: Any, *, name: str | None = None, replace: bool = False,
                            started: Callable[[Any], None] | None = None) -> Any:
        """Start an execution under ceap's execution-name rule (:mod:`ceap_engine.pipeline.executions`).

        A ``name`` that holds a run of another input raises
        :class:`~ceap_engine.errors.ExecutionAlreadyExists` (nothing started) unless
        ``replace``; one whose run never ended is resumed; one that ran the same input
        runs again. Without a name the execution gets a fresh one, as on AWS. ``started`` is
        called with the execution right after it starts, before its task first runs.
        """
        claim = None
        if name is not None:
            validate_execution_name(name)
            claim = await claim_name(self.objects, self.bucket, name, payload, workflow=self.spec.name,
                                     replace=replace)
        execution = self.start(payload, name=name)
        if started is not None:
            started(execution)
        record = await record_start(self.objects, self.bucket, execution.name, payload, workflow=self.spec.name,
                                    clock=self.clock)
        self._running[execution.name] = (claim, record)
        return execution

    async def run(self, payload: Any, *, name: str | None = None, replace: bool = False) -> PipelineResult:
        """Run one execution to its end (under the execution-name rule, see :meth:`start_checked`)."""
        execution = await self.start_checked(payload, name=name, replace=replace)
        return await self.collect(await execution.task)

    async def _manifest_of(self, key: str) -> dict[str, Any]:
        try:
            document = await read_json(self.objects, self.bucket, key)
        except (ObjectNotFound, ValueError):
            return {}
        return document if isinstance(document, dict) else {}

    async def collect(self, result: ExecutionResult) -> PipelineResult:
        """Attach outputs, counts and (on failure) the recorded failure to a finished execution."""
        out = PipelineResult(self.spec.name, result, self.bucket)
        claim, record = self._running.pop(result.name, (None, None))
        out.name_claim = claim
        if record is not None:
            await record_end(self.objects, self.bucket, record, result.status, clock=self.clock)
        stages = (result.output or {}).get("stages") if result.status == "SUCCEEDED" else None
        if stages is None:
            stages = _stages_so_far(result)
        for stage in self.spec.stages:
            info = (stages or {}).get(stage.name)
            key = info["outputKey"] if isinstance(info, Mapping) and "outputKey" in info else None
            manifest = await self._manifest_of(key or execution_key(result.name, stage.name))
            if key is None and not manifest:
                continue
            # A stage that failed its reconciliation still wrote its manifest: show where records went.
            out.outputs[stage.name] = key or execution_key(result.name, stage.name)
            counts = info.get("counts") if isinstance(info, Mapping) else None
            if counts is None:
                # A Glue stage's result is a job run, not a pointer: its counts are in its output.
                counts = _metrics(manifest)
            out.counts[stage.name] = counts or {}
            if isinstance(manifest.get("reconciliation"), Mapping):
                out.reconciliation[stage.name] = dict(manifest["reconciliation"])
        if result.status != "SUCCEEDED":
            try:
                out.failure = await read_json(self.objects, self.bucket, failure_key(result.name))
            except (ObjectNotFound, ValueError):
                out.failure = None
        return out


def _metrics(document: Any) -> dict[str, Any]:
    metrics = document.get("metrics") if isinstance(document, Mapping) else None
    return dict(metrics) if isinstance(metrics, Mapping) else {}


def _stages_so_far(result: ExecutionResult) -> dict[str, Any]:
    """Stage pointers from the history (an execution that failed has no final output)."""
    if result.history is None:
        return {}
    last_stages: dict[str, Any] = {}
    for event in result.history.events:
        if event.type.endswith("StateExited") and isinstance(event.details, dict):
            output = event.details.get("output")
            if isinstance(output, Mapping) and isinstance(output.get("stages"), Mapping):
                last_stages = dict(output["stages"])
    return last_stages
