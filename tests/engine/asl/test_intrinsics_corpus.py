"""Intrinsic functions against executions recorded on real AWS Step Functions.

Every case in ``cases/intrinsic_functions`` of the conformance corpus is either
run here or excluded with its reason (see ``test_every_case_is_run_or_excluded_with_a_reason``).
A run case is a single JSONPath Pass state: a small evaluator below applies its
``Parameters`` (and ``ResultPath``/``OutputPath``) with ``IntrinsicCall``, and
the output is compared with what AWS returned. Mask tokens of the snapshot
tooling are wildcards: ``RandomNumberGenerated`` matches an integer and
``<uuid:N>`` a v4 UUID; the context object is filled with the very tokens the
tooling put in place of names and ARNs, so those compare exactly.

A few cases from other folders that exercise intrinsics in Assign, Fail,
variables and Map item selection run at the end.
"""

from __future__ import annotations

import json
import os
import random
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ceap_engine.asl.intrinsics import is_intrinsic, parse_intrinsic

CORPUS = Path(os.environ.get("CEAP_CONFORMANCE_DIR", "/work/shared/conformance")) / "cases"
INTRINSIC_CASES = CORPUS / "intrinsic_functions"

# What the recording tooling left in place of the state machine and execution names.
STATE_MACHINE_NAME = "<ArnPart_0idx>"
EXECUTION_NAME = "<ExecArnPart_0idx>"
ARN_PREFIX = "arn:<partition>:states:<region>:111111111111"

# The Pass-state fields the evaluator below applies; a case using others is not run.
SUPPORTED_PASS_FIELDS = {"Type", "Parameters", "ResultPath", "OutputPath", "End", "Comment"}
JSONATA_REASON = (
    "JSONata state: it exercises JSONata's $partition/$range/$parse, not States.* intrinsics"
)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def exclusion_reason(case: dict[str, Any]) -> str | None:
    """Why a case of the intrinsic folder is not run here, or None if it is."""
    definition = case["definition"]
    states = definition["States"]
    if definition.get("QueryLanguage") == "JSONata" or any(
        state.get("QueryLanguage") == "JSONata" for state in states.values()
    ):
        return JSONATA_REASON
    if len(states) != 1:
        return "more than one state"
    (state,) = states.values()
    if state["Type"] != "Pass" or "Parameters" not in state:
        return "not a Pass state with Parameters"
    extra = set(state) - SUPPORTED_PASS_FIELDS
    if extra:
        return f"uses fields this evaluator does not apply: {sorted(extra)}"
    return None


def intrinsic_case_files() -> list[Path]:
    return sorted(INTRINSIC_CASES.glob("*.json"))


def runnable_cases() -> list[Any]:
    params = []
    for path in intrinsic_case_files():
        if exclusion_reason(load(path)) is None:
            params.append(pytest.param(path, id=path.stem))
    return params


# --------------------------------------------------------------------------- a tiny Pass evaluator


def context_object(execution_input: Any, **extra: Any) -> dict[str, Any]:
    return {
        "Execution": {
            "Id": f"{ARN_PREFIX}:execution:{STATE_MACHINE_NAME}:{EXECUTION_NAME}",
            "Input": execution_input,
            "Name": EXECUTION_NAME,
        },
        "StateMachine": {
            "Id": f"{ARN_PREFIX}:stateMachine:{STATE_MACHINE_NAME}",
            "Name": STATE_MACHINE_NAME,
        },
        **extra,
    }


