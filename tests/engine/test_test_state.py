"""Local TestState: the API's request and answer, inspection data, mocks, retry/catch, refusals, the CLI."""

import json

import pytest
from typer.testing import CliRunner

from ceap_engine.cli.app import app
from ceap_engine.conformance.teststate import (
    ServiceModels,
    TestStateRejected,
    TestStateRequest,
    run_test_state,
)
from ceap_engine.runtime.tasks import LambdaFunctions, TaskRunners

ROLE = "arn:aws:iam::123456789012:role/tester"
LAMBDA_TASK = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
               "Parameters": {"FunctionName": "f", "Payload.$": "$"}, "ResultSelector": {"p.$": "$.Payload"},
               "ResultPath": "$.r", "End": True}


async def answer(**request):
    return await run_test_state(TestStateRequest.from_api(request), seed=1)


def parsed(data):
    return {k: (json.loads(v) if isinstance(v, str) and k != "status" else v) for k, v in data.items()}


async def test_pass_with_parameters_reports_each_step_as_json_text():
    result = await answer(definition=json.dumps({"Type": "Pass", "InputPath": "$.in", "Parameters": {"v.$": "$.x"},
                                                 "ResultPath": "$.out", "Next": "Later"}),
                          input=json.dumps({"in": {"x": 1}}), inspectionLevel="DEBUG")
    assert result["status"] == "SUCCEEDED" and result["nextState"] == "Later"
    assert json.loads(result["output"]) == {"in": {"x": 1}, "out": {"v": 1}}
    assert parsed(result["inspectionData"]) == {
        "input": {"in": {"x": 1}}, "afterInputPath": {"x": 1}, "afterParameters": {"v": 1},
        "afterResultSelector": {"v": 1}, "afterResultPath": {"in": {"x": 1}, "out": {"v": 1}},
    }


async def test_info_level_has_no_inspection_data():
    result = await answer(definition={"Type": "Succeed"}, input={"a": 1})
    assert result == {"output": '{"a":1}', "status": "SUCCEEDED"}


async def test_task_with_a_mocked_result():
    result = await answer(definition=LAMBDA_TASK, input={"n": 1}, inspectionLevel="TRACE",
                          mock={"result": json.dumps({"Payload": {"ok": True}, "StatusCode": 200})})
    data = parsed(result["inspectionData"])
    assert data["afterParameters"] == {"FunctionName": "f", "Payload": {"n": 1}}
    assert data["result"] == {"Payload": {"ok": True}, "StatusCode": 200}
    assert json.loads(result["output"]) == {"n": 1, "r": {"p": {"ok": True}}}


async def test_task_without_a_mock_calls_the_local_function():
    runners = TaskRunners()
    runners.register_lambda(LambdaFunctions()).register("f", lambda event, ctx: {"seen": event})
    request = TestStateRequest.from_api({"definition": LAMBDA_TASK, "input": {"n": 2}, "roleArn": ROLE})
    result = await run_test_state(request, runners=runners, seed=1)
    assert json.loads(result["output"]) == {"n": 2, "r": {"p": {"seen": {"n": 2}}}}


RETRYING = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Arguments": {"FunctionName": "f"},
            "QueryLanguage": "JSONata", "End": True,
            "Retry": [{"ErrorEquals": ["Boom"], "IntervalSeconds": 2, "BackoffRate": 3, "MaxAttempts": 2}],
            "Catch": [{"ErrorEquals": ["Other"], "Next": "Handle", "Output": "{% $states.errorOutput %}"}]}


@pytest.mark.parametrize(
    ("error", "retries", "status", "details"),
    [
        ("Boom", 0, "RETRIABLE", {"retryIndex": 0, "retryBackoffIntervalSeconds": 2}),
        ("Boom", 1, "RETRIABLE", {"retryIndex": 0, "retryBackoffIntervalSeconds": 6}),
        ("Boom", 2, "FAILED", {"retryIndex": 0}),
        ("Other", 0, "CAUGHT_ERROR", {"catchIndex": 0}),
    ],
)
async def test_errors_report_what_retry_and_catch_would_do(error, retries, status, details):
    result = await answer(definition=RETRYING, inspectionLevel="DEBUG", mock={"errorOutput": {"error": error, "cause": "c"}},
                          stateConfiguration={"retrierRetryCount": retries})
    assert (result["status"], result["error"], result["cause"]) == (status, error, "c")
    assert result["inspectionData"]["errorDetails"] == details
    if status == "CAUGHT_ERROR":
        assert result["nextState"] == "Handle" and json.loads(result["output"]) == {"Error": "Other", "Cause": "c"}


async def test_state_of_a_whole_machine_by_name_with_variables():
    machine = {"QueryLanguage": "JSONata", "StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "B"},
        "B": {"Type": "Pass", "Output": {"v": "{% $limit * 2 %}", "s": "{% $states.context.State.Name %}"}, "End": True}}}
    result = await answer(definition=machine, stateName="B", variables={"limit": 21}, inspectionLevel="DEBUG")
    assert json.loads(result["output"]) == {"v": 42, "s": "StateName"}
    assert json.loads(result["inspectionData"]["variables"]) == {"limit": 21}


