"""A local TestState: run one state as AWS's TestState API does, and answer in its shape.

A request has the API's fields (``definition`` of one state, or of a whole
machine with ``stateName``; ``input``, ``inspectionLevel``, ``revealSecrets``,
``variables``, ``context``, ``mock`` and ``stateConfiguration``). The answer
has ``status`` (SUCCEEDED, FAILED, RETRIABLE or CAUGHT_ERROR), ``output``,
``error``, ``cause``, ``nextState`` and, at DEBUG and TRACE, ``inspectionData``
with the value after each step of the state's data flow. JSON values are JSON
text, as the API sends them. A request AWS would refuse raises
:class:`TestStateRejected` with AWS's code and message.

Example::

    answer = await run_test_state(TestStateRequest.from_api({
        "definition": {"Type": "Pass", "Result": {"ok": True}, "End": True},
        "input": {"orderId": 7},
        "inspectionLevel": "DEBUG",
    }))
    answer["status"], json.loads(answer["output"])   # ('SUCCEEDED', {'ok': True})

The run uses a virtual clock: a Task's Retry is reported (RETRIABLE, with the
backoff AWS would wait), never waited for.
"""

from __future__ import annotations

import gzip
import json
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ceap_engine.asl.definition import compile_definition, validate_definition
from ceap_engine.asl.flow import ABSENT
from ceap_engine.asl.history import iso_timestamp
from ceap_engine.asl.interpreter import EXPRESS, Engine, Execution, Frame
from ceap_engine.asl.payload import RuntimeFailure
from ceap_engine.asl.retry import decide, find_catcher
from ceap_engine.asl.states import MapState, ParallelState, State, TaskState, Terminal
from ceap_engine.errors import CeapError
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.runtime.tasks import TaskRunners, parse_resource

__all__ = [
    "ServiceModels",
    "TestStateRejected",
    "TestStateRequest",
    "run_test_state",
]

INSPECTION_LEVELS = ("INFO", "DEBUG", "TRACE")
FIELD_VALIDATION_MODES = ("STRICT", "PRESENT", "NONE")
#: The name AWS gives the state under test in ``$$.State.Name``.
TESTED_STATE_NAME = "StateName"
_MOCK_FORBIDDEN = ("Pass", "Fail", "Succeed", "Choice", "Wait")
_CONTEXT_FIELDS = ("Execution", "State", "StateMachine", "Task")
_EXECUTION_FIELDS = ("Id", "Input", "Name", "RoleArn", "StartTime", "RedriveCount", "RedriveTime")
_STATE_FIELDS = ("EnteredTime", "Name", "RetryCount")
_STATE_MACHINE_FIELDS = ("Id", "Name")


class TestStateRejected(CeapError):
    """A request AWS's TestState API refuses (``ValidationException`` or ``InvalidDefinition``)."""

    __test__ = False  # not a pytest test class

    def __init__(self, message: str, code: str = "ValidationException") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    def to_json(self) -> dict[str, Any]:
        return {"exception": {"code": self.code, "message": self.message}}


