"""JSONata states: expressions, $states, AWS's added functions, Assign order and QueryEvaluationError."""

import json
import random

import pytest

from ceap_engine.asl.definition import load_definition, validate_definition
from ceap_engine.asl.interpreter import Engine
from ceap_engine.asl.jsonata_flow import JsonataSyntaxError, compile_jsonata, is_jsonata
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.runtime.tasks import LambdaFunctions, TaskRunners

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


async def run(definition, input=None, functions=None):
    runners = TaskRunners()
    fns = runners.register_lambda(LambdaFunctions())
    for name, handler in (functions or {}).items():
        fns.register(name, handler)
    engine = Engine(clock=VirtualClock(start=T0), runners=runners, seed=7)
    return await engine.execute(load_definition(definition), {} if input is None else input)


def jsonata(states, start=None):
    return {"QueryLanguage": "JSONata", "StartAt": start or next(iter(states)), "States": states}


def evaluate(text, bindings=None):
    return compile_jsonata(text).evaluate(bindings or {}, random.Random(1))


# -- expressions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("{% 1 + 2 %}", 3),
        ("{% 4 / 2 %}", 2),  # integral results are integers, as AWS prints them
        ("{% 5 / 2 %}", 2.5),
        ("{% null %}", None),
        ("{% [1, 'two'][1] %}", "two"),
        ("{% $partition([1, 2, 3], 2) %}", [[1, 2], [3]]),
        ("{% $range(0, 9, 3) %}", [0, 3, 6, 9]),
        ("{% $range(1, 9, 9) %}", 1),  # a sequence of one item is that item (recorded on AWS)
        ("{% $parse('{\"a\": [1, null]}') %}", {"a": [1, None]}),
        ("{% $hash('Hash this string', 'SHA-256') %}",
         "1cac63f39fd68d8c531f27b807610fb3d50f0fc3f186995767fb6316e7200a3e"),
    ],
)
def test_expression_values(text, value):
    result = evaluate(text)
    assert result == value and type(result) is type(value)


def test_uuid_and_random_come_from_the_execution_random_source():
    first = evaluate("{% [$uuid(), $random()] %}")
    assert first == evaluate("{% [$uuid(), $random()] %}")  # same seed, same values
    assert len(first[0]) == 36 and 0 <= first[1] < 1
    assert evaluate("{% $random(42) %}") == evaluate("{% $random(42) %}")


def test_is_jsonata_needs_both_delimiters():
    assert is_jsonata("{% $x %}") and not is_jsonata(" {% $x %} ") and not is_jsonata("$x") and not is_jsonata(3)


@pytest.mark.parametrize("text", ["{% %}", "{% $foo( %}", "{% 1 + %}"])
def test_syntax_errors_are_refused_when_compiled(text):
    with pytest.raises(JsonataSyntaxError):
        compile_jsonata(text)


def test_definition_validation_reports_bad_expressions_with_their_pointer():
    problems = validate_definition(jsonata({"P": {"Type": "Pass", "Output": {"x": "{% $foo( %}"}, "End": True}}))
    assert [p.path for p in problems] == ["/States/P/Output/x"]


def test_jsonpath_only_fields_are_refused_in_jsonata_states():
    problems = validate_definition(jsonata({"P": {"Type": "Pass", "Parameters": {}, "ResultPath": "$.x", "End": True}}))
    assert {p.message.split("'")[1] for p in problems} == {"Parameters", "ResultPath"}


# -- states ------------------------------------------------------------------------------------


async def test_states_input_context_and_variables_in_output():
    definition = {
        "StartAt": "Init",
        "States": {
            "Init": {"Type": "Pass", "Assign": {"factor": 10}, "Next": "Calc"},
            "Calc": {"Type": "Pass", "QueryLanguage": "JSONata", "End": True, "Output": {
                "total": "{% $sum($states.input.values) * $factor %}",
                "state": "{% $states.context.State.Name %}",
                "literal": "$states.input",
            }},
        },
    }
    result = await run(definition, {"values": [1, 2, 3]})
    assert result.output == {"total": 60, "state": "Calc", "literal": "$states.input"}


