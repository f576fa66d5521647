"""JSONPath as AWS Step Functions evaluates it (Jayway semantics).

The first part checks the module against executions recorded on real AWS
(the conformance corpus, read in place); the rest are unit tests of the
grammar, the evaluator and ResultPath writing.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ceap_engine.asl.jsonpath import (
    REFERENCE_PATH_CONFLICT,
    InvalidPath,
    JsonPath,
    PathNotFound,
    compile_path,
    compile_reference_path,
    set_path,
)
from ceap_engine.errors import CeapError, StatesError

CONFORMANCE = Path(os.environ.get("CEAP_CONFORMANCE_DIR", "/work/shared/conformance"))
CASES = CONFORMANCE / "cases"
TEST_STATE = CONFORMANCE / "test_state"
STATE_ERROR_PREFIX = re.compile(
    r"^An error occurred while executing the state '[^']*' \(entered at the event id #\d+\)\. "
)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def case(relative: str) -> dict[str, Any]:
    return load(CASES / relative)


def is_document_path(text: Any) -> bool:
    """A JSONPath into the state input (not ``$$`` context, not a ``$variable``, not an intrinsic)."""
    return isinstance(text, str) and (text == "$" or text[:2] in ("$.", "$["))


def state_cause(recorded: str) -> str:
    """A recorded cause without AWS's "An error occurred while executing the state ..." prefix."""
    return STATE_ERROR_PREFIX.sub("", recorded)


# ---------------------------------------------------------------------------
# Corpus: every path AWS accepted compiles
# ---------------------------------------------------------------------------

def walk_paths(node: Any, jsonata: bool = False) -> Iterator[tuple[str, str]]:
    """(field, text) of every JSONPath in a definition, skipping JSONata states."""
    if isinstance(node, dict):
        jsonata = node.get("QueryLanguage", "JSONata" if jsonata else "JSONPath") == "JSONata"
        for key, value in node.items():
            if not jsonata and isinstance(value, str) and (
                key == "Variable" or key.endswith(".$") or key.endswith("Path")
            ):
                yield key, value
            yield from walk_paths(value, jsonata)
    elif isinstance(node, list):
        for item in node:
            yield from walk_paths(item, jsonata)


def corpus_definitions() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(CASES.glob("*/*.json")):
        yield path.name, load(path)["definition"]
    for path in sorted(TEST_STATE.glob("*.json")):
        definition = load(path)["request"].get("definition")
        if isinstance(definition, dict):
            yield path.name, definition


def corpus_paths() -> list[tuple[str, str, str]]:
    found = set()
    for name, definition in corpus_definitions():
        for field, text in walk_paths(definition):
            if text.startswith("$$"):
                text = "$" + text[2:]  # a context path is a JSONPath on the context object
            if field == "ResultPath" or is_document_path(text):
                found.add((field, text, name))
    return sorted(found)


CORPUS_PATHS = corpus_paths()


def test_the_corpus_has_paths_to_check() -> None:
    assert len({text for _, text, _ in CORPUS_PATHS}) > 100


@pytest.mark.parametrize(("field", "text"), sorted({(f, t) for f, t, _ in CORPUS_PATHS}))
def test_every_path_aws_accepted_compiles(field: str, text: str) -> None:
    if field == "ResultPath":
        assert compile_reference_path(text).is_reference
    else:
        assert compile_path(text).text == text


# ---------------------------------------------------------------------------
# Corpus: Pass states whose Parameters only select from the input
# ---------------------------------------------------------------------------


def build_parameters(template: Any, doc: Any) -> Any:
    if isinstance(template, dict):
        return {
            (key[:-2] if key.endswith(".$") else key): (
                compile_path(value).get(doc) if key.endswith(".$") else build_parameters(value, doc)
            )
            for key, value in template.items()
        }
    if isinstance(template, list):
        return [build_parameters(item, doc) for item in template]
    return template


def parameters_only_select(template: Any) -> bool:
    if isinstance(template, dict):
        return all(
            is_document_path(value) if key.endswith(".$") else parameters_only_select(value)
            for key, value in template.items()
        )
    if isinstance(template, list):
        return all(parameters_only_select(item) for item in template)
    return True


def selecting_pass_cases() -> list[Path]:
    chosen = []
    for path in sorted(CASES.glob("*/*.json")):
        data = load(path)
        definition = data["definition"]
        if data["expected"]["status"] != "SUCCEEDED" or definition.get("QueryLanguage") == "JSONata":
            continue
        if len(definition["States"]) != 1:
            continue
        (state,) = definition["States"].values()
        if state.get("Type") != "Pass" or set(state) - {"Type", "Parameters", "End", "Comment"}:
            continue
        if "Parameters" in state and parameters_only_select(state["Parameters"]) and ".$" in json.dumps(state):
            chosen.append(path)
    return chosen


SELECTING_PASS_CASES = selecting_pass_cases()


def test_selecting_pass_cases_include_wildcards_slices_filters_and_escapes() -> None:
    names = {path.name for path in SELECTING_PASS_CASES}
    assert len(names) >= 16
    assert "test_state_pass_regex_json_path_base.json" in names
    assert "test_escape_sequence_parsing_ESCAPE_SEQUENCES_JSONPATH.json" in names


