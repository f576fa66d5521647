"""The stage runtime: the same entry point locally and in AWS Lambda.

For one invocation it reads the previous stage's manifest from
``executions/{executionId}/{previousStage}/output.json``, reads one of its parts
(a Map iteration) or each in turn, validates the records with the stage
function's input model (a record that fails is isolated into the errors part,
not the whole batch), calls the function, writes the output's record lists as
parts and a summary per part, and after the last part writes
``executions/{executionId}/{currentStage}/output.json`` (the manifest) and returns a
small pointer (``{"stage", "outputKey", "counts", "partList", "parts"}``) to the
state machine. See :mod:`ceap_engine.pipeline.stage_data`.

Errors are raised, never returned: a missing or invalid previous output or
request is :class:`~ceap_engine.pipeline.stage.PermanentError` (``Ceap.PermanentError``,
not retried); anything the stage raises reaches the state machine as it is, so
Retry and Catch apply.

Locally the engine calls the handler that :func:`make_stage_handler` returns,
with a fake Lambda context; in Lambda ``adapters.aws.handler`` calls
:func:`invoke_stage` with the AWS ports.

Example::

    handler = make_stage_handler("stages.filter:run", objects=store)
    pointer = await handler({"executionId": "e-1", "currentStage": "Filter",
                             "previousStage": "ETL", "workflowBucket": "b"}, None)
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ValidationError

from ceap_engine.errors import CeapError
from ceap_engine.pipeline.record_codec import RecordWire, paused_gc
from ceap_engine.pipeline.source_fanout import SOURCE_STEPS, invoke_source_step
from ceap_engine.pipeline.stage import PermanentError, SourceSteps, StageContext
from ceap_engine.pipeline.stage_data import (
    InputPart,
    PreviousOutput,
    StageData,
    describe_errors,
    parse_part_input,
    parse_wire_input,
)
from ceap_engine.ports import CandidateStore, Clock, ObjectStore
from ceap_engine.runtime.clock import RealClock

__all__ = [
    "StageFunction",
    "StageRequest",
    "describe_errors",
    "invoke_stage",
    "load_stage_function",
    "make_stage_handler",
]


class StageLoadError(CeapError):
    """A stage function that cannot be imported or has no pydantic input/output annotations."""


@dataclass(frozen=True)
class StageFunction:
    """A stage function with the models its annotations name."""

    path: str
    function: Callable[..., Any]
    input_model: type[BaseModel]
    output_model: type[BaseModel] | None
    is_async: bool
    wire: RecordWire | None = None  # the stage's fast record path (``function.wire``), if it has one
    source_steps: SourceSteps | None = None  # a first stage's fan-out over its source (``function.source_steps``)

    def parse_input(self, document: Any, what: str) -> BaseModel:
        """Validate ``document`` with the input model; a failure is a PermanentError naming the fields."""
        try:
            return self.input_model.model_validate(document)
        except ValidationError as exc:
            raise PermanentError(f"{what} is not a valid {self.input_model.__name__}: {describe_errors(exc)}") from None


@lru_cache(maxsize=None)
def load_stage_function(path: str) -> StageFunction:
    """Import ``package.module:function`` and read its input/output models from its annotations."""
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise StageLoadError(f"stage function {path!r} must look like package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StageLoadError(f"cannot import {module_name!r} for stage function {path!r}: {exc}") from exc
    function = getattr(module, attr, None)
    if not callable(function):
        raise StageLoadError(f"{module_name!r} has no function {attr!r} (stage function {path!r})")
    hints = typing.get_type_hints(function)
    params = list(inspect.signature(function).parameters)
    input_model = hints.get(params[0]) if params else None
    if not (isinstance(input_model, type) and issubclass(input_model, BaseModel)):
        raise StageLoadError(f"the first parameter of {path} must be annotated with a pydantic model")
    output_model = hints.get("return")
    if not (isinstance(output_model, type) and issubclass(output_model, BaseModel)):
        output_model = None
    wire = getattr(function, "wire", None)
    if wire is not None and not isinstance(wire, RecordWire):
        raise StageLoadError(f"{path}.wire must be a RecordWire (the stage's codec and core function)")
    steps = getattr(function, "source_steps", None)
    if steps is not None and not isinstance(steps, SourceSteps):
        raise StageLoadError(f"{path}.source_steps must be a SourceSteps (plan, split, merge, finish)")
    return StageFunction(path, function, input_model, output_model, inspect.iscoroutinefunction(function), wire,
                         steps)


@dataclass(frozen=True)
class StageRequest:
    """The Payload the state machine sends a stage.

    ``part`` (``{"index", "key", "records"}``) makes it one Map iteration over one part of
    the previous stage's output; ``assemble`` makes it the step after the Map that writes
    the stage's manifest from the iterations' summaries. Without either, the stage runs
    over every part of its input in turn (the first stage: over the execution input).
    ``step`` (``plan``, ``range`` with a ``range`` item, ``merge`` with a ``group`` item) is a
    call of a first stage that fans out over its source (:mod:`.source_fanout`); its
    ``assemble`` is that stage's Manifest step.
    """

    execution_id: str
    current_stage: str
    previous_stage: str | None
    bucket: str
    input: Any = None
    part: Mapping[str, Any] | None = None
    assemble: bool = False
    step: str | None = None  # a first stage's fan-out over its source: "plan", "range" or "merge"

    @classmethod
    def from_event(cls, event: Any) -> StageRequest:
        if not isinstance(event, Mapping):
            raise PermanentError(f"a stage request must be a JSON object, got {json.dumps(event)[:200]}")
        missing = [k for k in ("executionId", "currentStage", "workflowBucket") if not isinstance(event.get(k), str) or not event.get(k)]
        if missing:
            raise PermanentError(f"the stage request lacks {', '.join(missing)} (got keys: {', '.join(sorted(event)) or 'none'})")
        previous = event.get("previousStage")
        if previous is not None and not isinstance(previous, str):
            raise PermanentError("previousStage must be a stage name or null")
        part = event.get("part")
        if part is not None and not (
            isinstance(part, Mapping) and isinstance(part.get("key"), str) and isinstance(part.get("index"), int)
        ):
            raise PermanentError(f"part must be an object with a string key and an integer index, got {json.dumps(part)[:200]}")
        if part is not None and previous is None:
            raise PermanentError("a request for one part needs the previousStage whose part it is")
        step = event.get("step")
        if step is not None and (step not in SOURCE_STEPS or previous is not None):
            raise PermanentError(f"step must be one of {', '.join(SOURCE_STEPS)} in a request to the first stage, got {step!r}")
        return cls(event["executionId"], event["currentStage"], previous, event["workflowBucket"], event.get("input"),
                   part, bool(event.get("assemble")), step)


async def invoke_stage(
    event: Any,
    lambda_context: Any,
    *,
    function: str | StageFunction,
    objects: ObjectStore,
    candidates: CandidateStore | None = None,
    clock: Clock | None = None,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run one stage (or one part of it, or its assembly) for one state-machine request; return the pointer."""
    stage = function if isinstance(function, StageFunction) else load_stage_function(function)
    request = StageRequest.from_event(event)

    def context(part_index: int | None) -> StageContext:
        return StageContext(
            execution_id=request.execution_id,
            stage=request.current_stage,
            bucket=request.bucket,
            objects=objects,
            candidates=candidates,
            previous_stage=request.previous_stage,
            clock=clock or RealClock(),
            config=dict(config or {}),
            lambda_context=lambda_context,
            part_index=part_index,
        )

    data = StageData(objects, request.bucket, request.execution_id, request.current_stage)
    if request.previous_stage is None and (request.step is not None or request.assemble):
        if stage.source_steps is None:
            raise PermanentError(f"{stage.path} has no source_steps: it cannot run the {request.step or 'assemble'} step "
                                 "of a first stage that fans out over its source")
        return await invoke_source_step(event, stage.source_steps, lambda doc: stage.parse_input(doc, "the execution input"),
                                        data, context(None))
    if request.previous_stage is None:
        if request.input is None:
            raise PermanentError(f"{request.current_stage} is the first stage and needs the execution input in the request's 'input'")
        stage_input = stage.parse_input(request.input, "the execution input")
        ctx = context(None)
        output = await _call(stage, stage_input, ctx)
        summary = await data.summarise(0, output, ctx, inputs=None, input_errors=[])
        await data.write_summary(summary)
        return await data.assemble([summary], previous_out=None)

    previous = await data.previous(request.previous_stage)
    if not previous.parts:
        # Nothing to map over: the stage still runs once, on no records, so that its
        # manifest carries its own (zero) metrics.
        empty = InputPart(0, previous.key, 0, inline=())
        summary = await _run_part(stage, data, previous, empty, context)
        return await data.assemble([summary], previous_out=previous.out)
    if request.assemble:
        summaries = await data.read_summaries(len(previous.parts))
        return await data.assemble(summaries, previous_out=previous.out)
    if request.part is not None:
        part = previous.part_at(int(request.part["index"]), request.part["key"])
        summary = await _run_part(stage, data, previous, part, context)
        return {"stage": request.current_stage, "part": summary["index"], "counts": summary["metrics"]}
    summaries = [await _run_part(stage, data, previous, part, context) for part in previous.parts]
    return await data.assemble(summaries, previous_out=previous.out)