async def test_task_arguments_result_and_output():
    definition = jsonata({"T": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": True,
        "Arguments": {"FunctionName": "double", "Payload": {"n": "{% $states.input.n %}"}},
        "Output": {"doubled": "{% $states.result.Payload %}", "input": "{% $states.input.n %}"},
    }})
    result = await run(definition, {"n": 21}, functions={"double": lambda event, ctx: event["n"] * 2})
    assert result.output == {"doubled": 42, "input": 21}


async def test_assign_sees_the_old_values_and_new_values_show_from_the_next_state():
    definition = jsonata({
        "A": {"Type": "Pass", "Assign": {"x": 1}, "Next": "B"},
        "B": {"Type": "Pass", "Assign": {"x": "{% $x + 1 %}", "seen": "{% $x %}"}, "Output": "{% $x %}", "Next": "C"},
        "C": {"Type": "Pass", "Output": {"x": "{% $x %}", "seen": "{% $seen %}"}, "End": True},
    })
    result = await run(definition)
    assert result.output == {"x": 2, "seen": 1}
    exited = [e for e in result.history.to_aws() if e["type"] == "PassStateExited"]
    assert exited[1]["stateExitedEventDetails"]["output"] == "1"
    assert exited[1]["stateExitedEventDetails"]["assignedVariables"] == {"x": "2", "seen": "1"}
    assert "assignedVariables" not in exited[2]["stateExitedEventDetails"]


async def test_choice_condition_with_rule_output_and_assign():
    definition = jsonata({
        "C": {"Type": "Choice", "Default": "No", "Output": "default", "Choices": [
            {"Condition": "{% $states.input.n > 1 %}", "Next": "Yes", "Output": "{% $states.input.n %}",
             "Assign": {"which": "rule"}},
        ]},
        "Yes": {"Type": "Pass", "Output": {"got": "{% $states.input %}", "which": "{% $which %}"}, "End": True},
        "No": {"Type": "Succeed"},
    })
    assert (await run(definition, {"n": 5})).output == {"got": 5, "which": "rule"}
    assert (await run(definition, {"n": 0})).output == "default"


async def test_choice_condition_must_be_boolean():
    definition = jsonata({"C": {"Type": "Choice", "Default": "D", "Choices": [
        {"Condition": "{% $states.input.n %}", "Next": "D"}]}, "D": {"Type": "Succeed"}})
    result = await run(definition, {"n": 3})
    assert result.error == "States.QueryEvaluationError"
    assert "Expected 'boolean', but was 'number' for value: 3" in result.cause


async def test_map_items_item_selector_and_expression_settings():
    definition = jsonata({"M": {
        "Type": "Map", "End": True, "Items": "{% $states.input.xs %}", "MaxConcurrency": "{% 1 %}",
        "ItemSelector": {"v": "{% $states.context.Map.Item.Value * 10 %}", "i": "{% $states.context.Map.Item.Index %}"},
        "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
        "Output": "{% $states.result.v %}",
    }})
    result = await run(definition, {"xs": [1, 2, 3]})
    assert result.output == [10, 20, 30]


async def test_catch_output_and_assign_see_the_error_output():
    definition = jsonata({
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": "Done",
              "Arguments": {"FunctionName": "boom"},
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Done",
                         "Output": {"error": "{% $states.errorOutput.Error %}", "in": "{% $states.input %}"},
                         "Assign": {"failed": "{% $states.errorOutput.Error %}"}}]},
        "Done": {"Type": "Pass", "Output": {"out": "{% $states.input %}", "failed": "{% $failed %}"}, "End": True},
    })

    def boom(event, context):
        raise ValueError("bad")

    result = await run(definition, {"k": 1}, functions={"boom": boom})
    assert result.output == {"out": {"error": "ValueError", "in": {"k": 1}}, "failed": "ValueError"}