@pytest.mark.parametrize("path", SELECTING_PASS_CASES, ids=lambda p: p.stem)
def test_pass_parameters_select_what_aws_selected(path: Path) -> None:
    data = load(path)
    (state,) = data["definition"]["States"].values()
    assert build_parameters(state["Parameters"], data["input"]) == data["expected"]["output"]


# ---------------------------------------------------------------------------
# Corpus: Pass states in execution histories (InputPath, ResultPath, OutputPath)
# ---------------------------------------------------------------------------


def event_value(value: Any) -> Any:
    # the snapshot tooling parsed JSON objects in events but left other JSON text as a string
    return json.loads(value) if isinstance(value, str) else value


def pass_output(state: dict[str, Any], raw: Any) -> Any:
    """What a JSONPath Pass state outputs, applying only this module."""
    effective = raw
    if "InputPath" in state:
        effective = {} if state["InputPath"] is None else compile_path(state["InputPath"]).get(raw)
    if "Parameters" in state:
        effective = build_parameters(state["Parameters"], effective)
    result = state.get("Result", effective)
    placed = result
    if "ResultPath" in state:
        result_path = state["ResultPath"]
        placed = raw if result_path is None else set_path(raw, compile_reference_path(result_path), result)
    if "OutputPath" in state:
        return {} if state["OutputPath"] is None else compile_path(state["OutputPath"]).get(placed)
    return placed


def checkable_pass_state(state: dict[str, Any]) -> bool:
    if state.get("Type") != "Pass" or state.get("QueryLanguage") == "JSONata" or "Assign" in state:
        return False
    if not {"InputPath", "OutputPath", "ResultPath"} & set(state):
        return False
    for field in ("InputPath", "OutputPath"):
        if state.get(field) is not None and not is_document_path(state[field]):
            return False
    return "Parameters" not in state or parameters_only_select(state["Parameters"])


def recorded_pass_steps() -> list[tuple[str, str, dict[str, Any], Any, Any]]:
    """(case, state, definition, input, output) of every completed, checkable Pass state."""
    steps = []
    for path in sorted(CASES.glob("*/*.json")):
        data = load(path)
        definition = data["definition"]
        states = definition["States"]
        if definition.get("QueryLanguage") == "JSONata":
            continue
        if any(s.get("Type") in ("Map", "Parallel") for s in states.values()):
            continue  # branches interleave their events
        events = data["expected"]["events"]
        for index, event in enumerate(events):
            if event["type"] != "PassStateEntered":
                continue
            name = event["stateEnteredEventDetails"]["name"]
            if not checkable_pass_state(states[name]):
                continue
            exited = next(
                (e for e in events[index + 1 :] if e["type"] == "PassStateExited"
                 and e["stateExitedEventDetails"]["name"] == name),
                None,
            )
            if exited is None:
                continue  # the state failed; its cause is checked below
            steps.append((path.stem, name, states[name], event_value(event["stateEnteredEventDetails"]["input"]),
                          event_value(exited["stateExitedEventDetails"]["output"])))
    return steps


RECORDED_PASS_STEPS = recorded_pass_steps()


def test_recorded_pass_steps_cover_all_three_paths() -> None:
    assert len(RECORDED_PASS_STEPS) >= 20
    fields = {field for step in RECORDED_PASS_STEPS for field in step[2]}
    assert {"InputPath", "ResultPath", "OutputPath"} <= fields


@pytest.mark.parametrize(
    ("state", "raw", "expected"),
    [(s[2], s[3], s[4]) for s in RECORDED_PASS_STEPS],
    ids=[f"{s[0]}::{s[1]}" for s in RECORDED_PASS_STEPS],
)
def test_pass_state_output_matches_aws_history(state: dict[str, Any], raw: Any, expected: Any) -> None:
    before = copy.deepcopy(raw)
    assert pass_output(state, raw) == expected
    assert raw == before


# ---------------------------------------------------------------------------
# Corpus: TestState inspection data (afterInputPath, afterItemsPath, afterResultPath)
# ---------------------------------------------------------------------------


def inspection_checks() -> list[tuple[str, str, str, Any, Any, Any]]:
    """(case, field, path, document, result-or-None, expected) from TestState inspection data."""
    checks = []
    for path in sorted(TEST_STATE.glob("*.json")):
        data = load(path)
        inspection = data["expected"].get("inspectionData")
        request = data["request"]
        definition = request.get("definition")
        if not inspection or not isinstance(definition, dict):
            continue
        if "States" in definition:
            if request.get("stateName") not in definition["States"]:
                continue  # a state nested in a Map: its input is not the request's input
            state = definition["States"][request["stateName"]]
        else:
            state = definition
        raw = request.get("input", {})
        if "InputPath" in state and "afterInputPath" in inspection and is_document_path(state["InputPath"]):
            checks.append((path.stem, "InputPath", state["InputPath"], raw, None, inspection["afterInputPath"]))
        if "ItemsPath" in state and "afterItemsPath" in inspection and is_document_path(state["ItemsPath"]):
            checks.append((path.stem, "ItemsPath", state["ItemsPath"], inspection["afterInputPath"], None,
                           inspection["afterItemsPath"]))
        if state.get("ResultPath") and "afterResultPath" in inspection:
            checks.append((path.stem, "ResultPath", state["ResultPath"], raw, inspection["afterResultSelector"],
                           inspection["afterResultPath"]))
    return checks