def _json_value(value: Any, what: str) -> Any:
    """A request field that the API sends as JSON text (accepted parsed too)."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise TestStateRejected(f"The {what} is not valid JSON: {exc.msg}") from None
    return value


@dataclass
class TestStateRequest:
    """The TestState API's request. Build it from the API's JSON with :meth:`from_api`."""

    __test__ = False  # not a pytest test class

    definition: dict[str, Any]
    input: Any = field(default_factory=dict)
    state_name: str | None = None
    inspection_level: str = "INFO"
    reveal_secrets: bool = False
    variables: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    mock: dict[str, Any] | None = None
    state_configuration: dict[str, Any] = field(default_factory=dict)
    role_arn: str | None = None

    @classmethod
    def from_api(cls, request: dict[str, Any]) -> TestStateRequest:
        """Read a request in the API's shape (``definition``, ``input``... as JSON text or parsed)."""
        if not isinstance(request, dict):
            raise TestStateRejected("The request must be a JSON object with at least 'definition'")
        known = {"definition", "input", "stateName", "inspectionLevel", "revealSecrets", "variables", "context",
                 "mock", "stateConfiguration", "roleArn"}
        unknown = sorted(set(request) - known)
        if unknown:
            raise TestStateRejected(f"Unknown request field(s) {', '.join(unknown)}; known fields: {', '.join(sorted(known))}")
        if "definition" not in request:
            raise TestStateRejected("The request needs a 'definition' (one state, or a state machine with 'stateName')")
        definition = _json_value(request["definition"], "definition")
        if not isinstance(definition, dict):
            raise TestStateRejected("The definition must be a JSON object (one state, or a state machine)")
        level = request.get("inspectionLevel", "INFO")
        if level not in INSPECTION_LEVELS:
            raise TestStateRejected(f"inspectionLevel must be one of {', '.join(INSPECTION_LEVELS)}, got {level!r}")
        variables = _json_value(request["variables"], "variables") if "variables" in request else None
        if variables is not None and not isinstance(variables, dict):
            raise TestStateRejected("variables must be a JSON object of variable names and values")
        context = _json_value(request["context"], "context") if "context" in request else None
        return cls(
            definition=definition,
            input=_json_value(request["input"], "input") if "input" in request else {},
            state_name=request.get("stateName"),
            inspection_level=level,
            reveal_secrets=bool(request.get("revealSecrets", False)),
            variables=variables,
            context=context,
            mock=request.get("mock"),
            state_configuration=dict(request.get("stateConfiguration") or {}),
            role_arn=request.get("roleArn"),
        )


# -- mock result schema validation ---------------------------------------------------


