"""Validation of ASL definitions: every problem, with its JSON pointer, as AWS words it.

:func:`validate_definition` collects *every* problem (AWS words them
``SCHEMA_VALIDATION_FAILED: ... at /States/Score/Retry/0``) so a user fixes
them in one go.

Example::

    problems = validate_definition({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
    assert problems == []
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ceap_engine.runtime.tasks import parse_resource

from ..errors import Problem
from .choice import parse_timestamp, rule_problems
from .intrinsics import IntrinsicSyntaxError, is_intrinsic, parse_intrinsic
from .jsonpath import InvalidPath, compile_path, compile_reference_path
from .limits import definition_limits, too_deep
from .payload import ValuePath, template_problems
from .validation_rules import (
    credentials_problems,
    duplicate_state_names,
    exclusive_map_fields,
    fail_path_problems,
    integration_problems,
)

__all__ = ["FIELDS", "LANGUAGES", "STATE_TYPES", "validate_definition"]

STATE_TYPES = ("Task", "Wait", "Pass", "Succeed", "Fail", "Choice", "Parallel", "Map")
LANGUAGES = ("JSONPath", "JSONata")

_COMMON = {"Type", "Comment", "QueryLanguage"}
_FLOW = {"Next", "End"}
_PATHS_IO = {"InputPath", "OutputPath"}
_RETRY = {"Retry", "Catch"}

#: Fields each state type accepts, by query language.
FIELDS: dict[str, dict[str, set[str]]] = {
    "Pass": {
        "JSONPath": _COMMON | _FLOW | _PATHS_IO | {"Result", "ResultPath", "Parameters", "Assign"},
        "JSONata": _COMMON | _FLOW | {"Output", "Assign"},
    },
    "Task": {
        "JSONPath": _COMMON | _FLOW | _PATHS_IO | _RETRY | {
            "Resource", "Parameters", "ResultSelector", "ResultPath", "TimeoutSeconds", "TimeoutSecondsPath",
            "HeartbeatSeconds", "HeartbeatSecondsPath", "Credentials", "Assign",
        },
        "JSONata": _COMMON | _FLOW | _RETRY | {
            "Resource", "Arguments", "Output", "Assign", "TimeoutSeconds", "HeartbeatSeconds", "Credentials",
        },
    },
    "Choice": {
        "JSONPath": _COMMON | _PATHS_IO | {"Choices", "Default", "Assign"},
        "JSONata": _COMMON | {"Choices", "Default", "Output", "Assign"},
    },
    "Wait": {
        "JSONPath": _COMMON | _FLOW | _PATHS_IO | {"Seconds", "SecondsPath", "Timestamp", "TimestampPath", "Assign"},
        "JSONata": _COMMON | _FLOW | {"Seconds", "Timestamp", "Output", "Assign"},
    },
    "Succeed": {
        "JSONPath": _COMMON | _PATHS_IO,
        "JSONata": _COMMON | {"Output"},
    },
    "Fail": {
        "JSONPath": _COMMON | {"Error", "ErrorPath", "Cause", "CausePath"},
        "JSONata": _COMMON | {"Error", "Cause"},
    },
    "Parallel": {
        "JSONPath": _COMMON | _FLOW | _PATHS_IO | _RETRY | {"Branches", "Parameters", "ResultSelector", "ResultPath", "Assign"},
        "JSONata": _COMMON | _FLOW | _RETRY | {"Branches", "Arguments", "Output", "Assign"},
    },
    "Map": {
        "JSONPath": _COMMON | _FLOW | _PATHS_IO | _RETRY | {
            "ItemProcessor", "Iterator", "ItemsPath", "ItemSelector", "Parameters", "ItemReader", "ItemBatcher",
            "ResultWriter", "MaxConcurrency", "MaxConcurrencyPath", "ToleratedFailureCount",
            "ToleratedFailureCountPath", "ToleratedFailurePercentage", "ToleratedFailurePercentagePath", "Label",
            "ResultSelector", "ResultPath", "Assign",
        },
        "JSONata": _COMMON | _FLOW | _RETRY | {
            "ItemProcessor", "Items", "ItemSelector", "ItemReader", "ItemBatcher", "ResultWriter",
            "MaxConcurrency", "ToleratedFailureCount", "ToleratedFailurePercentage", "Label", "Output", "Assign",
        },
    },
}

_RETRIER_FIELDS = {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds", "JitterStrategy", "Comment"}
_CATCHER_FIELDS = {
    "JSONPath": {"ErrorEquals", "Next", "ResultPath", "Comment", "Assign"},
    "JSONata": {"ErrorEquals", "Next", "Output", "Comment", "Assign"},
}
_TOP_FIELDS = {"StartAt", "States", "Comment", "Version", "TimeoutSeconds", "QueryLanguage"}
_SUB_FIELDS = {"StartAt", "States", "Comment", "ProcessorConfig", "QueryLanguage"}
MAX_STATE_NAME = 80


class _Checker:
    def __init__(self, transitions: bool = True) -> None:
        self.problems: list[Problem] = []
        #: Check Next/End, transition targets and reachability (off for one state tested alone).
        self.transitions = transitions
        #: The top level's query language (only a JSONata top level forbids JSONPath states).
        self.top_language = "JSONPath"

    def add_all(self, found: list[tuple[str, str, str]]) -> None:
        for path, message, code in found:
            self.add(path, message, code)

    def add(self, path: str, message: str, code: str = "SCHEMA_VALIDATION_FAILED") -> None:
        self.problems.append(Problem(path, message, code))

    # -- helpers ------------------------------------------------------------
    def json_path(self, value: Any, at: str, field_name: str, nullable: bool = True) -> None:
        if value is None and nullable:
            return
        if not isinstance(value, str):
            self.add(at, f"The value for the field '{field_name}' must be a STRING that contains a JSONPath")
            return
        try:
            if value.startswith("$$"):
                compile_path("$" + value[2:])
            else:
                ValuePath(value)
        except (InvalidPath, ValueError) as exc:
            self.add(at, f"The value for the field '{field_name}' must be a valid JSONPath: {exc}")

    def reference_path(self, value: Any, at: str, field_name: str, variables: bool = True) -> None:
        if value is None:
            return
        if not isinstance(value, str):
            self.add(at, f"The value for the field '{field_name}' must be a STRING that contains a JSONPath")
            return
        try:
            if variables and value.startswith("$$"):
                compile_reference_path(value[1:])  # the context object: "$$.Execution.Input"
                return
            if variables and len(value) > 1 and value[1] not in ".[$":
                # "$name.field": a variable (every reference path but ResultPath may read one)
                name_end = next((i for i, ch in enumerate(value) if ch in ".[" and i > 0), len(value))
                compile_reference_path("$" + value[name_end:])
                return
            compile_reference_path(value)
        except (InvalidPath, ValueError) as exc:
            self.add(at, f"The value for the field '{field_name}' must be a valid Reference Path: {exc}")

    def path_or_intrinsic(self, value: Any, at: str, field_name: str) -> None:
        if isinstance(value, str) and is_intrinsic(value):
            try:
                parse_intrinsic(value)
            except IntrinsicSyntaxError as exc:
                self.add(at, f"The value for the field '{field_name}' must be a valid intrinsic function: {exc}")
            return
        self.json_path(value, at, field_name, nullable=False)

    def integer(self, value: Any, at: str, field_name: str, minimum: int | None = None, maximum: int | None = None) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.add(at, f"The value for the field '{field_name}' must be an INTEGER, got {json.dumps(value)}")
            return
        if minimum is not None and value < minimum:
            self.add(at, f"The value for the field '{field_name}' must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            self.add(at, f"The value for the field '{field_name}' must be <= {maximum}, got {value}")

    def number(self, value: Any, at: str, field_name: str, minimum: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.add(at, f"The value for the field '{field_name}' must be a NUMBER, got {json.dumps(value)}")
        elif value < minimum:
            self.add(at, f"The value for the field '{field_name}' must be >= {minimum}, got {value}")

    def jsonata_or(self, value: Any) -> bool:
        return isinstance(value, str) and value.startswith("{%") and value.endswith("%}")

    def jsonata_expr(self, value: Any, at: str, field_name: str) -> None:
        """A ``{% %}`` string must parse as JSONata."""
        if not self.jsonata_or(value):
            return
        try:
            from .jsonata_flow import compile_jsonata

            compile_jsonata(value)
        except Exception as exc:  # noqa: BLE001 - any parser error is a definition problem
            self.add(at, f"The value for the field '{field_name}' is not a valid JSONata expression: {exc}")

    def jsonata_template(self, node: Any, at: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                self.jsonata_template(v, f"{at}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                self.jsonata_template(v, f"{at}/{i}")
        else:
            self.jsonata_expr(node, at, at.rsplit("/", 1)[-1])

    # -- the machine ------------------------------------------------------
    def machine(self, m: Any, at: str, parent_language: str, top: bool) -> None:
        if not isinstance(m, dict):
            self.add(at or "/", "A state machine must be a JSON object with 'StartAt' and 'States'")
            return
        allowed = _TOP_FIELDS if top else _SUB_FIELDS
        for key in m:
            if key not in allowed:
                self.add(f"{at}/{key}" if at else f"/{key}", f"The field '{key}' is not supported by Step Functions")
        language = m.get("QueryLanguage", parent_language)
        if language not in LANGUAGES:
            self.add(f"{at}/QueryLanguage", f"The field 'QueryLanguage' should have one of these values: {list(LANGUAGES)}")
            language = parent_language
        if top:
            self.top_language = language
        if not top and self.top_language == "JSONata" and language == "JSONPath" and "QueryLanguage" in m:
            self.add(f"{at}/QueryLanguage", "A JSONata state machine cannot contain JSONPath states")
        if top and "TimeoutSeconds" in m:
            self.integer(m["TimeoutSeconds"], "/TimeoutSeconds", "TimeoutSeconds", 1, 99999999)
        if top and "Version" in m and m["Version"] != "1.0":
            self.add("/Version", "The field 'Version' should have the value '1.0'")
        states = m.get("States")
        start = m.get("StartAt")
        if not isinstance(states, dict) or not states:
            self.add(f"{at}/States", "The field 'States' must be a non-empty object of states")
            states = {}
        if not isinstance(start, str):
            self.add(f"{at}/StartAt", "The field 'StartAt' must be a STRING naming a state")
        elif states and start not in states:
            self.add(f"{at}/StartAt", f"Missing 'StartAt' target: {start}", "MISSING_TRANSITION_TARGET")
        for name, state in states.items():
            self.state(name, state, f"{at}/States/{name}", language, states)
        if isinstance(start, str) and start in states and self.transitions:
            self.graph(start, states, at)

    def graph(self, start: str, states: dict[str, Any], at: str) -> None:
        """Every state reachable from StartAt; some terminal state reachable."""
        seen: set[str] = set()
        stack = [start]
        terminal = False
        while stack:
            name = stack.pop()
            if name in seen or name not in states:
                continue
            seen.add(name)
            targets = list(_targets(states[name]))
            if _is_terminal(states[name]):
                terminal = True
            stack.extend(targets)
        for name in states:
            if name not in seen:
                self.add(f"{at}/States/{name}", f"State '{name}' is not reachable from StartAt", "UNREACHABLE_STATE")
        if not terminal:
            self.add(f"{at}/States", "No terminal state is reachable: add a state with \"End\": true, or a Succeed or Fail state",
                     "NO_TERMINAL_STATE")

    def state(self, name: str, s: Any, at: str, parent_language: str, siblings: dict[str, Any]) -> None:
        if len(name) > MAX_STATE_NAME or not name:
            self.add(at, f"State names must be 1-{MAX_STATE_NAME} characters long")
        if not isinstance(s, dict):
            self.add(at, "A state must be a JSON object")
            return
        kind = s.get("Type")
        if kind not in STATE_TYPES:
            self.add(f"{at}/Type", f"The field 'Type' should have one of these values: [{', '.join(STATE_TYPES)}]")
            return
        language = s.get("QueryLanguage", parent_language)
        if language not in LANGUAGES:
            self.add(f"{at}/QueryLanguage", f"The field 'QueryLanguage' should have one of these values: {list(LANGUAGES)}")
            return
        # Only a JSONata top level forbids JSONPath: a JSONPath machine may hold a JSONata
        # Map whose processor's states are JSONPath again (AWS accepts it).
        if self.top_language == "JSONata" and language == "JSONPath" and "QueryLanguage" in s:
            self.add(f"{at}/QueryLanguage", "A state cannot use JSONPath when its state machine uses JSONata")
        allowed = FIELDS[kind][language]
        other = FIELDS[kind]["JSONata" if language == "JSONPath" else "JSONPath"]
        for key in s:
            if key in allowed:
                continue
            if key in other:
                self.add(at, f"The field '{key}' is not supported for {language} states; "
                         + ("use 'Arguments'/'Output' (JSONata) instead" if language == "JSONata" else
                            "it needs \"QueryLanguage\": \"JSONata\""))
            elif key in _RETRY:
                self.add(f"{at}/{key}", f"The field '{key}' is only supported by Task, Parallel and Map states")
            else:
                self.add(at, f"The field '{key}' is not supported by Step Functions")
        # transitions
        if kind in ("Pass", "Task", "Wait", "Parallel", "Map"):
            has_next, has_end = "Next" in s, "End" in s
            if has_next and has_end:
                self.add(at, "The fields 'Next' and 'End' are mutually exclusive")
            elif not has_next and not has_end and self.transitions:
                self.add(at, "A state of type '%s' needs either 'Next' or \"End\": true" % kind)
            if has_end and s["End"] is not True:
                self.add(f"{at}/End", "The field 'End' must be true when present")
            if has_next:
                self.target(s["Next"], f"{at}/Next", siblings, "Next")
        # common paths
        if language == "JSONPath":
            for key in ("InputPath", "OutputPath"):
                if key in s:
                    self.json_path(s[key], f"{at}/{key}", key)
            if "ResultPath" in s:
                self.reference_path(s["ResultPath"], f"{at}/ResultPath", "ResultPath", variables=False)
            for key in ("Parameters", "ResultSelector", "ItemSelector", "Assign"):
                if key in s:
                    for where, msg in template_problems(s[key], f"{at}/{key}"):
                        self.add(where, msg)
            if "ResultSelector" in s and not isinstance(s["ResultSelector"], dict):
                self.add(f"{at}/ResultSelector", "The field 'ResultSelector' must be an object")
        else:
            for key in ("Arguments", "Output", "Assign", "Items", "ItemSelector"):
                if key in s:
                    self.jsonata_template(s[key], f"{at}/{key}")
        if "Assign" in s and not isinstance(s["Assign"], dict):
            self.add(f"{at}/Assign", "The field 'Assign' must be an object")
        getattr(self, f"state_{kind.lower()}")(s, at, language, siblings)
        if kind in ("Task", "Parallel", "Map"):
            self.retry_catch(s, at, language, siblings)

    def target(self, value: Any, at: str, siblings: dict[str, Any], field_name: str) -> None:
        if not self.transitions and isinstance(value, str):
            return
        if not isinstance(value, str):
            self.add(at, f"The field '{field_name}' must be a STRING naming a state")
        elif value not in siblings:
            self.add(at, f"Missing '{field_name}' target: {value}", "MISSING_TRANSITION_TARGET")

    # -- per type ---------------------------------------------------------
    def state_pass(self, s: dict, at: str, language: str, siblings: dict) -> None:
        pass

    def state_succeed(self, s: dict, at: str, language: str, siblings: dict) -> None:
        pass

    def state_fail(self, s: dict, at: str, language: str, siblings: dict) -> None:
        for lit, path in (("Error", "ErrorPath"), ("Cause", "CausePath")):
            if lit in s and path in s:
                self.add(at, f"The fields '{lit}' and '{path}' are mutually exclusive")
            if lit in s and not isinstance(s[lit], str):
                self.add(f"{at}/{lit}", f"The field '{lit}' must be a STRING")
            if lit in s and language == "JSONata":
                self.jsonata_expr(s[lit], f"{at}/{lit}", lit)
            if path in s:
                self.path_or_intrinsic(s[path], f"{at}/{path}", path)
                self.add_all(fail_path_problems(s[path], f"{at}/{path}", path))

    def state_choice(self, s: dict, at: str, language: str, siblings: dict) -> None:
        choices = s.get("Choices")
        if not isinstance(choices, list) or not choices:
            self.add(f"{at}/Choices", "The field 'Choices' must be a non-empty array of choice rules")
            choices = []
        for i, rule in enumerate(choices):
            where = f"{at}/Choices/{i}"
            if language == "JSONata":
                if not isinstance(rule, dict) or "Condition" not in rule:
                    self.add(where, "A JSONata choice rule needs a 'Condition'")
                    continue
                for key in rule:
                    if key not in ("Condition", "Next", "Comment", "Output", "Assign"):
                        self.add(where, f"The field '{key}' is not supported in a JSONata choice rule")
                cond = rule["Condition"]
                if isinstance(cond, str):
                    self.jsonata_expr(cond, f"{where}/Condition", "Condition")
                elif not isinstance(cond, bool):
                    self.add(f"{where}/Condition", "The field 'Condition' must be a JSONata expression or a boolean")
            else:
                for path, msg in rule_problems(rule, where, True):
                    self.add(path, msg)
            if isinstance(rule, dict) and "Next" in rule:
                self.target(rule["Next"], f"{where}/Next", siblings, "Next")
        if "Default" in s:
            self.target(s["Default"], f"{at}/Default", siblings, "Default")

    def state_wait(self, s: dict, at: str, language: str, siblings: dict) -> None:
        present = [k for k in ("Seconds", "SecondsPath", "Timestamp", "TimestampPath") if k in s]
        if len(present) != 1:
            self.add(at, "A Wait state needs exactly one of 'Seconds', 'SecondsPath', 'Timestamp' or 'TimestampPath'"
                     + (f" (found {', '.join(present)})" if present else ""))
        if "Seconds" in s:
            if language == "JSONata" and self.jsonata_or(s["Seconds"]):
                self.jsonata_expr(s["Seconds"], f"{at}/Seconds", "Seconds")
            else:
                self.integer(s["Seconds"], f"{at}/Seconds", "Seconds", 0, 99999999)
        if "Timestamp" in s:
            if language == "JSONata" and self.jsonata_or(s["Timestamp"]):
                self.jsonata_expr(s["Timestamp"], f"{at}/Timestamp", "Timestamp")
            elif parse_timestamp(s["Timestamp"]) is None:
                self.add(f"{at}/Timestamp", "The field 'Timestamp' must be an RFC 3339 timestamp such as 2026-01-01T00:00:00Z")
        for key in ("SecondsPath", "TimestampPath"):
            if key in s:
                self.json_path(s[key], f"{at}/{key}", key, nullable=False)

    def state_task(self, s: dict, at: str, language: str, siblings: dict) -> None:
        resource = s.get("Resource")
        if not isinstance(resource, str):
            self.add(f"{at}/Resource", "The field 'Resource' must be a STRING (an ARN)")
        elif parse_resource(resource) is None:
            self.add(f"{at}/Resource", f"The resource '{resource}' is not a valid Step Functions resource ARN")
        else:
            self.add_all(integration_problems(resource, f"{at}/Resource"))
        self.add_all(credentials_problems(s, at))
        for lit, path, name in (("TimeoutSeconds", "TimeoutSecondsPath", "timeout"),
                                ("HeartbeatSeconds", "HeartbeatSecondsPath", "heartbeat")):
            if lit in s and path in s:
                self.add(at, f"The fields '{lit}' and '{path}' are mutually exclusive")
            if lit in s:
                if language == "JSONata" and self.jsonata_or(s[lit]):
                    self.jsonata_expr(s[lit], f"{at}/{lit}", lit)
                else:
                    self.integer(s[lit], f"{at}/{lit}", lit, 1, 99999999)
            if path in s:
                self.reference_path(s[path], f"{at}/{path}", path)
        t, h = s.get("TimeoutSeconds"), s.get("HeartbeatSeconds")
        if isinstance(t, int) and isinstance(h, int) and not isinstance(t, bool) and h >= t:
            self.add(f"{at}/HeartbeatSeconds", "HeartbeatSeconds must be smaller than TimeoutSeconds")

    def state_parallel(self, s: dict, at: str, language: str, siblings: dict) -> None:
        branches = s.get("Branches")
        if not isinstance(branches, list) or not branches:
            self.add(f"{at}/Branches", "Value cannot be empty")
            return
        for i, branch in enumerate(branches):
            self.machine(branch, f"{at}/Branches/{i}", language, False)

    def state_map(self, s: dict, at: str, language: str, siblings: dict) -> None:
        processor_keys = [k for k in ("ItemProcessor", "Iterator") if k in s]
        if len(processor_keys) != 1:
            self.add(at, "A Map state needs exactly one of 'ItemProcessor' or 'Iterator'")
        for key in processor_keys:
            proc = s[key]
            where = f"{at}/{key}"
            self.machine(proc, where, language, False)
            config = proc.get("ProcessorConfig") if isinstance(proc, dict) else None
            if config is not None:
                if not isinstance(config, dict):
                    self.add(f"{where}/ProcessorConfig", "The field 'ProcessorConfig' must be an object")
                else:
                    for ck, cv in config.items():
                        if ck == "Mode" and cv not in ("INLINE", "DISTRIBUTED"):
                            self.add(f"{where}/ProcessorConfig/Mode", "The field 'Mode' should have one of these values: [INLINE, DISTRIBUTED]")
                        elif ck == "ExecutionType" and cv not in ("STANDARD", "EXPRESS"):
                            self.add(f"{where}/ProcessorConfig/ExecutionType", "The field 'ExecutionType' should have one of these values: [STANDARD, EXPRESS]")
                        elif ck not in ("Mode", "ExecutionType"):
                            self.add(f"{where}/ProcessorConfig", f"The field '{ck}' is not supported by Step Functions")
        if "ItemSelector" in s and "Parameters" in s:
            self.add(at, "The fields 'ItemSelector' and 'Parameters' are mutually exclusive")
        for key, resources in (("ItemReader", ("s3:getObject", "s3:listObjectsV2")), ("ResultWriter", ("s3:putObject",))):
            if key not in s:
                continue
            io = s[key]
            if not isinstance(io, dict) or not isinstance(io.get("Resource"), str):
                self.add(f"{at}/{key}", f"The field '{key}' must be an object with a 'Resource' such as "
                         f"arn:aws:states:::{resources[0]}")
                continue
            if not io["Resource"].endswith(resources):
                self.add(f"{at}/{key}/Resource", f"The {key} resource must be one of {', '.join(resources)}")
            if language == "JSONPath" and "Parameters" in io:
                for where, msg in template_problems(io["Parameters"], f"{at}/{key}/Parameters"):
                    self.add(where, msg)
            elif language == "JSONata" and "Arguments" in io:
                self.jsonata_template(io["Arguments"], f"{at}/{key}/Arguments")
        if "ItemBatcher" in s and not isinstance(s["ItemBatcher"], dict):
            self.add(f"{at}/ItemBatcher", "The field 'ItemBatcher' must be an object")
        self.add_all(exclusive_map_fields(s, at))
        if language == "JSONPath":
            if "ItemsPath" in s:
                self.reference_path(s["ItemsPath"], f"{at}/ItemsPath", "ItemsPath")
            for key in ("MaxConcurrencyPath", "ToleratedFailureCountPath", "ToleratedFailurePercentagePath"):
                if key in s:
                    self.reference_path(s[key], f"{at}/{key}", key)
        for lit in ("MaxConcurrency", "ToleratedFailureCount", "ToleratedFailurePercentage"):
            if lit in s and lit + "Path" in s:
                self.add(at, f"The fields '{lit}' and '{lit}Path' are mutually exclusive")
            if lit in s and not (language == "JSONata" and self.jsonata_or(s[lit])):
                if lit == "ToleratedFailurePercentage":
                    v = s[lit]
                    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 100:
                        self.add(f"{at}/{lit}", "The field 'ToleratedFailurePercentage' must be a number from 0 to 100")
                else:
                    self.integer(s[lit], f"{at}/{lit}", lit, 0)

    def retry_catch(self, s: dict, at: str, language: str, siblings: dict) -> None:
        retriers = s.get("Retry", [])
        if not isinstance(retriers, list):
            self.add(f"{at}/Retry", "The field 'Retry' must be an array of retriers")
            retriers = []
        for i, r in enumerate(retriers):
            where = f"{at}/Retry/{i}"
            if not isinstance(r, dict):
                self.add(where, "A retrier must be an object")
                continue
            for key in r:
                if key not in _RETRIER_FIELDS:
                    self.add(where, f"The field '{key}' is not supported by Step Functions")
            self.error_equals(r, where, i == len(retriers) - 1, "retrier")
            if "IntervalSeconds" in r:
                self.integer(r["IntervalSeconds"], f"{where}/IntervalSeconds", "IntervalSeconds", 1, 99999999)
            if "MaxAttempts" in r:
                self.integer(r["MaxAttempts"], f"{where}/MaxAttempts", "MaxAttempts", 0, 99999999)
            if "BackoffRate" in r:
                self.number(r["BackoffRate"], f"{where}/BackoffRate", "BackoffRate", 1.0)
            if "MaxDelaySeconds" in r:
                self.integer(r["MaxDelaySeconds"], f"{where}/MaxDelaySeconds", "MaxDelaySeconds", 1, 31622400)
            if "JitterStrategy" in r and r["JitterStrategy"] not in ("FULL", "NONE"):
                self.add(f"{where}/JitterStrategy", "The field 'JitterStrategy' should have one of these values: [FULL, NONE]")
        catchers = s.get("Catch", [])
        if not isinstance(catchers, list):
            self.add(f"{at}/Catch", "The field 'Catch' must be an array of catchers")
            catchers = []
        for i, c in enumerate(catchers):
            where = f"{at}/Catch/{i}"
            if not isinstance(c, dict):
                self.add(where, "A catcher must be an object")
                continue
            allowed = _CATCHER_FIELDS[language]
            for key in c:
                if key not in allowed:
                    self.add(where, f"The field '{key}' is not supported by Step Functions"
                             + (f" in {language} catchers" if key in _CATCHER_FIELDS["JSONPath"] | _CATCHER_FIELDS["JSONata"] else ""))
            self.error_equals(c, where, i == len(catchers) - 1, "catcher")
            if "Next" not in c:
                self.add(where, "The field 'Next' is required in a catcher")
            else:
                self.target(c["Next"], f"{where}/Next", siblings, "Next")
            if "ResultPath" in c and language == "JSONPath":
                self.reference_path(c["ResultPath"], f"{where}/ResultPath", "ResultPath", variables=False)
            if language == "JSONata":
                for key in ("Output", "Assign"):
                    if key in c:
                        self.jsonata_template(c[key], f"{where}/{key}")
            elif "Assign" in c:
                for path, msg in template_problems(c["Assign"], f"{where}/Assign"):
                    self.add(path, msg)

    def error_equals(self, r: dict, where: str, is_last: bool, what: str) -> None:
        errors = r.get("ErrorEquals")
        if not isinstance(errors, list) or not errors or not all(isinstance(e, str) for e in errors):
            self.add(f"{where}/ErrorEquals", "The field 'ErrorEquals' must be a non-empty array of error names")
            return
        if "States.ALL" in errors:
            if len(errors) != 1:
                self.add(f"{where}/ErrorEquals", "'States.ALL' must appear alone in its ErrorEquals")
            if not is_last:
                self.add(where, f"The {what} with 'States.ALL' must be the last {what}")


def _targets(state: dict[str, Any]) -> Iterable[str]:
    if not isinstance(state, dict):
        return
    if isinstance(state.get("Next"), str):
        yield state["Next"]
    if isinstance(state.get("Default"), str):
        yield state["Default"]
    for rule in state.get("Choices") or []:
        if isinstance(rule, dict) and isinstance(rule.get("Next"), str):
            yield rule["Next"]
    for c in state.get("Catch") or []:
        if isinstance(c, dict) and isinstance(c.get("Next"), str):
            yield c["Next"]


def _is_terminal(state: dict[str, Any]) -> bool:
    return isinstance(state, dict) and (state.get("End") is True or state.get("Type") in ("Succeed", "Fail"))


def validate_definition(definition: Any, *, transitions: bool = True) -> list[Problem]:
    """Every problem of an ASL definition (a dict or JSON text), each with its JSON pointer.

    >>> [(p.code, p.path) for p in validate_definition({"StartAt": "A", "States": {"A": {"Type": "Pass"}}})]
    [('SCHEMA_VALIDATION_FAILED', '/States/A'), ('NO_TERMINAL_STATE', '/States')]
    """
    if isinstance(definition, (str, bytes)):
        size = len(definition.encode("utf-8") if isinstance(definition, str) else definition)
        try:
            definition = json.loads(definition)
        except json.JSONDecodeError as exc:
            return [Problem("/", f"The definition is not valid JSON: {exc}", "INVALID_JSON_DESCRIPTION")]
        except RecursionError:
            return [too_deep()]
    else:
        size = -1
    problems = definition_limits(definition, size)
    if problems:
        return problems
    checker = _Checker(transitions)
    checker.machine(definition, "", definition.get("QueryLanguage", "JSONPath") if isinstance(definition, dict) else "JSONPath", True)
    checker.add_all(duplicate_state_names(definition))
    return checker.problems