INSPECTION_CHECKS = inspection_checks()


def test_inspection_checks_cover_every_field() -> None:
    assert {check[1] for check in INSPECTION_CHECKS} == {"InputPath", "ItemsPath", "ResultPath"}


@pytest.mark.parametrize(
    ("field", "text", "doc", "result", "expected"),
    [c[1:] for c in INSPECTION_CHECKS],
    ids=[f"{c[0]}::{c[1]}" for c in INSPECTION_CHECKS],
)
def test_inspection_data_matches(field: str, text: str, doc: Any, result: Any, expected: Any) -> None:
    if field == "ResultPath":
        assert set_path(doc, compile_reference_path(text), result) == expected
    else:
        assert compile_path(text).get(doc) == expected


# ---------------------------------------------------------------------------
# Corpus: the causes AWS gives when a path has no match
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "field"),
    [
        ("scenarios/test_invalid_jsonpath_ST.INVALID_JSONPATH_IN_INPUTPATH.json", "InputPath"),
        ("scenarios/test_invalid_jsonpath_ST.INVALID_JSONPATH_IN_OUTPUTPATH.json", "OutputPath"),
    ],
)
def test_input_and_output_path_causes_quote_jayway_reason(relative: str, field: str) -> None:
    data = case(relative)
    (state,) = data["definition"]["States"].values()
    with pytest.raises(PathNotFound) as missing:
        compile_path(state[field]).get(data["input"])  # a Pass state passes its input through
    assert missing.value.invalid_path_cause() == state_cause(data["expected"]["cause"])


def test_missing_intermediate_property_cause_on_task_output() -> None:
    data = case("scenarios/test_catch_states_runtime.json")
    state = data["definition"]["States"]["RaiseRuntime"]
    succeeded = next(e for e in data["expected"]["events"] if e["type"] == "LambdaFunctionSucceeded")
    task_output = event_value(succeeded["lambdaFunctionSucceededEventDetails"]["output"])
    with pytest.raises(PathNotFound) as missing:
        compile_path(state["OutputPath"]).get(task_output)
    assert missing.value.invalid_path_cause() == state_cause(data["expected"]["cause"])
    assert missing.value.reason == "Missing property in path $['no']"


@pytest.mark.parametrize(
    ("relative", "state_name", "field"),
    [
        ("scenarios/test_invalid_jsonpath_INVALID_JSONPATH_IN_STRING_EXPR_JSONPATH.json", "pass", "value.$"),
        ("scenarios/test_invalid_jsonpath_INVALID_JSONPATH_IN_ERRORPATH.json", "fail", "ErrorPath"),
        ("scenarios/test_invalid_jsonpath_ST.INVALID_JSONPATH_IN_CAUSEPATH.json", "fail", "CausePath"),
    ],
)
def test_field_causes_have_aws_shape(relative: str, state_name: str, field: str) -> None:
    data = case(relative)
    state = data["definition"]["States"][state_name]
    text = state["Parameters"][field] if field.endswith(".$") else state[field]
    doc = {"Error": "error-value"} if state_name == "fail" else data["input"]
    with pytest.raises(PathNotFound) as missing:
        compile_path(text).get(doc)
    cause = missing.value.field_cause(field, doc)
    # the recorded cause masks the input JSON as '<json-input:1>'
    recorded = state_cause(data["expected"]["cause"])
    head, tail = recorded.split("<json-input:1>")
    assert cause.startswith(head) and cause.endswith(tail)
    assert cause[len(head) : len(cause) - len(tail)] == json.dumps(doc, separators=(",", ":"))


