"""Definition validation: every problem at once, each with its JSON pointer."""

import pytest

from ceap_engine.asl.definition import load_definition, validate_definition
from ceap_engine.errors import DefinitionError


def problems(definition):
    return {(p.path, p.code) for p in validate_definition(definition)}


def messages(definition):
    return [str(p) for p in validate_definition(definition)]


def machine(**states):
    return {"StartAt": next(iter(states)), "States": states}


def task(**extra):
    return {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": True} | extra


def test_a_valid_definition_has_no_problems():
    assert validate_definition(machine(A={"Type": "Pass", "Next": "B"}, B={"Type": "Succeed"})) == []


def test_every_problem_is_reported_at_once():
    definition = {"StartAt": "Nope", "States": {
        "A": {"Type": "Pass", "Next": "Missing", "End": True},
        "B": {"Type": "Pass", "Retry": []},
        "C": {"Type": "Wat"},
    }}
    found = problems(definition)
    assert ("/StartAt", "MISSING_TRANSITION_TARGET") in found
    assert ("/States/A", "SCHEMA_VALIDATION_FAILED") in found  # Next and End together
    assert ("/States/A/Next", "MISSING_TRANSITION_TARGET") in found
    assert ("/States/B/Retry", "SCHEMA_VALIDATION_FAILED") in found  # Retry only on Task/Parallel/Map
    assert ("/States/C/Type", "SCHEMA_VALIDATION_FAILED") in found
    assert len(found) >= 6


@pytest.mark.parametrize(
    ("retry", "path", "fragment"),
    [
        ({"ErrorEquals": ["States.ALL"], "IntervalSeconds": 0}, "/States/T/Retry/0/IntervalSeconds", ">= 1"),
        ({"ErrorEquals": ["States.ALL"], "MaxAttempts": -1}, "/States/T/Retry/0/MaxAttempts", ">= 0"),
        ({"ErrorEquals": ["States.ALL"], "BackoffRate": 0.5}, "/States/T/Retry/0/BackoffRate", ">= 1.0"),
        ({"ErrorEquals": ["States.ALL"], "MaxDelaySeconds": 0}, "/States/T/Retry/0/MaxDelaySeconds", ">= 1"),
        ({"ErrorEquals": ["States.ALL"], "JitterStrategy": "SOME"}, "/States/T/Retry/0/JitterStrategy", "FULL, NONE"),
        ({"ErrorEquals": ["States.ALL"], "Nope": 1}, "/States/T/Retry/0", "not supported"),
        ({"ErrorEquals": []}, "/States/T/Retry/0/ErrorEquals", "non-empty"),
        ({"ErrorEquals": ["States.ALL", "X"]}, "/States/T/Retry/0/ErrorEquals", "alone"),
    ],
)
def test_retrier_fields(retry, path, fragment):
    found = [p for p in validate_definition(machine(T=task(Retry=[retry]))) if p.path == path]
    assert found and fragment in found[0].message, validate_definition(machine(T=task(Retry=[retry])))


def test_states_all_must_be_the_last_retrier_and_catcher():
    definition = machine(
        T=task(Retry=[{"ErrorEquals": ["States.ALL"]}, {"ErrorEquals": ["X"]}],
               Catch=[{"ErrorEquals": ["States.ALL"], "Next": "H"}, {"ErrorEquals": ["Y"], "Next": "H"}]),
        H={"Type": "Succeed"},
    )
    msgs = messages(definition)
    assert any("last retrier" in m and "/States/T/Retry/0" in m for m in msgs)
    assert any("last catcher" in m and "/States/T/Catch/0" in m for m in msgs)


def test_catch_needs_an_existing_next():
    found = problems(machine(T=task(Catch=[{"ErrorEquals": ["X"]}, {"ErrorEquals": ["Y"], "Next": "Gone"}])))
    assert ("/States/T/Catch/0", "SCHEMA_VALIDATION_FAILED") in found
    assert ("/States/T/Catch/1/Next", "MISSING_TRANSITION_TARGET") in found


def test_unreachable_state_and_no_terminal_state():
    found = problems(machine(A={"Type": "Pass", "Next": "A"}, Island={"Type": "Succeed"}))
    assert ("/States/Island", "UNREACHABLE_STATE") in found
    assert ("/States", "NO_TERMINAL_STATE") in found


def test_unknown_fields_are_rejected_with_the_aws_wording():
    (msg,) = messages(machine(A={"Type": "Pass", "End": True, "Resultt": 1}))
    assert msg == "SCHEMA_VALIDATION_FAILED: The field 'Resultt' is not supported by Step Functions at /States/A"


@pytest.mark.parametrize(
    ("state", "path"),
    [
        ({"Type": "Wait", "End": True}, "/States/S"),
        ({"Type": "Wait", "Seconds": 1, "SecondsPath": "$.s", "End": True}, "/States/S"),
        ({"Type": "Wait", "Seconds": -1, "End": True}, "/States/S/Seconds"),
        ({"Type": "Wait", "Timestamp": "yesterday", "End": True}, "/States/S/Timestamp"),
        ({"Type": "Fail", "Error": "E", "ErrorPath": "$.e"}, "/States/S"),
        ({"Type": "Fail", "CausePath": "$..[bad"}, "/States/S/CausePath"),
        ({"Type": "Pass", "InputPath": "no-dollar", "End": True}, "/States/S/InputPath"),
        ({"Type": "Pass", "ResultPath": "$.a[*]", "End": True}, "/States/S/ResultPath"),
        ({"Type": "Pass", "Parameters": {"x.$": "States.Nope(1)"}, "End": True}, "/States/S/Parameters/x.$"),
        ({"Type": "Choice", "Choices": []}, "/States/S/Choices"),
        ({"Type": "Choice", "Choices": [{"Variable": "$.x", "NumericEquals": "1", "Next": "S"}]}, "/States/S/Choices/0/NumericEquals"),
        ({"Type": "Choice", "Choices": [{"Variable": "$.x", "Next": "S"}]}, "/States/S/Choices/0"),
        ({"Type": "Choice", "Choices": [{"Variable": "$.x", "IsNull": True}], "Default": "S"}, "/States/S/Choices/0"),
        ({"Type": "Parallel", "Branches": [], "End": True}, "/States/S/Branches"),
        ({"Type": "Map", "End": True}, "/States/S"),
        ({"Type": "Task", "Resource": "not-an-arn", "End": True}, "/States/S/Resource"),
        ({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "TimeoutSeconds": 5,
          "HeartbeatSeconds": 5, "End": True}, "/States/S/HeartbeatSeconds"),
        ({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "TimeoutSeconds": 5,
          "TimeoutSecondsPath": "$.t", "End": True}, "/States/S"),
        ({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "TimeoutSeconds": 0, "End": True}, "/States/S/TimeoutSeconds"),
    ],
)
def test_state_field_rules(state, path):
    found = validate_definition({"StartAt": "S", "States": {"S": state}})
    assert path in {p.path for p in found}, [str(p) for p in found]


def test_jsonata_only_and_jsonpath_only_fields():
    found = messages({"QueryLanguage": "JSONata", "StartAt": "A",
                      "States": {"A": {"Type": "Pass", "InputPath": "$.x", "End": True}}})
    assert any("'InputPath' is not supported for JSONata states" in m for m in found)
    found = messages({"StartAt": "A", "States": {"A": {"Type": "Pass", "Output": {}, "End": True}}})
    assert any("'Output' is not supported for JSONPath states" in m for m in found)


def test_load_definition_raises_with_every_problem():
    with pytest.raises(DefinitionError) as info:
        load_definition('{"StartAt": "A", "States": {"A": {"Type": "Pass"}, "B": {"Type": "Pass"}}}')
    assert len(info.value.problems) >= 3
    with pytest.raises(DefinitionError, match="not valid JSON"):
        load_definition("{oops")