def make_resolver(
    data: Any, context: dict[str, Any], variables: dict[str, Any] | None = None
) -> Callable[[str], Any]:
    """Resolve ``$``, ``$.a.b``, ``$$.a.b`` and ``$var.a.b`` (dotted names only)."""
    variables = variables or {}

    def walk(value: Any, dotted: str, path: str) -> Any:
        for name in filter(None, dotted.split(".")):
            if not isinstance(value, dict) or name not in value:
                raise KeyError(f"path {path} not found")
            value = value[name]
        return value

    def resolve(path: str) -> Any:
        assert "[" not in path, f"test evaluator handles dotted paths only: {path}"
        if path.startswith("$$"):
            return walk(context, path[2:], path)
        if path == "$" or path.startswith("$."):
            return walk(data, path[1:], path)
        name, _, rest = path[1:].partition(".")
        if name not in variables:
            raise KeyError(f"variable ${name} not found")
        return walk(variables[name], rest, path)

    return resolve


def apply_payload_template(template: Any, resolve: Callable[[str], Any], rng: random.Random) -> Any:
    """Apply a Parameters-style template: ``"key.$"`` values are paths or intrinsic calls."""
    if isinstance(template, list):
        return [apply_payload_template(item, resolve, rng) for item in template]
    if not isinstance(template, dict):
        return template
    result = {}
    for key, value in template.items():
        if key.endswith(".$"):
            if is_intrinsic(value):
                result[key[:-2]] = parse_intrinsic(value).evaluate(resolve, rng)
            else:
                result[key[:-2]] = resolve(value)
        else:
            result[key] = apply_payload_template(value, resolve, rng)
    return result


def dotted_names(path: str) -> list[str]:
    assert path == "$" or path.startswith("$."), path
    return [name for name in path[2:].split(".") if name]


def run_pass_state(state: dict[str, Any], state_input: Any, context: dict[str, Any]) -> Any:
    rng = random.Random(20240601)
    result = apply_payload_template(state["Parameters"], make_resolver(state_input, context), rng)
    output = result
    if "ResultPath" in state:
        output = json.loads(json.dumps(state_input))
        *parents, last = dotted_names(state["ResultPath"])
        target = output
        for name in parents:
            target = target.setdefault(name, {})
        target[last] = result
    if "OutputPath" in state:
        for name in dotted_names(state["OutputPath"]):
            output = output[name]
    return output


# --------------------------------------------------------------------------- comparison


UUID_TOKEN = re.compile(r"<uuid:\d+>")


def mismatches(expected: Any, actual: Any, where: str = "$") -> list[str]:
    """Differences between AWS's recorded value and ours, mask tokens as wildcards."""
    if expected == "RandomNumberGenerated":
        ok = isinstance(actual, int) and not isinstance(actual, bool)
        return [] if ok else [f"{where}: expected a random integer, got {actual!r}"]
    if isinstance(expected, str) and UUID_TOKEN.fullmatch(expected):
        try:
            ok = isinstance(actual, str) and uuid.UUID(actual).version == 4
        except ValueError:
            ok = False
        return [] if ok else [f"{where}: expected a v4 UUID, got {actual!r}"]
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or set(expected) != set(actual):
            return [f"{where}: expected {expected!r}, got {actual!r}"]
        return [d for key in expected for d in mismatches(expected[key], actual[key], f"{where}.{key}")]
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(expected) != len(actual):
            return [f"{where}: expected {expected!r}, got {actual!r}"]
        pairs = enumerate(zip(expected, actual))
        return [d for i, (e, a) in pairs for d in mismatches(e, a, f"{where}[{i}]")]
    # Python's True == 1, JSON's true is not 1.
    if isinstance(expected, bool) != isinstance(actual, bool) or expected != actual:
        return [f"{where}: expected {expected!r}, got {actual!r}"]
    return []


def test_mismatches_treats_masks_as_wildcards_and_nothing_else() -> None:
    assert mismatches({"a": "RandomNumberGenerated"}, {"a": 17}) == []
    assert mismatches({"a": "RandomNumberGenerated"}, {"a": "17"}) != []
    assert mismatches("<uuid:1>", str(uuid.uuid4())) == []
    assert mismatches("<uuid:1>", "not-a-uuid") != []
    assert mismatches([1, True], [1, 1]) != []
    assert mismatches({"a": 1}, {"a": 1, "b": 2}) != []
    assert mismatches("x", "y") != []