# ---------------------------------------------------------------------------
# Grammar
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "definite", "reference"),
    [
        ("$", True, True),
        ("$.a", True, True),
        ("$.a.b[0]", True, True),
        ("$['a']", True, True),
        ('$["a"][-1]', True, True),
        ("$.a-b.ünï.c$d", True, True),
        ("$['a','b']", True, False),
        ("$.a.length()", True, False),
        ("$[0,1]", False, False),
        ("$['a','b'].c", False, False),
        ("$[*]", False, False),
        ("$.*", False, False),
        ("$[1:2]", False, False),
        ("$..a", False, False),
        ("$[?(@.a)]", False, False),
    ],
)
def test_definite_and_reference_classification(text: str, definite: bool, reference: bool) -> None:
    path = compile_path(text)
    assert (path.is_definite, path.is_reference) == (definite, reference)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("$", "$"),
        ("$.a.b", "$['a']['b']"),
        ("$.a[0]", "$['a'][0]"),
        ('$["x y"].z', '$["x y"][\'z\']'),
        ("$.a[*].b", "$['a'][*]['b']"),
        ("$.a..b[1:3]", "$['a']..['b'][1:3]"),
        ("$.[0]", "$[0]"),
        ("$['a']b", "$['a']['b']"),  # Jayway reads a name right after a bracket
        ("$.a[ 1 , 2 ]", "$['a'][1,2]"),
        ("  $.a  ", "$['a']"),
    ],
)
def test_syntax_variants_parse_as_jayway_does(text: str, normalized: str) -> None:
    assert compile_path(text).normalized() == normalized


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("a.b", "must start with '$'"),
        ("$x", "expected '.' or '['"),
        ("$.", "must not end with '.'"),
        ("$..", "must not end with '.'"),
        ("$...a", "unexpected '.'"),
        ("$.a b", "bracket notation"),
        ("$[", "not closed"),
        ("$['a'", "missing ']'"),
        ("$['a]", "not closed"),
        ("$['a' 'b']", "expected ',' or ']'"),
        ("$[]", "unexpected ']'"),
        ("$[a]", "unexpected 'a'"),
        ("$[1,]", "not an array index"),
        ("$[-]", "not an array index"),
        ("$[99999999999]", "out of range"),
        ("$[:]", "neither a start nor an end"),
        ("$[1:2,3]", "mixes a slice"),
        ("$[*", "expected ']'"),
        ("$[?]", "[?(...)]"),
        ("$[?(@.a == 1]", "not closed"),
        ("$[?(@.a = 1)]", "unknown operator '='"),
        ("$[?(1)]", "comparison operator"),
        ("$[?(@.a == 'x)]", "not closed"),
        ("$[?(@.a =~ /(/)]", "regular expression"),
        ("$[?(@.a in [1,)]", "JSON literal"),
        ("$.f(", "not closed"),
    ],
)
def test_malformed_paths_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(InvalidPath) as invalid:
        compile_path(text)
    assert problem in str(invalid.value)
    assert isinstance(invalid.value, (ValueError, CeapError))


def test_invalid_path_reports_the_position() -> None:
    with pytest.raises(InvalidPath) as invalid:
        compile_path("$.ok.not ok")
    assert invalid.value.position == 8
    assert invalid.value.path == "$.ok.not ok"


def test_a_path_must_be_a_string() -> None:
    with pytest.raises(InvalidPath, match="must be a string"):
        compile_path(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidPath, match="must be a string"):
        compile_reference_path(["$"])  # type: ignore[arg-type]


def test_context_and_variable_syntax_is_not_a_document_path() -> None:
    # the interpreter strips "$$" and "$name" before compiling
    for text in ("$$.Execution.Id", "$var.a"):
        with pytest.raises(InvalidPath):
            compile_path(text)


@pytest.mark.parametrize(
    "text", ["$.a[*]", "$..a", "$.a[1:]", "$['a','b']", "$[0,1]", "$[?(@.x)]", "$.a.length()", "$.*"]
)
def test_reference_paths_refuse_anything_but_names_and_indexes(text: str) -> None:
    with pytest.raises(InvalidPath, match="reference path"):
        compile_reference_path(text)
    assert compile_path(text)  # still a valid JSONPath


def test_compiled_paths_are_cached() -> None:
    assert compile_path("$.cached.path") is compile_path("$.cached.path")
    assert compile_reference_path("$.cached[0]") is compile_path("$.cached[0]")


def test_repr_names_the_text() -> None:
    assert repr(compile_path("$.a")) == "JsonPath('$.a')"
    assert isinstance(compile_path("$.a"), JsonPath)


# ---------------------------------------------------------------------------
# Definite paths
# ---------------------------------------------------------------------------

DOC: dict[str, Any] = {
    "a": {"b": [{"c": 1}, {"c": 2}], "s": "text", "n": None, "i": 5},
    "list": [10, 20, 30, 40],
    "key with space": 1,
    "q'uote": 2,
    'd"q': 3,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$", DOC),
        ("$.a.i", 5),
        ("$.a.n", None),
        ("$.a.b[1].c", 2),
        ("$.list[-1]", 40),
        ("$.list[-4]", 10),
        ("$['key with space']", 1),
        ('$["q\'uote"]', 2),
        ("$['d\"q']", 3),
        ("$.a['s','i','missing']", {"s": "text", "i": 5}),
        ("$['a']['b'][0]['c']", 1),
    ],
)
def test_definite_paths_return_the_value(text: str, expected: Any) -> None:
    assert compile_path(text).get(DOC) == expected


def test_bracket_names_keep_backslashes_as_aws_does() -> None:
    # AWS read $['Test\""Name"'] as the key Test\""Name" (escape-sequence scenario)
    assert compile_path(r"$['a\"b']").get({'a\\"b': 1}) == 1
    assert compile_path(r"$['back\slash']").get({"back\\slash": 7}) == 7
    assert compile_path(r'$["it\'s"]').get({"it\\'s": 8}) == 8


