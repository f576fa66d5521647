"""The resume plan: a pure function of a definition and its journaled history."""

from __future__ import annotations

import json

from ceap_engine.asl.definition import compile_definition
from ceap_engine.serve.callbacks import tokens_in, with_task_tokens
from ceap_engine.serve.resume import RESTORE_STATE, plan_resume

DEFINITION = {"StartAt": "A", "States": {
    "A": {"Type": "Pass", "Assign": {"n": 1}, "Next": "W"},
    "W": {"Type": "Wait", "SecondsPath": "$.wait", "Next": "B"},
    "B": {"Type": "Pass", "End": True}}}


def ev(i, type_, ts, **details):
    key = "stateEnteredEventDetails" if type_.endswith("Entered") else "stateExitedEventDetails"
    doc = {"id": i, "previousEventId": i - 1, "timestamp": ts, "type": type_}
    if details:
        doc[key] = details
    return doc


EVENTS = [
    {"id": 1, "previousEventId": 0, "timestamp": 100.0, "type": "ExecutionStarted"},
    ev(2, "PassStateEntered", 100.0, name="A", input='{"wait": 10}'),
    ev(3, "PassStateExited", 100.0, name="A", output='{"wait": 10}', assignedVariables={"n": "1"}),
    ev(4, "WaitStateEntered", 100.5, name="W", input='{"wait": 10}'),
]


def test_a_finished_execution_has_no_plan() -> None:
    assert plan_resume(DEFINITION, EVENTS + [{"id": 5, "previousEventId": 4, "timestamp": 1, "type": "ExecutionSucceeded"}],
                       now=200.0) is None


def test_the_wait_in_flight_keeps_its_deadline_and_variables_come_back() -> None:
    plan = plan_resume(DEFINITION, EVENTS, now=104.0)
    assert plan is not None and plan.state == "W"
    assert plan.definition["StartAt"] == RESTORE_STATE
    assert plan.definition["States"]["W"]["Timestamp"] == "1970-01-01T00:01:50.500Z"  # 100.5 + 10
    assert "SecondsPath" not in plan.definition["States"]["W"]
    assert plan.input == {"v": {"n": 1}, "i": {"wait": 10}}
    compile_definition(plan.definition)  # the derived definition compiles
    assert DEFINITION["States"]["W"] == {"Type": "Wait", "SecondsPath": "$.wait", "Next": "B"}  # untouched


def test_new_events_continue_the_journal() -> None:
    plan = plan_resume(DEFINITION, EVENTS, now=104.0)
    assert plan is not None and plan.folded == 4  # ExecutionStarted, restore Pass entered/exited, re-entered W
    assert [plan.renumber({"id": i, "previousEventId": i - 1}) for i in (1, 4)] == [None, None]
    assert plan.renumber({"id": 5, "previousEventId": 4}) == {"id": 5, "previousEventId": 4}
    assert plan.renumber({"id": 6, "previousEventId": 5}) == {"id": 6, "previousEventId": 5}


def test_without_variables_the_plan_starts_at_the_state_in_flight() -> None:
    definition = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "End": True}}}
    events = [EVENTS[0], ev(2, "PassStateEntered", 100.0, name="A", input="{}"),
              ev(3, "PassStateExited", 100.0, name="A", output='{"x": 1}'),
              ev(4, "PassStateEntered", 100.0, name="B", input='{"x": 1}')]
    plan = plan_resume(definition, events, now=101.0)
    assert plan is not None and plan.definition["StartAt"] == "B" and plan.input == {"x": 1} and plan.folded == 2


def test_states_inside_a_parallel_are_not_resume_points() -> None:
    definition = {"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": True, "Branches": [
        {"StartAt": "In", "States": {"In": {"Type": "Wait", "Seconds": 5, "End": True}}}]}}}
    events = [EVENTS[0], ev(2, "ParallelStateEntered", 100.0, name="P", input='{"a": 1}'),
              {"id": 3, "previousEventId": 2, "timestamp": 100.0, "type": "ParallelStateStarted"},
              ev(4, "WaitStateEntered", 100.0, name="In", input='{"a": 1}')]
    plan = plan_resume(definition, events, now=101.0)
    assert plan is not None and plan.state == "P" and plan.input == {"a": 1}


def test_callback_tokens_are_fresh_per_evaluation_and_found_again() -> None:
    definition = {"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken", "End": True,
        "Parameters": {"FunctionName": "f", "Payload": {"token.$": "$$.Task.Token", "plain": "$$.Task.Token"}}}}}
    rewritten = with_task_tokens(definition)
    payload = rewritten["States"]["T"]["Parameters"]["Payload"]
    assert payload["plain"] == "$$.Task.Token"  # a literal string is not a path
    assert payload["token.$"].startswith("States.Format(")
    assert definition["States"]["T"]["Parameters"]["Payload"]["token.$"] == "$$.Task.Token"
    assert tokens_in({"a": "ceap-token-0f8fad5b-d9cb-469f-a165-70867728950e"}) == ["ceap-token-0f8fad5b-d9cb-469f-a165-70867728950e"]
    assert json.dumps(with_task_tokens({"StartAt": "X", "States": {"X": {"Type": "Pass", "End": True}}})) == \
        json.dumps({"StartAt": "X", "States": {"X": {"Type": "Pass", "End": True}}})