async def _call(stage: StageFunction, stage_input: BaseModel, ctx: StageContext, *, wire: bool = False) -> Any:
    function = stage.wire.core if wire and stage.wire is not None else stage.function
    if inspect.iscoroutinefunction(function):
        return await function(stage_input, ctx)
    # CPU-bound stage code runs off the event loop; the execution stays busy meanwhile. Its input
    # and output pass through a box that is emptied: neither the executor's work item nor the
    # futures keep a slice's records alive after the call (see _run_part).
    box: list[Any] = [stage_input]
    await asyncio.to_thread(_boxed, function, box, ctx)
    return box.pop()


def _boxed(function: Callable[[Any, StageContext], Any], box: list[Any], ctx: StageContext) -> None:
    box.append(function(box.pop(), ctx))


#: A part's records go through a stage with a fast record path in slices of this many: a Lambda's
#: working set is one slice's records, not the whole part's (a part holds up to 10,000). A stage may
#: take another size (its RecordWire's ``slice_records``: Store, whose calls are its transactions).
SLICE_RECORDS = 2_000


async def _run_part(stage: StageFunction, data: StageData, previous: PreviousOutput, part: InputPart,
                    context: Callable[[int | None], StageContext]) -> dict[str, Any]:
    lines = await previous.lines_of(part)
    ctx = context(part.index)
    sink = data.part_output(part.index)
    if stage.wire is None:
        # A stage without a record codec gets its part as one input (its model validates the whole list).
        with paused_gc():  # a part's records are many small objects made and dropped together: see paused_gc
            stage_input, input_errors = parse_part_input(stage, previous.header, lines, previous.where(part))
            await sink.add(await _call(stage, stage_input, ctx), inputs=len(lines), input_errors=input_errors)
    else:
        # Records are independent of each other within a part (as parts are), so a part goes through
        # in slices: the same outputs, in the same order, with one slice's records alive at a time.
        start = 0
        size = stage.wire.slice_records or SLICE_RECORDS
        while True:
            # A slice's lines leave the part's list as it is taken: once handled they are freed
            # (unless its output hands them on), not kept to the part's end.
            chunk = lines[:size]
            del lines[:size]
            with paused_gc():
                stage_input, input_errors = parse_wire_input(stage.input_model, stage.wire.codec, previous.header,
                                                             chunk, previous.where(part))
                for error in input_errors:
                    error["position"] += start
                output = await _call(stage, stage_input, ctx, wire=True)
                await sink.add(output, inputs=len(chunk), input_errors=input_errors)
                # Gone before the collector resumes: it would walk every object made while it was
                # paused and is still alive (a slice's records, ~6 us a candidate).
                del stage_input, output
            del chunk
            if not lines:
                break
            start += size
    summary = await sink.close(ctx)
    await data.write_summary(summary)
    return summary


def make_stage_handler(
    function: str,
    *,
    objects: ObjectStore,
    candidates: CandidateStore | None = None,
    clock: Clock | None = None,
    config: Mapping[str, Any] | None = None,
) -> Callable[[Any, Any], Awaitable[dict[str, Any]]]:
    """A Lambda-style ``async handler(event, context)`` bound to local ports."""
    stage = load_stage_function(function)

    async def handler(event: Any, context: Any) -> dict[str, Any]:
        return await invoke_stage(
            event, context, function=stage, objects=objects, candidates=candidates, clock=clock, config=config
        )

    handler.__name__ = f"handler[{function}]"
    return handler