def test_merged_names_on_a_non_object_explain_why() -> None:
    with pytest.raises(PathNotFound, match=r"property \['x','y'\] in path \$\['list'\]"):
        compile_path("$.list['x','y']").get(DOC)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("$.missing", "No results for path: $['missing']"),
        ("$.a.missing", "No results for path: $['a']['missing']"),
        ('$["missing"]', 'No results for path: $["missing"]'),
        ("$.missing.deeper.still", "Missing property in path $['missing']"),
        ("$.a.missing.deeper", "Missing property in path $['a']['missing']"),
        ("$.list[4]", "No results for path: $['list'][4]"),
        ("$.list[-5]", "No results for path: $['list'][-5]"),
        ("$.list[9].x", "No results for path: $['list'][9]['x']"),
        ("$.a.b[0].missing", "No results for path: $['a']['b'][0]['missing']"),
        ("$.a.s.x", "Expected to find an object with property ['x'] in path $['a']['s'] but found "
                    "'java.lang.String'. This is not a json object according to the JsonProvider: "
                    "'com.jayway.jsonpath.spi.json.JsonSmartJsonProvider'."),
        ("$.a.i.x", "but found 'java.lang.Integer'"),
        ("$.a.n.x", "but found 'null'"),
        ("$.list.x", "but found 'net.minidev.json.JSONArray'"),
        ("$.a.n[0]", "The path $['a']['n'] is null"),
        ("$.a.s[0].z", "Filter: [0]['z'] can only be applied to arrays. Current context is: text"),
        ("$.a[0]", 'Filter: [0] can only be applied to arrays. Current context is: {"b":[{"c":1},{"c":2}],'),
        ("$.a.length()", "not supported"),
    ],
)
def test_definite_paths_without_a_match_give_jayway_reason(text: str, reason: str) -> None:
    with pytest.raises(PathNotFound) as missing:
        compile_path(text).get(DOC)
    assert reason in missing.value.reason
    assert missing.value.path == text
    assert isinstance(missing.value, LookupError)


def test_not_found_on_a_non_object_document() -> None:
    for doc, found in (
        ("just text", "java.lang.String"),
        ([1], "net.minidev.json.JSONArray"),
        (True, "java.lang.Boolean"),
        (1.5, "java.lang.Double"),
        (2**40, "java.lang.Long"),
    ):
        with pytest.raises(PathNotFound, match=re.escape(f"in path $ but found '{found}'")):
            compile_path("$.a").get(doc)


def test_the_fast_path_never_reads_characters_out_of_a_string() -> None:
    with pytest.raises(PathNotFound, match="can only be applied to arrays"):
        compile_path("$.a.s[0]").get(DOC)
    with pytest.raises(PathNotFound):
        compile_path("$[0]").get({"0": "keys are not indexes"})


def test_path_not_found_formats_aws_causes() -> None:
    with pytest.raises(PathNotFound) as missing:
        compile_path("$.x").get({"y": [1, "é"]})
    assert missing.value.invalid_path_cause() == "Invalid path '$.x' : No results for path: $['x']"
    assert missing.value.field_cause("value.$", {"y": [1, "é"]}, shown_path="$$.x") == (
        "The JSONPath '$$.x' specified for the field 'value.$' could not be found in the input '{\"y\":[1,\"é\"]}'"
    )


# ---------------------------------------------------------------------------
# Indefinite paths
# ---------------------------------------------------------------------------

STORE: dict[str, Any] = {
    "store": {
        "book": [
            {"category": "reference", "author": "Nigel Rees", "title": "Sayings", "price": 8.95},
            {"category": "fiction", "author": "Evelyn Waugh", "title": "Sword", "price": 12.99},
            {"category": "fiction", "author": "Herman Melville", "title": "Moby Dick", "isbn": "0-553", "price": 8.99},
            {"category": "fiction", "author": "J. R. R. Tolkien", "title": "Rings", "isbn": "0-395", "price": 22.99},
        ],
        "bicycle": {"color": "red", "price": 19.95},
    },
    "expensive": 10,
}


def titles(text: str) -> list[str]:
    return [book["title"] for book in compile_path(text).get(STORE)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$.store.book[*].author", ["Nigel Rees", "Evelyn Waugh", "Herman Melville", "J. R. R. Tolkien"]),
        ("$.store.book.*.price", [8.95, 12.99, 8.99, 22.99]),
        ("$.store.*.color", ["red"]),
        ("$.store..price", [8.95, 12.99, 8.99, 22.99, 19.95]),
        ("$..isbn", ["0-553", "0-395"]),
        ("$.store.book[0,2].price", [8.95, 8.99]),
        ("$.store.book[2,0,9].price", [8.99, 8.95]),
        ("$.store.book[*].isbn", ["0-553", "0-395"]),
        ("$.store['bicycle','book'].price", [19.95]),
        ("$.store.bicycle[*]", ["red", 19.95]),
        ("$.expensive[*]", []),
        ("$.nothing[*]", []),
        ("$.nothing..x", []),
        ("$..book.length()", []),
    ],
)
def test_indefinite_paths_return_every_match_in_jayway_order(text: str, expected: list[Any]) -> None:
    assert compile_path(text).get(STORE) == expected


def test_wildcard_on_an_empty_object_is_an_empty_list() -> None:
    assert compile_path("$[*]").get({}) == []
    assert compile_path("$.*").get({"a": 1, "b": [2]}) == [1, [2]]