async def test_fail_error_and_cause_from_expressions():
    definition = jsonata({"F": {"Type": "Fail", "Error": "{% $states.input.e %}", "Cause": "{% 'because ' & $states.input.c %}"}})
    result = await run(definition, {"e": "Custom.Error", "c": "reasons"})
    assert (result.error, result.cause) == ("Custom.Error", "because reasons")


async def test_wait_seconds_from_an_expression_waits_on_the_clock():
    definition = jsonata({"W": {"Type": "Wait", "Seconds": "{% $states.input.s * 2 %}", "End": True}})
    result = await run(definition, {"s": 30})
    assert result.status == "SUCCEEDED" and result.stop_time - result.start_time == 60


# -- failures ------------------------------------------------------------------------------------


async def test_undefined_result_fails_with_an_evaluation_failed_event():
    definition = jsonata({"P": {"Type": "Pass", "Output": {"result": "{% $doesNotExist %}"}, "End": True}})
    result = await run(definition)
    assert result.error == "States.QueryEvaluationError"
    assert result.cause == ("An error occurred while executing the state 'P' (entered at the event id #2). The JSONata "
                            "expression '$doesNotExist' specified for the field 'Output/result' returned nothing (undefined).")
    events = result.history.to_aws()
    assert [e["type"] for e in events] == ["ExecutionStarted", "PassStateEntered", "EvaluationFailed", "ExecutionFailed"]
    assert events[2]["evaluationFailedEventDetails"]["location"] == "Output/result"
    assert events[2]["previousEventId"] == events[1]["previousEventId"]


async def test_jsonata_runtime_errors_fail_the_state():
    definition = jsonata({"P": {"Type": "Pass", "Output": "{% $number('x') %}", "End": True}})
    result = await run(definition)
    assert result.error == "States.QueryEvaluationError" and "threw an error during evaluation" in result.cause


async def test_map_items_must_be_an_array():
    definition = jsonata({"M": {"Type": "Map", "End": True, "Items": "{% $states.input.xs %}",
                                "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}}})
    result = await run(definition, {"xs": {"a": 1}})
    assert result.cause.endswith(
        "The JSONata expression '$states.input.xs' specified for the field 'Items' returned an unexpected result type. "
        "Expected 'array', but was 'object' for value: {\"a\":1}"
    )
    assert result.history.types()[-2:] == ["MapStateFailed", "ExecutionFailed"]


async def test_query_evaluation_error_can_be_caught_by_a_task():
    definition = jsonata({
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": "Done",
              "Arguments": {"FunctionName": "{% $states.input.missing %}"},
              "Catch": [{"ErrorEquals": ["States.QueryEvaluationError"], "Next": "Done"}]},
        "Done": {"Type": "Succeed"},
    })
    result = await run(definition, {})
    assert result.status == "SUCCEEDED" and result.output["Error"] == "States.QueryEvaluationError"
    assert json.dumps(result.output).count("returned nothing (undefined)") == 1


async def test_now_and_millis_follow_the_execution_clock():
    definition = jsonata({
        "W": {"Type": "Wait", "Seconds": 90, "Next": "P"},
        "P": {"Type": "Pass", "Output": {"now": "{% $now() %}", "millis": "{% $millis() %}"}, "End": True},
    })
    result = await run(definition)
    assert result.output == {"now": "2026-01-01T00:01:30.000Z", "millis": int((T0 + 90) * 1000)}


async def test_jsonpath_assign_reads_the_result_after_result_selector():
    definition = {"StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Next": "P",
              "Parameters": {"FunctionName": "f"}, "ResultSelector": {"body.$": "$.Payload"},
              "Assign": {"got.$": "$.body"}, "ResultPath": "$.r"},
        "P": {"Type": "Pass", "Parameters": {"got.$": "$got"}, "End": True},
    }}
    result = await run(definition, {}, functions={"f": lambda event, ctx: {"k": 1}})
    assert result.output == {"got": {"k": 1}}