async def test_map_with_a_mocked_result_and_tolerated_failures():
    definition = {"Type": "Map", "ItemsPath": "$.xs", "ToleratedFailureCount": 1, "End": True,
                  "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED"}, "StartAt": "P",
                                    "States": {"P": {"Type": "Pass", "End": True}}}}
    ok = await answer(definition=definition, input={"xs": [1, 2, 3]}, mock={"result": "[1, 2, 3]"},
                      stateConfiguration={"mapIterationFailureCount": 1}, inspectionLevel="DEBUG")
    assert ok["status"] == "SUCCEEDED" and ok["inspectionData"]["toleratedFailureCount"] == 1
    too_many = await answer(definition=definition, input={"xs": [1, 2, 3]}, mock={"result": "[1, 2, 3]"},
                            stateConfiguration={"mapIterationFailureCount": 2})
    assert too_many["error"] == "States.ExceedToleratedFailureThreshold"


@pytest.mark.parametrize(
    ("request_fields", "code", "message"),
    [
        ({"definition": {"Type": "Pass", "End": True}, "mock": {"result": "{}"}}, "ValidationException",
         "State type 'Pass' is not supported when a mock is specified"),
        ({"definition": {"Type": "Parallel", "End": True, "Branches": [
            {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}]}}, "InvalidDefinition",
         ("TestState API does not support Map or Parallel states. Supported state types include: "
          "[Task, Wait, Pass, Succeed, Fail, Choice]")),
        ({"definition": {"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}, "stateName": "B"},
         "ValidationException", "State not found in definition"),
        ({"definition": LAMBDA_TASK}, "ValidationException", "RoleArn must be specified when testing a Task state"),
        ({"definition": LAMBDA_TASK, "mock": {"result": "not json"}}, "ValidationException", "Mocked result must be valid JSON"),
        ({"definition": LAMBDA_TASK, "mock": {"result": "{}"}, "context": {"Map": {}}}, "ValidationException",
         "Invalid Context object provided: 'Map' field is not supported when mocking a Context object"),
        ({"definition": {"Type": "Nope", "End": True}}, "InvalidDefinition",
         ("Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED: The field 'Type' should have one of these "
          "values: [Task, Wait, Pass, Succeed, Fail, Choice, Parallel, Map] at /States/StateName/Type'")),
    ],
)
async def test_requests_aws_refuses(request_fields, code, message):
    with pytest.raises(TestStateRejected) as refused:
        await answer(**request_fields)
    assert (refused.value.code, refused.value.message) == (code, message)


@pytest.fixture
def models(tmp_path):
    """A botocore-format model of one made-up API, so the checks do not depend on botocore."""
    folder = tmp_path / "stepfunctions" / "2016-11-23"
    folder.mkdir(parents=True)
    (folder / "service-2.json").write_text(json.dumps({
        "operations": {"StartExecution": {"output": {"shape": "Out"}}},
        "shapes": {
            "Out": {"type": "structure", "required": ["executionArn"], "members": {
                "executionArn": {"shape": "Arn"}, "startDate": {"shape": "Time"}, "count": {"shape": "Small"},
                "tags": {"shape": "Tags"}}},
            "Arn": {"type": "string", "min": 1}, "Time": {"type": "timestamp"},
            "Small": {"type": "integer", "max": 5}, "Tags": {"type": "list", "member": {"shape": "Arn"}},
        },
    }))
    return ServiceModels(tmp_path)


@pytest.mark.parametrize(
    ("result", "mode", "message"),
    [
        ({}, "STRICT", "Required field 'ExecutionArn' is missing"),
        ({}, "PRESENT", None),
        ({"ExecutionArn": "a", "StartDate": 1}, "STRICT", "Field 'StartDate' must be a string"),
        ({"ExecutionArn": "a", "Count": 6}, "PRESENT", "Field 'Count' exceeds the maximum value"),
        ({"ExecutionArn": "a", "Tags": ["x", 1]}, "PRESENT", "Field 'Tags' must be a string"),
        ({"ExecutionArn": "a", "Extra": 1}, "STRICT", None),
        ({"StartDate": True}, "NONE", None),
    ],
)
async def test_mock_results_are_checked_against_the_api_shape(models, result, mode, message):
    request = TestStateRequest.from_api({
        "definition": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution", "End": True},
        "mock": {"result": json.dumps(result), "fieldValidationMode": mode},
    })
    if message is None:
        assert (await run_test_state(request, models=models))["status"] == "SUCCEEDED"
    else:
        with pytest.raises(TestStateRejected, match=f"Mock result schema validation error: {message}"):
            await run_test_state(request, models=models)


# -- the command ---------------------------------------------------------------------------


def test_cli_request_file_prints_the_api_answer(tmp_path):
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"definition": {"Type": "Pass", "Result": 1, "End": True}, "inspectionLevel": "DEBUG"}))
    outcome = CliRunner().invoke(app, ["asl", "test-state", "--request", str(request)])
    assert outcome.exit_code == 0, outcome.output
    answer_json = json.loads(outcome.output)
    assert answer_json["status"] == "SUCCEEDED" and answer_json["inspectionData"]["result"] == "1"


def test_cli_convenience_flags(tmp_path):
    definition = tmp_path / "machine.json"
    definition.write_text(json.dumps({"StartAt": "T", "States": {"T": LAMBDA_TASK}}))
    outcome = CliRunner().invoke(app, ["asl", "test-state", str(definition), "--state", "T", "--input", '{"n": 1}',
                                       "--mock-error", "Boom", "--mock-cause", "bad"])
    assert outcome.exit_code == 1, outcome.output
    assert json.loads(outcome.output)["error"] == "Boom"


def test_cli_refusal_exits_2_with_the_exception(tmp_path):
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"definition": {"Type": "Succeed"}, "mock": {"result": "{}"}}))
    outcome = CliRunner().invoke(app, ["asl", "test-state", "--request", str(request)])
    assert outcome.exit_code == 2
    assert json.loads(outcome.output)["exception"]["code"] == "ValidationException"