def test_deep_scan_order_follows_jayway() -> None:
    doc = {"a": {"x": 1, "b": {"x": 2}}, "c": [{"x": 3}, [{"x": 4}]], "x": 0}
    assert compile_path("$..x").get(doc) == [0, 1, 2, 3, 4]
    assert compile_path("$..*").get({"a": {"b": 1}, "c": [2]}) == [{"b": 1}, [2], 1, 2]
    assert compile_path("$..[0]").get({"a": [[1, 2], 3]}) == [[1, 2], 1]


def test_deep_scan_with_an_index_hands_each_element_to_the_next_token() -> None:
    # Jayway skips the index when the scan target is not the last token
    assert compile_path("$..[0].x").get({"l": [{"x": 1}, {"x": 2}]}) == [1, 2]


def test_indefinite_results_share_the_document() -> None:
    [first] = compile_path("$.a.b[:1]").get(DOC)
    assert first is DOC["a"]["b"][0]


@pytest.mark.parametrize(
    ("slice_", "expected"),
    [
        ("[1:]", [20, 30, 40]),
        ("[-2:]", [30, 40]),
        ("[-9:]", [10, 20, 30, 40]),
        ("[9:]", []),
        ("[:2]", [10, 20]),
        ("[:-1]", [10, 20, 30]),
        ("[:-9]", []),
        ("[:9]", [10, 20, 30, 40]),
        ("[1:3]", [20, 30]),
        ("[1:9]", [20, 30, 40]),
        ("[3:1]", []),
        ("[0:-1]", []),  # Jayway does not wrap an end given with a start
        ("[-2:4]", [30, 40, 10, 20, 30, 40]),  # ... and walks a negative start up through 0
        ("[1:3:2]", [20, 30]),  # the step is ignored
        ("[ 1 : 2 ]", [20]),
    ],
)
def test_slices_follow_jayway(slice_: str, expected: list[int]) -> None:
    assert compile_path("$.list" + slice_).get(DOC) == expected


def test_slices_and_wildcards_on_missing_or_wrong_types_match_nothing() -> None:
    for text in ("$.a.s[1:]", "$.a.n[:1]", "$.a.i[*]", "$.missing[0,1]", "$.a.s[0,1]"):
        assert compile_path(text).get(DOC) == []


# ---------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filter_", "expected"),
    [
        ("@.price < 10", ["Sayings", "Moby Dick"]),
        ("@.price<=8.99", ["Sayings", "Moby Dick"]),
        ("@.price > 20", ["Rings"]),
        ("@.price >= 22.99", ["Rings"]),
        ("@.category == 'fiction'", ["Sword", "Moby Dick", "Rings"]),
        ('@.category == "reference"', ["Sayings"]),
        ("@.category != 'fiction'", ["Sayings"]),
        ("@.isbn", ["Moby Dick", "Rings"]),
        ("!@.isbn", ["Sayings", "Sword"]),
        ("@.price < $.expensive", ["Sayings", "Moby Dick"]),
        ("@.price <= $['expensive']", ["Sayings", "Moby Dick"]),
        ("@.author =~ /.*REES/i", ["Sayings"]),
        ("@.author =~ /Nigel/", []),  # a regex must match the whole text
        ("@.category in ['reference', 'x']", ["Sayings"]),
        ("@.category nin ['fiction']", ["Sayings"]),
        ("@.category IN [\"fiction\"]", ["Sword", "Moby Dick", "Rings"]),
        ("@.price > 10 && @.category == 'fiction'", ["Sword", "Rings"]),
        ("@.price > 20 || @.price < 9", ["Sayings", "Moby Dick", "Rings"]),
        ("@.price > 10 && @.price < 20 || @.isbn && @.price < 9", ["Sword", "Moby Dick"]),
        ("!(@.price > 10)", ["Sayings", "Moby Dick"]),
        ("(@.price > 10 || @.isbn) && @.category == 'fiction'", ["Sword", "Moby Dick", "Rings"]),
        ("@.title contains 'o'", ["Sword", "Moby Dick"]),
        ("@.title size 5", ["Sword", "Rings"]),
        ("@.isbn empty false", ["Moby Dick", "Rings"]),
        ("@.missing == null", []),
        ("@.missing != 'x'", ["Sayings", "Sword", "Moby Dick", "Rings"]),  # undefined is never equal
        ("@['price'] < 9", ["Sayings", "Moby Dick"]),
    ],
)
def test_filters(filter_: str, expected: list[str]) -> None:
    assert titles(f"$.store.book[?({filter_})]") == expected


def test_filter_from_the_corpus_compares_numbers() -> None:
    users = {"users": [{"year": 1997, "status": 0}, {"year": 1998, "status": 1}]}
    assert compile_path("$.users[?(@.status == 0)]").get(users) == [{"year": 1997, "status": 0}]


def test_filter_then_continue_the_path() -> None:
    assert compile_path("$.store.book[?(@.isbn)].price").get(STORE) == [8.99, 22.99]
    assert compile_path("$..book[?(@.price > 20)].title").get(STORE) == ["Rings"]