class ServiceModels:
    """AWS API output shapes, read from botocore-format service models (``service-2.json[.gz]``).

    Used to check a mocked Task result as AWS does (``mock.fieldValidationMode``).
    :meth:`from_botocore` finds the models of an installed botocore (the ``aws``
    extra) without importing it; without models, results are not checked.
    """

    _ALIASES: ClassVar[dict[str, str]] = {"sfn": "stepfunctions", "states": "stepfunctions", "eventbridge": "events",
                "cloudwatchlogs": "logs", "elasticloadbalancingv2": "elbv2"}

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)
        self._models: dict[str, dict[str, Any] | None] = {}

    @classmethod
    def from_botocore(cls) -> ServiceModels | None:
        import importlib.util

        spec = importlib.util.find_spec("botocore")
        if spec is None or spec.origin is None:
            return None
        data = Path(spec.origin).parent / "data"
        return cls(data) if data.is_dir() else None

    def _model(self, service: str) -> dict[str, Any] | None:
        if service in self._models:
            return self._models[service]
        model = None
        folder = self.directory / service
        if folder.is_dir():
            versions = sorted(p for p in folder.iterdir() if p.is_dir())
            for version in reversed(versions):
                for name in ("service-2.json", "service-2.json.gz"):
                    path = version / name
                    if path.is_file():
                        raw = path.read_bytes()
                        model = json.loads(gzip.decompress(raw) if name.endswith(".gz") else raw)
                        break
                if model is not None:
                    break
        self._models[service] = model
        return model

    def output_shape(self, service: str, operation: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(the operation's output shape, all shapes of the service), or None if unknown."""
        model = self._model(self._ALIASES.get(service, service))
        if model is None:
            return None
        op = model.get("operations", {}).get(operation)
        if op is None or "output" not in op:
            return None
        shapes = model.get("shapes", {})
        return shapes.get(op["output"]["shape"], {}), shapes


def _api_of(resource: str) -> tuple[str, str] | None:
    """(service, operation) of a Task resource whose result is the API's output, else None."""
    info = parse_resource(resource)
    if info is None or info.kind != "service" or info.pattern:
        return None
    service, action = info.resource_type, info.resource
    if service.startswith("aws-sdk:"):
        service = service.split(":", 1)[1]
    return service, action[:1].upper() + action[1:]


class _SchemaError(Exception):
    pass


def _check_shape(value: Any, shape: dict[str, Any], shapes: dict[str, Any], name: str, strict: bool,
                 skip: frozenset[str]) -> None:
    kind = shape.get("type")
    if kind == "structure":
        if not isinstance(value, dict):
            raise _SchemaError(f"Field '{name}' must be an object")
        # Step Functions names every member in PascalCase (botocore keeps some in camelCase).
        if strict:
            for required in shape.get("required", []):
                if _pascal(required) not in value:
                    raise _SchemaError(f"Required field '{_pascal(required)}' is missing")
        for raw_member, ref in shape.get("members", {}).items():
            member = _pascal(raw_member)
            if member in value and member not in skip:
                _check_shape(value[member], shapes.get(ref["shape"], {}), shapes, member, strict, skip)
    elif kind == "list":
        if not isinstance(value, list):
            raise _SchemaError(f"Field '{name}' must be an array")
        member = shapes.get(shape.get("member", {}).get("shape", ""), {})
        for item in value:
            _check_shape(item, member, shapes, name, strict, skip)
    elif kind == "map":
        if not isinstance(value, dict):
            raise _SchemaError(f"Field '{name}' must be an object")
        item_shape = shapes.get(shape.get("value", {}).get("shape", ""), {})
        for item in value.values():
            _check_shape(item, item_shape, shapes, name, strict, skip)
    elif kind in ("string", "blob"):
        if not isinstance(value, str):
            raise _SchemaError(f"Field '{name}' must be a string")
        if "enum" in shape and value not in shape["enum"]:
            raise _SchemaError(f"Field '{name}' is not an expected value")
        if "min" in shape and len(value) < shape["min"]:
            raise _SchemaError(f"Field '{name}' is smaller than the minimum length")
        if "max" in shape and len(value) > shape["max"]:
            raise _SchemaError(f"Field '{name}' exceeds the maximum length")
    elif kind in ("integer", "long", "float", "double"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _SchemaError(f"Field '{name}' must be a number")
        if "min" in shape and value < shape["min"]:
            raise _SchemaError(f"Field '{name}' is less than the minimum value")
        if "max" in shape and value > shape["max"]:
            raise _SchemaError(f"Field '{name}' exceeds the maximum value")
    elif kind == "boolean" and not isinstance(value, bool):
        raise _SchemaError(f"Field '{name}' must be a boolean")
    elif kind == "timestamp" and not isinstance(value, str):
        raise _SchemaError(f"Field '{name}' must be a string")


def _pascal(name: str) -> str:
    return name[:1].upper() + name[1:]


def validate_mock_result(resource: str, result: Any, mode: str, models: ServiceModels | None) -> None:
    """Check a mocked Task result against the API's output shape (STRICT also needs required fields)."""
    if mode == "NONE" or models is None or not isinstance(result, dict):
        return
    api = _api_of(resource)
    if api is None:
        return
    found = models.output_shape(*api)
    if found is None:
        return
    shape, shapes = found
    # The Lambda integration returns the function's JSON payload, not the API's blob.
    skip = frozenset({"Payload"}) if api == ("lambda", "Invoke") else frozenset()
    try:
        _check_shape(result, shape, shapes, "", mode == "STRICT", skip)
    except _SchemaError as exc:
        raise TestStateRejected(f"Mock result schema validation error: {exc}") from None


# -- the run ------------------------------------------------------------------------------


class _TestFrame(Frame):
    """A frame whose context object is the request's (or TestState's generated one)."""

    __slots__ = ("base_context",)
    #: The request's context object replaces the execution's: no shortcut to it.
    context_is_execution = False

    def context(self) -> dict[str, Any]:
        ctx = self.base_context
        if self.map_item is not None:
            ctx = dict(ctx)
            ctx["Map"] = {"Item": {"Index": self.map_item[0], "Value": self.map_item[1]}}
        return ctx


def _find_state(machine: dict[str, Any], name: str, language: str) -> tuple[dict[str, Any], str] | None:
    language = machine.get("QueryLanguage", language)
    states = machine.get("States")
    if not isinstance(states, dict):
        return None
    if name in states and isinstance(states[name], dict):
        return states[name], language
    for state in states.values():
        if not isinstance(state, dict):
            continue
        inner = state.get("QueryLanguage", language)
        for branch in state.get("Branches") or []:
            found = _find_state(branch, name, inner)
            if found:
                return found
        for key in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(key), dict):
                found = _find_state(state[key], name, inner)
                if found:
                    return found
    return None


def _validate_context(context: Any, state: dict[str, Any]) -> None:
    def bad(message: str) -> TestStateRejected:
        return TestStateRejected(f"Invalid Context object provided: {message}")

    if not isinstance(context, dict):
        raise bad("the context must be a JSON object")
    for key in context:
        if key == "Map":
            raise bad("'Map' field is not supported when mocking a Context object")
        if key not in _CONTEXT_FIELDS:
            raise bad(f"Field '{key}' is not allowed")
    for key, allowed in (("Execution", _EXECUTION_FIELDS), ("State", _STATE_FIELDS), ("StateMachine", _STATE_MACHINE_FIELDS)):
        part = context.get(key)
        if part is None:
            continue
        if not isinstance(part, dict):
            raise bad(f"{key} must be an object")
        for sub in part:
            if sub not in allowed:
                raise bad(f"Field '{sub}' is not allowed")
        for sub in ("Id", "Name", "RoleArn", "StartTime", "EnteredTime"):
            if sub in part and not isinstance(part[sub], str):
                raise bad(f"{key}.{sub} must be a string")
    if "Task" in context:
        info = parse_resource(state.get("Resource", "")) if state.get("Type") == "Task" else None
        if info is None or info.pattern not in ("sync", "sync:2", "waitForTaskToken"):
            raise bad("Context object contains 'Task' when state is not a Task state with a '.sync' or "
                      "'.waitForTaskToken' service integration pattern")


class _Answer(Exception):
    """Ends a test run with its answer (status, output, error...)."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(answer.get("status"))
        self.answer = answer


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _StateTest:
    def __init__(self, request: TestStateRequest, state: State, frame: _TestFrame, raw: Any,
                 mock: dict[str, Any] | None, mock_result: Any, models: ServiceModels | None) -> None:
        self.request = request
        self.state = state
        self.frame = frame
        self.raw = raw
        self.mock = mock
        self.mock_result = mock_result
        self.models = models
        self.inspect = request.inspection_level != "INFO"
        self.data: dict[str, Any] = {}
        self.config = request.state_configuration

    def record(self, key: str, value: Any) -> None:
        if self.inspect:
            self.data[key] = value

    # -- answers
    def answer(self, status: str, **fields: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("output", "error", "cause", "nextState"):
            value = fields.get(key, ABSENT)
            if value is ABSENT or (value is None and key != "output"):
                continue
            out[key] = _text(value) if key == "output" else value
        out["status"] = status
        variables = self.request.variables
        assigned = fields.get("assigned")
        if assigned:
            variables = {**(variables or {}), **assigned}
        if variables:
            self.record("variables", variables)
        if self.inspect and self.data:
            out["inspectionData"] = {
                k: (v if k in ("errorDetails", "maxConcurrency", "toleratedFailureCount", "toleratedFailurePercentage")
                    else _text(v))
                for k, v in self.data.items()
            }
        return out

    def failed(self, err: Exception) -> dict[str, Any]:
        if isinstance(err, RuntimeFailure):
            return self.answer("FAILED", error=err.error, cause=err.message)
        message = getattr(err, "message", None)
        if message is not None and getattr(err, "error", None) == "States.QueryEvaluationError":
            return self.answer("FAILED", error=err.error, cause=message)  # type: ignore[attr-defined]
        return self.answer("FAILED", error=err.error, cause=err.cause)  # type: ignore[attr-defined]

    # -- error handling (Task, Map, Parallel): what a Retry and a Catch would do
    def handle_error(self, err: Exception) -> dict[str, Any]:
        from ceap_engine.errors import StatesError

        if isinstance(err, (RuntimeFailure, Terminal)) or not isinstance(err, StatesError):
            return self.failed(err)
        state = self.state
        details: dict[str, Any] = {}
        retriers = getattr(state, "retriers", ())
        if retriers:
            count = int(self.config.get("retrierRetryCount", 0) or 0)
            decision = decide(retriers, [count] * len(retriers), err.error, self.frame.rng)
            if decision.retrier_index is not None:
                details["retryIndex"] = decision.retrier_index
            if decision.retry:
                delay = decision.delay
                details["retryBackoffIntervalSeconds"] = int(delay) if float(delay).is_integer() else delay
                self.record("errorDetails", details)
                return self.answer("RETRIABLE", error=err.error, cause=err.cause)
        clause = None
        catchers = getattr(state, "catchers", ())
        if catchers:
            plain = find_catcher(tuple(c.catcher for c in catchers), err.error)
            clause = None if plain is None else catchers[plain.index]
        if clause is None:
            if details:
                self.record("errorDetails", details)
            return self.answer("FAILED", error=err.error, cause=err.cause)
        details["catchIndex"] = clause.catcher.index
        self.record("errorDetails", details)
        output, target = state.caught(self.frame, self.raw, clause, err)  # type: ignore[attr-defined]
        return self.answer("CAUGHT_ERROR", output=output, error=err.error, cause=err.cause, nextState=target,
                           assigned=self.frame.pending_assign)

    # -- per state type
    async def run(self) -> dict[str, Any]:
        kind = self.state.type
        self.record("input", self.raw)
        try:
            return await getattr(self, f"run_{kind.lower()}")()
        except _Answer as done:
            return done.answer

    def _finish_success(self, output: Any, next_state: str | None) -> dict[str, Any]:
        return self.answer("SUCCEEDED", output=output, nextState=next_state, assigned=self.frame.pending_assign)

    async def run_pass(self) -> dict[str, Any]:
        state, frame, raw, flow = self.state, self.frame, self.raw, self.state.flow
        try:
            if state.jsonata:
                return self._finish_success(*state.finish(frame, raw, raw))
            if state.has_result:  # type: ignore[attr-defined]
                result = state.result  # type: ignore[attr-defined]
                self.record("result", result)
            else:
                effective = flow.effective_input(frame, raw)
                self.record("afterInputPath", effective)
                result = flow.arguments(frame, effective)
                self.record("afterParameters", result)
            return self._finish_success(*self._jsonpath_output(result))
        except Exception as err:  # noqa: BLE001 - any failure of the state is its answer
            return self._state_failure(err)

    def _jsonpath_output(self, result: Any) -> tuple[Any, str | None]:
        state, frame, flow = self.state, self.frame, self.state.flow
        selected = flow.select(frame, result)  # type: ignore[attr-defined]
        self.record("afterResultSelector", selected)
        if state.assign is not None:
            frame.pending_assign = flow.assign(frame, self.raw, selected, state.assign)
        placed = flow.place(self.raw, selected)  # type: ignore[attr-defined]
        self.record("afterResultPath", placed)
        return flow.filter_output(frame, placed), state.next

    def _state_failure(self, err: Exception) -> dict[str, Any]:
        from ceap_engine.errors import StatesError

        if isinstance(err, (RuntimeFailure, StatesError)):
            return self.failed(err)
        raise err

    async def run_succeed(self) -> dict[str, Any]:
        try:
            effective = self._effective()
            return self.answer("SUCCEEDED", output=self.state.flow.filter_output(self.frame, effective))
        except Exception as err:  # noqa: BLE001
            return self._state_failure(err)

    def _effective(self) -> Any:
        effective = self.state.flow.effective_input(self.frame, self.raw)
        if not self.state.jsonata:
            self.record("afterInputPath", effective)
        return effective

    async def run_fail(self) -> dict[str, Any]:
        try:
            if not self.state.jsonata:
                self.record("afterInputPath", self.state.flow.effective_input(self.frame, self.raw))
            await self.state.run(self.frame, self.raw)
        except Exception as err:  # noqa: BLE001
            return self._state_failure(err)
        raise AssertionError("a Fail state always fails")  # pragma: no cover

    async def run_choice(self) -> dict[str, Any]:
        try:
            self._effective()
            output, target = await self.state.run(self.frame, self.raw)
            return self._finish_success(output, target)
        except Exception as err:  # noqa: BLE001
            return self._state_failure(err)

    async def run_wait(self) -> dict[str, Any]:
        state = self.state
        try:
            effective = self._effective()
            state.wait_seconds(self.frame, effective)  # type: ignore[attr-defined]  # checked, not waited for
            flow = state.flow
            if state.assign is not None:
                self.frame.pending_assign = flow.assign(self.frame, self.raw, effective, state.assign)
            return self._finish_success(flow.filter_output(self.frame, effective), state.next)
        except Exception as err:  # noqa: BLE001
            return self._state_failure(err)

    async def run_task(self) -> dict[str, Any]:
        state: TaskState = self.state  # type: ignore[assignment]
        frame, raw, flow = self.frame, self.raw, state.flow
        try:
            effective = flow.effective_input(frame, raw)
            if not state.jsonata:
                self.record("afterInputPath", effective)
            parameters = flow.arguments(frame, effective)
            self.record("afterArguments" if state.jsonata else "afterParameters", parameters)
        except Exception as err:  # noqa: BLE001
            return self._state_failure(err)
        try:
            if self.mock is not None:
                result = self._mocked()
            else:
                timeout = state._seconds(frame, effective, state.timeout_seconds, state.timeout_path, "TimeoutSecondsPath")
                heartbeat = state._seconds(frame, effective, state.heartbeat_seconds, state.heartbeat_path,
                                           "HeartbeatSecondsPath")
                result = await state.invoke(frame, parameters, timeout, heartbeat)
        except Exception as err:  # noqa: BLE001
            return self.handle_error(err)
        self.record("result", result)
        return self._result_output(result)

    def _mocked(self) -> Any:
        from ceap_engine.errors import StatesError

        mock = self.mock or {}
        if "errorOutput" in mock:
            error = mock["errorOutput"] or {}
            raise StatesError(error.get("error", "States.TaskFailed"), error.get("cause"))
        return self.mock_result

    def _result_output(self, result: Any) -> dict[str, Any]:
        state, frame = self.state, self.frame
        try:
            if state.jsonata:
                return self._finish_success(*state.finish(frame, self.raw, result))
            return self._finish_success(*self._jsonpath_output(result))
        except Exception as err:  # noqa: BLE001
            return self._state_failure(err)

    async def run_parallel(self) -> dict[str, Any]:
        state: ParallelState = self.state  # type: ignore[assignment]
        try:
            state.flow.arguments(self.frame, state.flow.effective_input(self.frame, self.raw))
            result = self._mocked()
        except Exception as err:  # noqa: BLE001
            return self.handle_error(err)
        return self._result_output(result)

    async def run_map(self) -> dict[str, Any]:
        state: MapState = self.state  # type: ignore[assignment]
        frame, raw, flow = self.frame, self.raw, state.flow
        try:
            effective = flow.effective_input(frame, raw)
            if not state.jsonata:
                self.record("afterInputPath", effective)
            reader_data = self.config.get("mapItemReaderData")
            if reader_data is not None:
                items = _json_value(reader_data, "mapItemReaderData")
                if not isinstance(items, list):
                    raise RuntimeFailure("The mapItemReaderData must be a JSON array of items")
            elif state.item_reader is not None:
                items = await state.item_reader.read(frame, raw, effective, flow)
            else:
                items = state.items(frame, raw, effective)
            if not state.jsonata and state.item_reader is None:
                self.record("afterItemsPath", items)
            if state.item_selector is not None:
                selected = [state.select(frame, raw, effective, i, item) for i, item in enumerate(items)]
                self.record("afterItemSelector", selected)
            else:
                selected = items
            concurrency = state.concurrency(frame, effective)
            self.record("maxConcurrency", concurrency)
            count, percentage = state.tolerance_settings(frame, effective)
            if count is not None:
                self.record("toleratedFailureCount", count)
            if percentage is not None:
                self.record("toleratedFailurePercentage", percentage)
        except Exception as err:  # noqa: BLE001
            return self._state_failure(err)
        try:
            failures = self.config.get("mapIterationFailureCount")
            if failures is not None and failures > len(selected):
                raise TestStateRejected(
                    "Map iteration failure count must be less than or equal to the number of Map iterations"
                )
            result = self._mocked()
            if failures and state.has_tolerance:
                allowed = state.tolerance(frame, effective, len(selected))
                if failures > allowed:
                    from ceap_engine.errors import StatesError

                    raise StatesError("States.ExceedToleratedFailureThreshold",
                                      "The specified tolerated failure threshold was exceeded")
        except TestStateRejected:
            raise
        except Exception as err:  # noqa: BLE001
            return self.handle_error(err)
        return self._result_output(result)


def _check_request(request: TestStateRequest) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Validate the request as AWS does; return (the wrapped machine, its state's name, the state)."""
    definition = request.definition
    if "States" in definition or "StartAt" in definition:
        problems = validate_definition(definition)
        if problems:
            raise TestStateRejected(
                f"Invalid State Machine Definition: '{', '.join(str(p) for p in problems)}'", "InvalidDefinition"
            )
        name = request.state_name or definition.get("StartAt")
        found = _find_state(definition, name, definition.get("QueryLanguage", "JSONPath")) if isinstance(name, str) else None
        if found is None:
            raise TestStateRejected("State not found in definition")
        raw_state, language = found
    else:
        if request.state_name is not None:
            raise TestStateRejected("stateName can only be used with a state machine definition (with 'States')")
        raw_state, language = definition, definition.get("QueryLanguage", "JSONPath")
    state_copy = dict(raw_state)
    if language == "JSONata":
        state_copy.setdefault("QueryLanguage", "JSONata")
    machine = {"StartAt": TESTED_STATE_NAME, "States": {TESTED_STATE_NAME: state_copy}}
    problems = validate_definition(machine, transitions=False)
    if problems:
        raise TestStateRejected(
            f"Invalid State Machine Definition: '{', '.join(str(p) for p in problems)}'", "InvalidDefinition"
        )
    return machine, TESTED_STATE_NAME, state_copy


def _check_mock(request: TestStateRequest, state: dict[str, Any], models: ServiceModels | None) -> Any:
    """Validate ``mock`` and ``stateConfiguration`` against the state; return the parsed mock result."""
    kind = state.get("Type")
    mock = request.mock
    config = request.state_configuration
    if mock is not None:
        if not isinstance(mock, dict):
            raise TestStateRejected("mock must be an object with 'result' or 'errorOutput'")
        if "result" in mock and "errorOutput" in mock:
            raise TestStateRejected("A test mock should have only one of the following fields: [result, errorOutput].")
        if request.reveal_secrets:
            raise TestStateRejected("TestState does not support RevealSecrets when a mock is specified.")
        if kind in _MOCK_FORBIDDEN:
            raise TestStateRejected(f"State type '{kind}' is not supported when a mock is specified")
        mode = mock.get("fieldValidationMode", "STRICT")
        if mode not in FIELD_VALIDATION_MODES:
            raise TestStateRejected(f"fieldValidationMode must be one of {', '.join(FIELD_VALIDATION_MODES)}, got {mode!r}")
        if "result" not in mock and "errorOutput" not in mock:
            raise TestStateRejected("A test mock needs one of the following fields: [result, errorOutput].")
    if config.get("mapIterationFailureCount") is not None and mock is None:
        raise TestStateRejected("TestState does not support MapIterationFailureCount when a mock is not specified.")
    if mock is None and kind in ("Map", "Parallel"):
        raise TestStateRejected(
            "TestState API does not support Map or Parallel states. Supported state types include: "
            "[Task, Wait, Pass, Succeed, Fail, Choice]",
            "InvalidDefinition",
        )
    if kind == "Task" and mock is None and not request.role_arn:
        raise TestStateRejected("RoleArn must be specified when testing a Task state")
    if request.context is not None:
        _validate_context(request.context, state)
    if mock is None or "result" not in mock:
        return ABSENT
    try:
        result = json.loads(mock["result"]) if isinstance(mock["result"], str) else mock["result"]
    except json.JSONDecodeError:
        raise TestStateRejected("Mocked result must be valid JSON") from None
    if kind == "Parallel":
        if not isinstance(result, list):
            raise TestStateRejected("Mocked result must be an array.")
        if len(result) != len(state.get("Branches") or []):
            raise TestStateRejected("Mocked result must contain the same number of items as number of Parallel branches.")
    elif kind == "Map":
        if "ResultWriter" in state:
            if not isinstance(result, dict):
                raise TestStateRejected("Mocked result must be a JSON object.")
        elif not isinstance(result, list):
            raise TestStateRejected("Mocked result must be an array.")
    elif kind == "Task":
        validate_mock_result(state.get("Resource", ""), result, mock.get("fieldValidationMode", "STRICT"), models)
    return result


async def run_test_state(
    request: TestStateRequest,
    *,
    runners: TaskRunners | None = None,
    models: ServiceModels | None = None,
    clock: VirtualClock | None = None,
    seed: int | None = None,
    region: str = "us-east-1",
    account: str = "123456789012",
) -> dict[str, Any]:
    """Test one state; return the TestState API's answer, or raise :class:`TestStateRejected`.

    ``runners`` serve a Task without a mock (Lambda handlers registered
    locally); ``models`` check mocked results (``mock.fieldValidationMode``).
    """
    machine, name, raw_state = _check_request(request)
    mock_result = _check_mock(request, raw_state, models)
    compiled = compile_definition(machine)
    state = compiled.states[name]
    rng = random.Random(seed)
    engine = Engine(clock=clock or VirtualClock(), runners=runners or TaskRunners(), seed=seed, region=region,
                    account=account, role_arn=request.role_arn or "")
    machine_name = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    execution_name = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    execution = Execution(engine, compiled, request.input, name=execution_name, state_machine_name=machine_name,
                          input_text=None, execution_type=EXPRESS)
    activity = engine.clock.activity()
    with activity:
        frame = _TestFrame(execution, None, activity, 0)
        frame.state = state
        frame.entered_time = engine.clock.time()
        frame.retry_count = int(request.state_configuration.get("retrierRetryCount", 0) or 0)
        execution.history.add("ExecutionStarted", 0, {"input": request.input, "roleArn": request.role_arn})
        frame.entered_event = frame.event(state.entered_type, {"input": request.input, "name": state.name})
        if request.variables:
            frame.variables.update(request.variables)
        if request.context is not None:
            frame.base_context = request.context
        else:
            state_ctx: dict[str, Any] = {"Name": TESTED_STATE_NAME, "EnteredTime": iso_timestamp(frame.entered_time)}
            if state.has_retry_count:
                state_ctx["RetryCount"] = frame.retry_count
            frame.base_context = {
                "Execution": {"Id": execution.arn, "Input": request.input, "Name": execution_name,
                              "RoleArn": request.role_arn, "StartTime": iso_timestamp(execution.start_time)},
                "StateMachine": {"Id": execution.state_machine_arn, "Name": machine_name},
                "State": state_ctx,
            }
        test = _StateTest(request, state, frame, request.input, request.mock, mock_result, models)
        return await test.run()
