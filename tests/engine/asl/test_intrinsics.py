"""Unit tests of the intrinsic function parser and the 18 States.* functions."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import uuid
from typing import Any

import pytest

from ceap_engine.asl.intrinsics import (
    FUNCTION_NAMES,
    IntrinsicCall,
    IntrinsicSyntaxError,
    is_intrinsic,
    parse_intrinsic,
)
from ceap_engine.errors import CeapError, StatesError


def run(text: str, values: dict[str, Any] | None = None, rng: random.Random | None = None) -> Any:
    """Evaluate ``text``; ``values`` maps each path, exactly as written, to its value."""
    values = values or {}
    return parse_intrinsic(text).evaluate(values.__getitem__, rng or random.Random(7))


def cause_of(text: str, values: dict[str, Any] | None = None) -> str:
    """The cause of the States.IntrinsicFailure that evaluating ``text`` raises."""
    with pytest.raises(StatesError) as raised:
        run(text, values)
    assert raised.value.error == "States.IntrinsicFailure"
    assert raised.value.cause
    return raised.value.cause


def syntax_error(text: str) -> IntrinsicSyntaxError:
    with pytest.raises(IntrinsicSyntaxError) as raised:
        parse_intrinsic(text)
    return raised.value


# --------------------------------------------------------------------------- recognising and parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("States.Format('x {}', $.a)", True),
        ("States.UUID()", True),
        ("$.a", False),
        ("$$.Execution.Id", False),
        (" States.Array()", False),
        ("states.Array()", False),
        (42, False),
    ],
)
def test_is_intrinsic(text: Any, expected: bool) -> None:
    assert is_intrinsic(text) is expected


def test_all_eighteen_functions_are_known() -> None:
    assert sorted(FUNCTION_NAMES) == sorted(
        f"States.{name}"
        for name in (
            "Format StringToJson JsonToString Array ArrayPartition ArrayContains ArrayRange"
            " ArrayGetItem ArrayLength ArrayUnique Base64Encode Base64Decode Hash JsonMerge"
            " MathRandom MathAdd StringSplit UUID"
        ).split()
    )


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("'plain'", "plain"),
        ("''", ""),
        (r"'it\'s'", "it's"),
        (r"'back\\slash'", "back\\slash"),
        (r"'\{braces\}'", "{braces}"),
        ("'{not a placeholder here}'", "{not a placeholder here}"),
        ("'line\nbreak'", "line\nbreak"),
        ("'a, b)'", "a, b)"),
        ("'$.not.a.path'", "$.not.a.path"),
        ("'States.Array()'", "States.Array()"),
        ("0", 0),
        ("-7", -7),
        ("2.5", 2.5),
        ("-0.25", -0.25),
        ("1e3", 1000.0),
        ("true", True),
        ("false", False),
        ("null", None),
    ],
)
def test_literal_arguments(literal: str, value: Any) -> None:
    result = run(f"States.Array({literal})")
    assert result == [value]
    assert type(result[0]) is type(value)


def test_whitespace_between_tokens_is_ignored() -> None:
    assert run("States.Array (\n  1 ,\t'a'  ,true )  ") == [1, "a", True]


@pytest.mark.parametrize(
    "path",
    [
        "$",
        "$.a",
        "$.a.b",
        "$$",
        "$$.Execution.Id",
        "$myVar",
        "$myVar.field",
        "$['key with, comma and )']",
        '$["double \\" quoted"]',
        "$.items[0]",
        "$.items[?(@.price < 10)].name",
    ],
)
def test_paths_reach_resolve_exactly_as_written(path: str) -> None:
    asked: list[str] = []

    def resolve(text: str) -> Any:
        asked.append(text)
        return "v"

    call = parse_intrinsic(f"States.Array({path}, 1)")
    assert call.evaluate(resolve, random.Random(0)) == ["v", 1]
    assert asked == [path]
    assert call.paths == (path,)


def test_paths_lists_every_path_in_evaluation_order() -> None:
    call = parse_intrinsic("States.Format('{} {}', States.ArrayGetItem($.a, $b), $$.c)")
    assert call.paths == ("$.a", "$b", "$$.c")
    assert call.function == "States.Format"


def test_nested_calls_evaluate_inside_out() -> None:
    text = (
        "States.ArrayGetItem(States.StringSplit($.name, '-'),"
        " States.MathAdd(States.ArrayLength(States.StringSplit($.name, '-')), -1))"
    )
    assert run(text, {"$.name": "alpha-beta-gamma"}) == "gamma"


def test_errors_of_resolve_propagate_unchanged() -> None:
    class PathMissing(Exception):
        pass

    def resolve(path: str) -> Any:
        raise PathMissing(path)

    with pytest.raises(PathMissing, match=r"\$\.missing"):
        parse_intrinsic("States.Array($.missing)").evaluate(resolve, random.Random(0))


def test_result_shares_nothing_with_resolved_values() -> None:
    data = {"$.obj": {"list": [1]}}
    result = run("States.Array($.obj, $.obj)", data)
    result[0]["list"].append(2)
    assert data["$.obj"] == {"list": [1]}
    assert result[1] == {"list": [1]}


def test_a_parsed_call_is_reusable_and_compares_by_text() -> None:
    call = parse_intrinsic("States.MathAdd($.n, 1)")
    assert [call.evaluate({"$.n": n}.__getitem__, random.Random(0)) for n in (1, 2)] == [2, 3]
    assert call == parse_intrinsic("States.MathAdd($.n, 1)")
    assert len({call, parse_intrinsic("States.MathAdd($.n, 1)")}) == 1
    assert repr(call) == "IntrinsicCall('States.MathAdd($.n, 1)')"
    assert isinstance(call, IntrinsicCall)


@pytest.mark.parametrize(
    ("text", "reason", "position"),
    [
        ("States.Nope(1)", "unknown intrinsic function States.Nope", 1),
        ("States.Formatt('x')", "did you mean States.Format?", 1),
        ("States.", "expected a function name", 1),
        ("States.Array", "expected '(' after States.Array", 13),
        ("States.Array(1", "missing ')' to close States.Array(", 15),
        ("States.Array(1 2)", "expected ',' or ')' after argument 1", 16),
        ("States.Array(1,)", "unexpected ')'", 16),
        ("States.Array(1))", "unexpected text after the closing ')'", 16),
        ("States.Array('open", "string literal is not closed", 14),
        ("States.Array('ends with a backslash\\", "string literal is not closed", 14),
        ('States.Array("double")', "string literals use single quotes", 14),
        ("States.Array(yes)", "unexpected word 'yes'", 14),
        ("States.Array(12ab)", "malformed number '12a'", 14),
        ("States.Array(-)", "expected a number after '-'", 14),
        ("States.Array($['open)", "quoted name in path is not closed", 16),
        ("States.Array($.a[0)", "is missing a ']'", 14),
        ("States.Array(", "the call ends where an argument was expected", 14),
    ],
)
def test_malformed_text_is_refused_with_where_and_why(text: str, reason: str, position: int) -> None:
    error = syntax_error(text)
    assert reason in error.reason
    assert error.position is not None and error.position + 1 == position
    assert f"at character {position}" in str(error)
    assert error.text == text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("States.UUID(1)", "States.UUID takes no arguments, got 1"),
        ("States.ArrayLength()", "takes exactly 1 argument(s) (array), got 0"),
        ("States.ArrayRange(1, 2)", "takes exactly 3 argument(s) (start, end, step), got 2"),
        ("States.MathRandom(1)", "takes 2 or 3 arguments (start, end, seed), got 1"),
        ("States.MathRandom(1, 2, 3, 4)", "takes 2 or 3 arguments"),
        ("States.Format()", "takes at least 1 argument(s)"),
        ("States.Format('{} and {}', 1)", "has 2 '{}' placeholder(s) but 1 value(s)"),
        ("States.Format('no placeholder', 1)", "has 0 '{}' placeholder(s) but 1 value(s)"),
        ("States.Format(3)", "argument 1 (template) must be a string, got a number 3"),
        ("States.Hash($.data, 'SHA-3')", "argument 2 (algorithm) must be one of MD5, SHA-1"),
        ("States.Hash($.data, 'sha-256')", "spelled exactly so"),
        ("States.JsonMerge($.a, $.b, true)", "only supports a shallow merge"),
        ("States.ArrayLength('abc')", "argument 1 (array) must be an array, got a string"),
        ("States.MathAdd('1', 2)", "argument 1 (first number) must be an integer"),
        ("States.MathAdd(2147483648, 1)", "from -2147483648 to 2147483647"),
        ("States.ArrayGetItem($.a, -1)", "argument 2 (index) must be a non-negative integer"),
        ("States.Base64Encode('" + "x" * 10_001 + "')", "at most 10000 characters"),
    ],
)
def test_calls_that_can_never_run_are_refused_at_load(text: str, reason: str) -> None:
    assert reason in syntax_error(text).reason


def test_syntax_error_is_a_value_error_and_a_ceap_error() -> None:
    error = syntax_error("States.Nope()")
    assert isinstance(error, ValueError)
    assert isinstance(error, CeapError)


def test_non_string_definition_value_is_refused() -> None:
    assert "must be a string" in syntax_error(17).reason  # type: ignore[arg-type]


# --------------------------------------------------------------------------- States.Format


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("", ""),
        ("Ada", "Ada"),
        (None, "null"),
        (True, "true"),
        (1, "1"),
        (1.1, "1.1"),
        ({"Arg1": 1, "Arg2": []}, "{Arg1=1, Arg2=[]}"),
        ([1, "two", None, {"k": [True]}], "[1, two, null, {k=[true]}]"),
        ('{"Arg1": 1}', '{"Arg1": 1}'),
    ],
)
def test_format_writes_values_as_aws_does(value: Any, text: str) -> None:
    assert run("States.Format('<{}>', $.v)", {"$.v": value}) == f"<{text}>"


def test_format_fills_placeholders_in_order() -> None:
    result = run("States.Format('{} and {}.', $.a, 2)", {"$.a": "one"})
    assert result == "one and 2."


def test_format_escaped_braces_are_text_not_placeholders() -> None:
    assert run(r"States.Format('\{\} {} \{x\}', 1)") == "{} 1 {x}"


def test_format_template_from_a_path() -> None:
    assert run("States.Format($.t, 'Ada')", {"$.t": "Hello, {}!"}) == "Hello, Ada!"


def test_format_template_from_a_path_with_wrong_placeholder_count_fails_at_run_time() -> None:
    cause = cause_of("States.Format($.t, 1)", {"$.t": "{} {}"})
    assert cause.startswith("States.Format: the template has 2 '{}' placeholder(s) but 1 value(s)")


def test_format_template_from_a_path_must_be_a_string() -> None:
    assert "argument 1 (template) must be a string" in cause_of("States.Format($.t)", {"$.t": 5})


# --------------------------------------------------------------------------- JSON text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("", None),
        (" ", None),
        ("null", None),
        ("-0", 0),
        ("1.1", 1.1),
        ("true", True),
        ('"HelloWorld"', "HelloWorld"),
        ('[1, 2, "x"]', [1, 2, "x"]),
        (' {"Arg1": 1, "Arg2": []} ', {"Arg1": 1, "Arg2": []}),
    ],
)
def test_string_to_json(text: str, value: Any) -> None:
    assert run("States.StringToJson($.s)", {"$.s": text}) == value


@pytest.mark.parametrize("text", ["{bad", "NaN", "[1,", "'single'"])
def test_string_to_json_refuses_text_that_is_not_json(text: str) -> None:
    assert "is not valid JSON text" in cause_of("States.StringToJson($.s)", {"$.s": text})


def test_string_to_json_needs_a_string() -> None:
    assert "must be a string, got an object" in cause_of("States.StringToJson($.s)", {"$.s": {}})


def test_string_to_json_of_literals() -> None:
    # Braces need no escape outside States.Format (recorded on AWS); a backslash does.
    assert run("States.StringToJson('{\"a\": \"x\\\\\"y\"}')") == {"a": 'x"y'}
    assert run(r"States.StringToJson('\{\}')") == {}


def test_an_open_escape_in_a_literal_loads_but_fails_when_evaluated() -> None:
    # The AWS guide: "If an open escape backslash \ is found in the intrinsic
    # invocation string, the interpreter will throw a runtime error."
    text = "States.StringToJson('{\"a\": \"x\\qy\"}')"
    call = parse_intrinsic(text)
    with pytest.raises(StatesError) as raised:
        call.evaluate({}.__getitem__, random.Random(0))
    assert raised.value.error == "States.IntrinsicFailure"
    assert raised.value.cause.startswith(f"open escape at character 30 of {text}: in a string literal")


def test_an_escaped_double_quote_in_a_literal_is_refused_when_loading() -> None:
    # Unlike other open escapes, AWS's ValidateStateMachineDefinition refuses \" (issue 14).
    with pytest.raises(IntrinsicSyntaxError, match="cannot hold"):
        parse_intrinsic("States.StringToJson('{\"a\": \"x\\\"y\"}')")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (0, "0"),
        (1.1, "1.1"),
        (True, "true"),
        ("HelloWorld", '"HelloWorld"'),
        ([1, 2, "HelloWorld"], '[1,2,"HelloWorld"]'),
        ({"Arg1": 1, "Arg2": []}, '{"Arg1":1,"Arg2":[]}'),
        ({"name": "Zoë ✓"}, '{"name":"Zoë ✓"}'),
    ],
)
def test_json_to_string_is_compact(value: Any, text: str) -> None:
    assert run("States.JsonToString($.v)", {"$.v": value}) == text


# --------------------------------------------------------------------------- arrays


def test_array_collects_its_arguments() -> None:
    assert run("States.Array()") == []
    assert run("States.Array($.a, 'b', 3, null)", {"$.a": {"x": 1}}) == [{"x": 1}, "b", 3, None]


@pytest.mark.parametrize(
    ("items", "size", "chunks"),
    [
        ([], 1, []),
        ([0, 1, 2, 3], 1, [[0], [1], [2], [3]]),
        ([0, 1, 2, 3], 3, [[0, 1, 2], [3]]),
        ([0, 1, 2, 3], 5, [[0, 1, 2, 3]]),
        ([0, 1, 2, 3], 1.5, [[0, 1], [2, 3]]),  # rounded to 2
    ],
)
def test_array_partition(items: list[Any], size: Any, chunks: list[Any]) -> None:
    assert run("States.ArrayPartition($.a, $.n)", {"$.a": items, "$.n": size}) == chunks


@pytest.mark.parametrize(("size", "shown"), [(0, "0"), (-2, "-2"), (0.4, "0")])
def test_array_partition_needs_a_positive_chunk_size(size: Any, shown: str) -> None:
    cause = cause_of("States.ArrayPartition($.a, $.n)", {"$.a": [1], "$.n": size})
    assert cause == f"States.ArrayPartition: the chunk size must be a positive integer, got {shown}"


def test_array_partition_needs_an_array() -> None:
    cause = cause_of("States.ArrayPartition($.a, 1)", {"$.a": "abc"})
    assert cause == 'States.ArrayPartition: argument 1 (array) must be an array, got a string "abc"'


@pytest.mark.parametrize(
    ("items", "value", "found"),
    [
        ([], None, False),
        ([[1, 2, 3], 2], [1, 2, 3], True),
        ([{"1": 2, "2": []}], {"2": [], "1": 2}, True),
        ([{"1": 2, "2": []}], [], False),
        ([1, 2], True, False),
        ([True], 1, False),
        ([1.0], 1, True),
        ([None], None, True),
        (["1"], 1, False),
    ],
)
def test_array_contains_compares_json_values(items: list[Any], value: Any, found: bool) -> None:
    assert run("States.ArrayContains($.a, $.v)", {"$.a": items, "$.v": value}) is found


@pytest.mark.parametrize(
    ("start", "end", "step", "values"),
    [
        (1, 9, 2, [1, 3, 5, 7, 9]),
        (0, 10, 3, [0, 3, 6, 9]),
        (1, 9, 9, [1]),
        (5, 5, 1, [5]),
        (10, 1, -3, [10, 7, 4, 1]),
        (1, 10, -1, []),
        (10, 1, 1, []),
        (0.5, 2.5, 1.4, [1, 2, 3]),  # rounded to (1, 3, 1)
    ],
)
def test_array_range_includes_the_end(start: Any, end: Any, step: Any, values: list[int]) -> None:
    result = run("States.ArrayRange($.s, $.e, $.t)", {"$.s": start, "$.e": end, "$.t": step})
    assert result == values


def test_array_range_allows_1000_items_and_no_more() -> None:
    assert len(run("States.ArrayRange(1, 1000, 1)")) == 1000
    cause = cause_of("States.ArrayRange(1, 1001, 1)")
    assert "has 1001 items, more than the limit of 1000" in cause


def test_array_range_needs_a_step_other_than_zero() -> None:
    assert cause_of("States.ArrayRange(1, 2, $.t)", {"$.t": 0}) == (
        "States.ArrayRange: the step (third argument) must not be 0"
    )


def test_array_range_needs_numbers() -> None:
    cause = cause_of("States.ArrayRange($.s, 2, 1)", {"$.s": "1"})
    assert cause == 'States.ArrayRange: argument 1 (start) must be an integer, got a string "1"'


def test_array_get_item() -> None:
    data = {"$.a": [1, 2, 3, 4, 5, 6, 7, 8, 9]}
    assert run("States.ArrayGetItem($.a, 5)", data) == 6
    assert run("States.ArrayGetItem($.a, $.i)", {**data, "$.i": 0.0}) == 1


@pytest.mark.parametrize(
    ("items", "index", "cause"),
    [
        ([1, 2, 3], 3, "the index 3 is out of bounds for an array of 3 item(s) (valid indexes are 0 to 2)"),
        ([], 0, "the index 0 is out of bounds for an array of 0 item(s)"),
        ([1], -1, "argument 2 (index) must be a non-negative integer, got -1"),
        ([1], 0.5, "argument 2 (index) must be a non-negative integer, got a number 0.5"),
        ([1], "0", 'argument 2 (index) must be a non-negative integer, got a string "0"'),
    ],
)
def test_array_get_item_failures(items: list[Any], index: Any, cause: str) -> None:
    assert cause_of("States.ArrayGetItem($.a, $.i)", {"$.a": items, "$.i": index}) == (
        f"States.ArrayGetItem: {cause}"
    )


def test_array_length() -> None:
    assert run("States.ArrayLength($.a)", {"$.a": [None, None, [], {}]}) == 4
    assert "must be an array, got an object" in cause_of("States.ArrayLength($.a)", {"$.a": {}})


def test_array_unique_keeps_first_occurrences_in_order() -> None:
    items = [1, 2, 2, 3, 3, 4, 1, {"a": 1, "b": 2}, {"b": 2, "a": 1}, [None], [None], True, 1.0, "1"]
    assert run("States.ArrayUnique($.a)", {"$.a": items}) == [
        1, 2, 3, 4, {"a": 1, "b": 2}, [None], True, "1",
    ]


# --------------------------------------------------------------------------- encoding and hashing


@pytest.mark.parametrize(
    ("text", "encoded"),
    [("", ""), ("Data to encode", "RGF0YSB0byBlbmNvZGU="), ("Zoë ✓", "Wm/DqyDinJM=")],
)
def test_base64_round_trip(text: str, encoded: str) -> None:
    assert run("States.Base64Encode($.s)", {"$.s": text}) == encoded
    assert run("States.Base64Decode($.s)", {"$.s": encoded}) == text


def test_base64_decode_accepts_missing_padding() -> None:
    assert run("States.Base64Decode('SGk')") == "Hi"


@pytest.mark.parametrize("text", ["SGk=x", "S", "SGk*", "SG=k", "SGk=\n", "SGk==="])
def test_base64_decode_refuses_text_that_is_not_base64(text: str) -> None:
    cause = cause_of("States.Base64Decode($.s)", {"$.s": text})
    assert cause.startswith("States.Base64Decode: the argument is not valid base64 text")


def test_base64_decode_of_bytes_that_are_not_utf8_gives_replacement_characters() -> None:
    encoded = base64.b64encode(b"ok\xff").decode()
    assert run("States.Base64Decode($.s)", {"$.s": encoded}) == "ok\ufffd"


@pytest.mark.parametrize("function", ["Base64Encode", "Base64Decode"])
def test_base64_input_is_limited_to_10000_characters(function: str) -> None:
    text = "QUJD" * 2500
    run(f"States.{function}($.s)", {"$.s": text})
    cause = cause_of(f"States.{function}($.s)", {"$.s": text + "QQ"})
    assert "must be a string of at most 10000 characters, got 10002 characters" in cause


# Recorded on AWS for the data "input data".
@pytest.mark.parametrize(
    ("algorithm", "digest"),
    [
        ("MD5", "812f45842bc6d66ee14572ce20db8e86"),
        ("SHA-1", "aaff4a450a104cd177d28d18d74485e8cae074b7"),
        ("SHA-256", "b4a697a057313163aee33cd8d40c66e9f0f177e00cac2de32475ffff6169c3e3"),
        ("SHA-384", "d28a7d5cf25a74f11a50a18452b75e04bb3d70c9dd0510d6123aa008c756511b87525bdc835ebb27e1fb9e9374a15562"),
        ("SHA-512", "6ce4adb348546d4f449c4d25aad9a7c9cb711d9e91982d3f0b29ca2f3f47d4ce2deba23bf2954f0f1d593fc50283731a533d30d425402d4f91316d871303aac4"),
    ],
)
def test_hash(algorithm: str, digest: str) -> None:
    assert run(f"States.Hash('input data', '{algorithm}')") == digest


def test_hash_hashes_utf8_bytes() -> None:
    assert run("States.Hash($.s, 'SHA-256')", {"$.s": "Zoë"}) == hashlib.sha256("Zoë".encode()).hexdigest()


def test_hash_algorithm_from_a_path_is_checked_at_run_time() -> None:
    cause = cause_of("States.Hash('x', $.alg)", {"$.alg": "SHA-3"})
    assert cause.startswith("States.Hash: argument 2 (algorithm) must be one of MD5, SHA-1, SHA-256")


def test_hash_input_is_limited_to_10000_characters() -> None:
    assert len(run("States.Hash($.s, 'MD5')", {"$.s": "x" * 10_000})) == 32
    assert "at most 10000 characters" in cause_of("States.Hash($.s, 'MD5')", {"$.s": "x" * 10_001})


def test_hash_needs_a_string() -> None:
    assert "argument 1 (data) must be a string" in cause_of("States.Hash($.s, 'MD5')", {"$.s": [1]})


# --------------------------------------------------------------------------- JsonMerge


def test_json_merge_is_shallow_and_the_second_object_wins() -> None:
    first = {"a": {"a1": 1, "a2": 2}, "b": 2, "d": 3}
    second = {"a": {"a3": 1, "a4": 2}, "c": 3, "d": 4}
    assert run("States.JsonMerge($.x, $.y, false)", {"$.x": first, "$.y": second}) == {
        "a": {"a3": 1, "a4": 2}, "b": 2, "c": 3, "d": 4,
    }


def test_json_merge_deep_flag_from_a_path_fails_at_run_time() -> None:
    cause = cause_of("States.JsonMerge($.x, $.y, $.deep)", {"$.x": {}, "$.y": {}, "$.deep": True})
    assert "argument 3 (deep merge flag) must be false" in cause


@pytest.mark.parametrize(("first", "position"), [([], 1), ("{}", 1), (None, 1)])
def test_json_merge_needs_objects(first: Any, position: int) -> None:
    cause = cause_of("States.JsonMerge($.x, $.y, false)", {"$.x": first, "$.y": {}})
    assert f"argument {position} (first object) must be a JSON object" in cause


# --------------------------------------------------------------------------- math


@pytest.mark.parametrize(
    ("a", "b", "total"),
    [
        (-9, 3, -6),
        (1.49, 1.5, 3),
        (1.5, 1.51, 4),
        (-1.49, -1.5, -2),
        (-1.5, -1.51, -3),
        (0.5, 0, 1),
        (-0.5, 0, 0),
        (-2.5, 0, -2),
        (2.5, 0, 3),
        (0.49999999999999994, 0, 0),
        (2147483647, 0, 2147483647),
        (-2147483648, 0, -2147483648),
    ],
)
def test_math_add_rounds_halves_up_like_aws(a: Any, b: Any, total: int) -> None:
    assert run("States.MathAdd($.a, $.b)", {"$.a": a, "$.b": b}) == total


@pytest.mark.parametrize(
    ("a", "reason"),
    [
        (2147483648, "from -2147483648 to 2147483647, got a number 2147483648"),
        (-2147483649, "from -2147483648 to 2147483647"),
        ("1", 'must be an integer, got a string "1"'),
        (True, "must be an integer, got a boolean true"),
        (None, "must be an integer, got null"),
    ],
)
def test_math_add_failures(a: Any, reason: str) -> None:
    assert reason in cause_of("States.MathAdd($.a, 1)", {"$.a": a})


def test_math_random_stays_within_start_and_below_end() -> None:
    rng = random.Random(11)
    draws = {run("States.MathRandom(-2, 3)", rng=rng) for _ in range(400)}
    assert draws == {-2, -1, 0, 1, 2}


def test_math_random_rounds_its_bounds() -> None:
    rng = random.Random(3)
    draws = {run("States.MathRandom($.s, $.e)", {"$.s": 12.5, "$.e": 15.4}, rng) for _ in range(200)}
    assert draws == {13, 14}


def test_math_random_is_reproducible_from_the_rng_seed() -> None:
    rng_a, rng_b = random.Random(5), random.Random(5)
    first = [run("States.MathRandom(0, 1000000)", rng=rng_a) for _ in range(3)]
    assert first == [run("States.MathRandom(0, 1000000)", rng=rng_b) for _ in range(3)]
    assert len(set(first)) > 1


def test_math_random_with_a_seed_ignores_the_rng() -> None:
    values = {run("States.MathRandom(0, 999, 3)", rng=random.Random(seed)) for seed in range(5)}
    assert len(values) == 1
    assert 0 <= values.pop() < 999


def test_math_random_different_seeds_give_a_spread_of_values() -> None:
    values = {run(f"States.MathRandom(0, 1000000, {seed})") for seed in range(20)}
    assert len(values) > 15


@pytest.mark.parametrize(("start", "end"), [(5, 5), (6, 5)])
def test_math_random_needs_end_greater_than_start(start: int, end: int) -> None:
    cause = cause_of("States.MathRandom($.s, $.e)", {"$.s": start, "$.e": end})
    assert cause == f"States.MathRandom: the end ({end}) must be greater than the start ({start})"


# --------------------------------------------------------------------------- strings and ids


@pytest.mark.parametrize(
    ("text", "delimiters", "parts"),
    [
        (" ", ",", [" "]),
        (" , ", ",", [" ", " "]),
        (", , ,", ",", [" ", " "]),
        (",,,,", ",", []),
        ("", ",", []),
        ("1,2,3,4,5", ",", ["1", "2", "3", "4", "5"]),
        ("This.is+a,test=string", ".+,=", ["This", "is", "a", "test", "string"]),
        ("split on T and \nnew line", "T\n", ["split on ", " and ", "new line"]),
        ("no delimiter", "", ["no delimiter"]),
    ],
)
def test_string_split_splits_on_each_delimiter_character(
    text: str, delimiters: str, parts: list[str]
) -> None:
    assert run("States.StringSplit($.s, $.d)", {"$.s": text, "$.d": delimiters}) == parts


def test_string_split_needs_strings() -> None:
    cause = cause_of("States.StringSplit($.s, ',')", {"$.s": 123})
    assert cause == "States.StringSplit: argument 1 (string) must be a string, got a number 123"


def test_uuid_is_a_version_4_uuid() -> None:
    value = run("States.UUID()")
    parsed = uuid.UUID(value)
    assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, value)


def test_uuid_is_reproducible_from_the_rng_seed_and_differs_between_calls() -> None:
    rng_a, rng_b = random.Random(99), random.Random(99)
    first = [run("States.UUID()", rng=rng_a) for _ in range(3)]
    assert first == [run("States.UUID()", rng=rng_b) for _ in range(3)]
    assert len(set(first)) == 3


def test_failure_cause_is_json_serialisable_text() -> None:
    cause = cause_of("States.ArrayLength($.a)", {"$.a": "x" * 500})
    assert json.loads(json.dumps(cause)) == cause
    assert len(cause) < 200  # long values are shortened in messages