# --------------------------------------------------------------------------- the folder


def test_every_case_is_run_or_excluded_with_a_reason() -> None:
    files = intrinsic_case_files()
    assert files, f"no conformance corpus at {INTRINSIC_CASES}; set CEAP_CONFORMANCE_DIR"
    reasons = {path.stem: exclusion_reason(load(path)) for path in files}
    excluded = {stem: reason for stem, reason in reasons.items() if reason is not None}
    # The only cases not run are the JSONata twins of the intrinsic tests.
    assert set(excluded.values()) == {JSONATA_REASON}
    assert (len(files), len(files) - len(excluded), len(excluded)) == (162, 131, 31)


@pytest.mark.parametrize("case_path", runnable_cases())
def test_recorded_intrinsic_case(case_path: Path) -> None:
    case = load(case_path)
    expected = case["expected"]
    assert expected["status"] == "SUCCEEDED", "every case in this folder succeeded on AWS"
    (state,) = case["definition"]["States"].values()
    output = run_pass_state(state, case["input"], context_object(case["input"]))
    assert mismatches(expected["output"], output) == []


# --------------------------------------------------------------------------- other folders


def test_fail_state_error_and_cause_from_intrinsics() -> None:
    case = load(CORPUS / "base" / "test_state_fail_intrinsic.json")
    (state,) = case["definition"]["States"].values()
    resolve = make_resolver(case["input"], context_object(case["input"]))
    rng = random.Random(1)
    error = parse_intrinsic(state["ErrorPath"]).evaluate(resolve, rng)
    cause = parse_intrinsic(state["CausePath"]).evaluate(resolve, rng)
    assert (error, cause) == (case["expected"]["error"], case["expected"]["cause"])


def test_assign_from_every_kind_of_intrinsic() -> None:
    case = load(CORPUS / "assign" / "test_assign_from_value_BASE_ASSIGN_FROM_INTRINSIC_FUNCTION.json")
    (state,) = case["definition"]["States"].values()
    # In a Pass state with Result, Assign's "$" is that result.
    resolve = make_resolver(state["Result"], context_object(case["input"]))
    assigned = apply_payload_template(state["Assign"], resolve, random.Random(3))
    (exited,) = [e for e in case["expected"]["events"] if e["type"] == "PassStateExited"]
    recorded = exited["stateExitedEventDetails"]["assignedVariables"]
    assert mismatches(recorded, assigned) == []


def test_intrinsics_over_variables() -> None:
    case = load(CORPUS / "assign" / "test_reference_assign_BASE_REFERENCE_IN_INTRINSIC_FUNCTION.json")
    states = case["definition"]["States"]
    variables = states["State0"]["Assign"]  # plain literals, assigned before State1 runs
    resolve = make_resolver(case["input"], context_object(case["input"]), variables)
    output = apply_payload_template(states["State1"]["Parameters"], resolve, random.Random(5))
    assert mismatches(case["expected"]["output"], output) == []


def test_format_template_from_a_variable_per_map_item() -> None:
    name = "test_reference_in_map_state_MAP_STATE_REFERENCE_IN_INTRINSIC_FUNCTION.json"
    case = load(CORPUS / "assign" / name)
    states = case["definition"]["States"]
    variables = states["Start"]["Assign"]
    selector = states["MapIterateState"]["ItemSelector"]
    answers = []
    for index, item in enumerate(states["Start"]["Result"]):
        context = context_object(case["input"], Map={"Item": {"Index": index, "Value": item}})
        resolve = make_resolver(states["Start"]["Result"], context, variables)
        answers.append(apply_payload_template(selector, resolve, random.Random(0))["AnnouncePokemon"])
    assert answers == [entry["Answer"] for entry in case["expected"]["output"]]
