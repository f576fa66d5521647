"""A TestState request: the API's fields, checked the way AWS checks them before any run.

:class:`TestStateRequest` reads the API's JSON; :func:`check_request` and :func:`check_mock`
refuse what AWS would refuse, with AWS's code and message (:class:`TestStateRejected`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ceap_engine.asl.definition import validate_definition
from ceap_engine.asl.flow import ABSENT
from ceap_engine.errors import TestStateRejected
from ceap_engine.runtime.tasks import parse_resource

from .mock_results import ServiceModels, validate_mock_result

__all__ = [
    "TESTED_STATE_NAME",
    "TestStateRejected",
    "TestStateRequest",
    "check_mock",
    "check_request",
    "json_value",
    "validate_context",
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


def json_value(value: Any, what: str) -> Any:
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
        definition = json_value(request["definition"], "definition")
        if not isinstance(definition, dict):
            raise TestStateRejected("The definition must be a JSON object (one state, or a state machine)")
        level = request.get("inspectionLevel", "INFO")
        if level not in INSPECTION_LEVELS:
            raise TestStateRejected(f"inspectionLevel must be one of {', '.join(INSPECTION_LEVELS)}, got {level!r}")
        variables = json_value(request["variables"], "variables") if "variables" in request else None
        if variables is not None and not isinstance(variables, dict):
            raise TestStateRejected("variables must be a JSON object of variable names and values")
        context = json_value(request["context"], "context") if "context" in request else None
        return cls(
            definition=definition,
            input=json_value(request["input"], "input") if "input" in request else {},
            state_name=request.get("stateName"),
            inspection_level=level,
            reveal_secrets=bool(request.get("revealSecrets", False)),
            variables=variables,
            context=context,
            mock=request.get("mock"),
            state_configuration=dict(request.get("stateConfiguration") or {}),
            role_arn=request.get("roleArn"),
        )


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


def check_request(request: TestStateRequest) -> tuple[dict[str, Any], str, dict[str, Any]]:
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


def check_mock(request: TestStateRequest, state: dict[str, Any], models: ServiceModels | None) -> Any:
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
        validate_context(request.context, state)
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


def validate_context(context: Any, state: dict[str, Any]) -> None:
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