def test_filter_on_an_object_tests_the_object_itself() -> None:
    assert compile_path("$.store.bicycle[?(@.color == 'red')]").get(STORE) == [{"color": "red", "price": 19.95}]
    assert compile_path("$.store.bicycle[?(@.color == 'blue')]").get(STORE) == []


def test_filter_on_scalars_and_the_current_item() -> None:
    assert compile_path("$[?(@ > 1)]").get([1, 2, 3]) == [2, 3]
    assert compile_path("$[?(@ == 'b')]").get(["a", "b"]) == ["b"]
    assert compile_path("$.a.i[?(@ > 1)]").get(DOC) == []


def test_deep_scan_with_a_filter() -> None:
    doc = {"a": {"price": 1}, "b": [{"price": 5}, {"c": {"price": 2}}]}
    assert compile_path("$..[?(@.price < 3)]").get(doc) == [{"price": 1}, {"price": 2}]


def test_numbers_and_numeric_strings_meet_as_jayway_decides() -> None:
    doc = [{"v": 1}, {"v": "1"}, {"v": 1.0}, {"v": "1.0"}, {"v": True}, {"v": None}]
    assert compile_path("$[?(@.v == 1)]").get(doc) == [{"v": 1}, {"v": "1"}, {"v": 1.0}]
    # the left side decides: a number compares numerically, a string compares as text
    assert compile_path("$[?(@.v == '1.0')]").get(doc) == [{"v": 1}, {"v": 1.0}, {"v": "1.0"}]
    assert compile_path("$[?(@.v === 1)]").get(doc) == [{"v": 1}, {"v": 1.0}]
    assert compile_path("$[?(@.v == true)]").get(doc) == [{"v": True}]
    assert compile_path("$[?(@.v == null)]").get(doc) == [{"v": None}]
    assert compile_path("$[?(@.v < 2)]").get(doc) == [{"v": 1}, {"v": 1.0}]
    assert compile_path("$[?(@.v !== 1)]").get(doc) == [{"v": "1"}, {"v": "1.0"}, {"v": True}, {"v": None}]


def test_strings_order_by_utf16_code_units_like_java() -> None:
    doc = [{"s": "\uffff"}, {"s": "\U0001f600"}]
    # U+1F600 is the surrogate pair D83D DE00, so Java sorts it before U+FFFF
    assert compile_path("$[?(@.s < '\uffff')]").get(doc) == [{"s": "\U0001f600"}]
    assert compile_path("$[?(@.s > 'a')]").get([{"s": "b"}, {"s": 1}]) == [{"s": "b"}]


def test_string_literals_in_filters_unescape() -> None:
    doc = [{"s": "it's"}, {"s": 'say "hi"'}, {"s": "tab\there"}, {"s": "é"}]
    assert compile_path(r"$[?(@.s == 'it\'s')]").get(doc) == [{"s": "it's"}]
    assert compile_path(r'$[?(@.s == "say \"hi\"")]').get(doc) == [{"s": 'say "hi"'}]
    assert compile_path(r"$[?(@.s == 'tab\there')]").get(doc) == [{"s": "tab\there"}]
    assert compile_path(r"$[?(@.s == '\u00e9')]").get(doc) == [{"s": "é"}]


def test_regex_flags_and_non_string_subjects() -> None:
    doc = [{"v": "a\nb"}, {"v": 12}, {"v": True}, {"v": None}]
    assert compile_path(r"$[?(@.v =~ /a.b/s)]").get(doc) == [{"v": "a\nb"}]
    assert compile_path(r"$[?(@.v =~ /1\d/)]").get(doc) == [{"v": 12}]
    assert compile_path(r"$[?(@.v =~ /true/)]").get(doc) == [{"v": True}]
    assert compile_path(r"$[?(@.v =~ /^$/)]").get(doc) == [{"v": None}]  # null reads as ""


def test_list_operators() -> None:
    doc = [{"t": ["a", "b"]}, {"t": ["c"]}, {"t": []}, {"t": "ab"}]
    assert compile_path("$[?(@.t contains 'a')]").get(doc) == [{"t": ["a", "b"]}, {"t": "ab"}]
    assert compile_path("$[?(@.t subsetof ['a', 'b', 'x'])]").get(doc) == [{"t": ["a", "b"]}, {"t": []}]
    assert compile_path("$[?(@.t anyof ['b', 'c'])]").get(doc) == [{"t": ["a", "b"]}, {"t": ["c"]}]
    assert compile_path("$[?(@.t noneof ['a'])]").get(doc) == [{"t": ["c"]}, {"t": []}]
    assert compile_path("$[?(@.t all ['a', 'b'])]").get(doc) == [{"t": ["a", "b"]}]
    assert compile_path("$[?(@.t size 1)]").get(doc) == [{"t": ["c"]}]
    assert compile_path("$[?(@.t empty true)]").get(doc) == [{"t": []}]
    assert compile_path("$[?(@.t == ['c'])]").get(doc) == [{"t": ["c"]}]
    assert compile_path("$[?(@.n in [1, 2.5, {'k': 'v'}])]").get([{"n": 2.5}, {"n": 3}]) == [{"n": 2.5}]
    assert compile_path("$[?(@.n in 5)]").get([{"n": 5}]) == []  # in needs a list
    assert compile_path("$[?(@.t nin {'t': 1})]").get([{"t": 1}]) == [{"t": 1}]


