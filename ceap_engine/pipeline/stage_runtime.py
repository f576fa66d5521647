"""The stage runtime: the same entry point locally and in AWS Lambda.

For one invocation it reads the previous stage's output from
``executions/{executionId}/{previousStage}/output.json``, validates it with the
stage function's input model, calls the function, writes
``executions/{executionId}/{currentStage}/output.json`` and returns a small
pointer (``{"stage", "outputKey", "counts"}``) to the state machine.

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

from ceap_engine.errors import CeapError, ObjectNotFound
from ceap_engine.pipeline.layout import execution_key
from ceap_engine.pipeline.stage import PermanentError, StageContext
from ceap_engine.ports import CandidateStore, Clock, ObjectStore
from ceap_engine.runtime.clock import RealClock
from ceap_engine.storage.objects import write_json

__all__ = ["StageFunction", "StageRequest", "invoke_stage", "load_stage_function", "make_stage_handler"]


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

    def parse_input(self, document: Any, what: str) -> BaseModel:
        """Validate ``document`` with the input model; a failure is a PermanentError naming the fields."""
        try:
            return self.input_model.model_validate(document)
        except ValidationError as exc:
            raise PermanentError(f"{what} is not a valid {self.input_model.__name__}: {describe_errors(exc)}") from None


def describe_errors(exc: ValidationError, limit: int = 5) -> str:
    """pydantic errors as one readable line: ``dateRange.end: ...; source: Field required``."""
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"{where}: {err.get('msg')}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


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
    return StageFunction(path, function, input_model, output_model, inspect.iscoroutinefunction(function))


@dataclass(frozen=True)
class StageRequest:
    """The Payload the state machine sends a stage."""

    execution_id: str
    current_stage: str
    previous_stage: str | None
    bucket: str
    input: Any = None

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
        return cls(event["executionId"], event["currentStage"], previous, event["workflowBucket"], event.get("input"))


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
    """Run one stage for one state-machine request; return the pointer result."""
    stage = function if isinstance(function, StageFunction) else load_stage_function(function)
    request = StageRequest.from_event(event)
    context = StageContext(
        execution_id=request.execution_id,
        stage=request.current_stage,
        bucket=request.bucket,
        objects=objects,
        candidates=candidates,
        previous_stage=request.previous_stage,
        clock=clock or RealClock(),
        config=dict(config or {}),
        lambda_context=lambda_context,
    )
    if request.previous_stage is None:
        if request.input is None:
            raise PermanentError(f"{request.current_stage} is the first stage and needs the execution input in the request's 'input'")
        stage_input = stage.parse_input(request.input, "the execution input")
    else:
        key = execution_key(request.execution_id, request.previous_stage)
        try:
            raw = await objects.get(request.bucket, key)
        except ObjectNotFound:
            raise PermanentError(
                f"the output of the previous stage {request.previous_stage} is missing at s3://{request.bucket}/{key}: "
                f"{request.current_stage} can only run after {request.previous_stage} succeeded in execution {request.execution_id}"
            ) from None
        try:
            document = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PermanentError(f"the output of {request.previous_stage} at s3://{request.bucket}/{key} is not JSON: {exc}") from None
        stage_input = stage.parse_input(document, f"the output of {request.previous_stage} at s3://{request.bucket}/{key}")

    if stage.is_async:
        output = await stage.function(stage_input, context)
    else:
        # CPU-bound stage code runs off the event loop; the execution stays busy meanwhile.
        output = await asyncio.to_thread(stage.function, stage_input, context)

    document = output.model_dump(mode="json", by_alias=True) if isinstance(output, BaseModel) else output
    if not isinstance(document, Mapping):
        raise TypeError(f"stage {stage.path} returned {type(output).__name__}; it must return its pydantic output model")
    out_key = execution_key(request.execution_id, request.current_stage)
    await write_json(objects, request.bucket, out_key, document)
    counts = document.get("metrics")
    return {"stage": request.current_stage, "outputKey": out_key, "counts": counts if isinstance(counts, Mapping) else {}}


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