def test_exists_checks_on_indefinite_and_nested_paths() -> None:
    doc = [{"a": {"b": [1]}}, {"a": {"b": []}}, {"a": {}}, {"c": 1}]
    assert compile_path("$[?(@.a.b)]").get(doc) == [{"a": {"b": [1]}}, {"a": {"b": []}}]
    assert compile_path("$[?(@.a.b[0])]").get(doc) == [{"a": {"b": [1]}}]
    assert compile_path("$[?(@.a.b[*])]").get(doc) == [{"a": {"b": [1]}}, {"a": {"b": []}}]
    assert compile_path("$[?(!@.a)]").get(doc) == [{"c": 1}]


def test_path_functions_never_match_inside_filters() -> None:
    assert compile_path("$[?(@.t.length() > 0)]").get([{"t": [1]}]) == []


# ---------------------------------------------------------------------------
# ResultPath: set_path
# ---------------------------------------------------------------------------


def test_set_path_root_replaces_the_document() -> None:
    assert set_path({"a": 1}, compile_reference_path("$"), [1]) == [1]


@pytest.mark.parametrize(
    ("doc", "text", "expected"),
    [
        ({"a": 1}, "$.b", {"a": 1, "b": "V"}),
        ({"a": 1}, "$.a", {"a": "V"}),
        ({}, "$.x.y.z", {"x": {"y": {"z": "V"}}}),
        ({"x": {"keep": 1}}, "$.x.y", {"x": {"keep": 1, "y": "V"}}),
        ({"l": [1, 2, 3]}, "$.l[1]", {"l": [1, "V", 3]}),
        ({"l": [1, 2, 3]}, "$.l[-1]", {"l": [1, 2, "V"]}),
        ({"l": [{"a": 1}]}, "$.l[0].b", {"l": [{"a": 1, "b": "V"}]}),
        ([0, {"a": 1}], "$[1].a", [0, {"a": "V"}]),
        ({"n": None}, "$.n", {"n": "V"}),
        ({"sp ace": {}}, "$['sp ace'].x", {"sp ace": {"x": "V"}}),
    ],
)
def test_set_path_places_the_value(doc: Any, text: str, expected: Any) -> None:
    assert set_path(doc, compile_reference_path(text), "V") == expected


def test_set_path_never_mutates_the_input_and_copies_only_the_path() -> None:
    doc = {"a": {"b": {"c": 1}, "side": {"x": 1}}, "other": [1, 2], "l": [{"k": 1}, {"k": 2}]}
    before = copy.deepcopy(doc)
    out = set_path(doc, compile_reference_path("$.a.b.d"), "new")
    assert doc == before
    assert out["a"]["b"] == {"c": 1, "d": "new"}
    assert out["a"]["side"] is doc["a"]["side"]
    assert out["other"] is doc["other"]
    assert out is not doc and out["a"] is not doc["a"] and out["a"]["b"] is not doc["a"]["b"]
    out_list = set_path(doc, compile_reference_path("$.l[1].k"), 9)
    assert doc == before
    assert out_list["l"][0] is doc["l"][0]
    assert out_list["l"][1] == {"k": 9}


@pytest.mark.parametrize(
    ("doc", "text", "cause"),
    [
        ("input1", "$.someTaskResult", 'Unable to apply ReferencePath $.someTaskResult to input "input1"'),
        ([{"a": 1}], "$.x", 'Unable to apply ReferencePath $.x to input [{"a":1}]'),
        (None, "$.x", "Unable to apply ReferencePath $.x to input null"),
        ({"a": 1}, "$[0]", 'Unable to apply ReferencePath $[0] to input {"a":1}'),
        ({"a": "s"}, "$.a.b", 'Unable to apply step "b" to input "s"'),
        ({"a": [1]}, "$.a.b.c", 'Unable to apply step "b" to input [1]'),
        ({"a": None}, "$.a.b", 'Unable to apply step "b" to input null'),
        ({"a": {}}, "$.a.b[0]", 'Unable to apply step "[0]" to input null'),
        ({"a": {"b": {}}}, "$.a.b[0]", 'Unable to apply step "[0]" to input {}'),
        ({"l": [1]}, "$.l[3]", 'Unable to apply step "[3]" to input [1]'),
        ({"l": [1]}, "$.l[-2].x", 'Unable to apply step "[-2]" to input [1]'),
    ],
)
def test_set_path_conflicts_raise_reference_path_conflict(doc: Any, text: str, cause: str) -> None:
    with pytest.raises(StatesError) as conflict:
        set_path(doc, compile_reference_path(text), 1)
    assert conflict.value.error == REFERENCE_PATH_CONFLICT == "States.ReferencePathConflict"
    assert conflict.value.cause == cause


def test_set_path_refuses_a_non_reference_path() -> None:
    with pytest.raises(InvalidPath, match="reference path"):
        set_path({}, compile_path("$.a[*]"), 1)
