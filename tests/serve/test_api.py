"""The Step Functions API of ``ceap serve``, through boto3 and the AWS CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.serve.conftest import ROLE

PASS = {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": {"done": True}, "End": True}}}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create(sfn, definition=PASS, type_="STANDARD", name=None, **kw) -> str:
    return sfn.create_state_machine(name=name or unique("m"), definition=json.dumps(definition), roleArn=ROLE,
                                    type=type_, **kw)["stateMachineArn"]


def code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def wait_status(sfn, arn: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        doc = sfn.describe_execution(executionArn=arn)
        if doc["status"] != "RUNNING" or time.monotonic() > deadline:
            return doc
        time.sleep(0.05)


def test_state_machine_lifecycle(sfn) -> None:
    name = unique("life")
    arn = create(sfn, name=name)
    assert arn == f"arn:aws:states:us-east-1:123456789012:stateMachine:{name}"
    described = sfn.describe_state_machine(stateMachineArn=arn)
    assert json.loads(described["definition"]) == PASS and described["type"] == "STANDARD" and described["status"] == "ACTIVE"
    assert create(sfn, name=name) == arn  # the same parameters again: idempotent
    with pytest.raises(ClientError) as exc:
        create(sfn, {"StartAt": "B", "States": {"B": {"Type": "Succeed"}}}, name=name)
    assert code(exc) == "StateMachineAlreadyExists"
    updated = {"StartAt": "B", "States": {"B": {"Type": "Succeed"}}}
    revision = sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(updated))["revisionId"]
    assert sfn.describe_state_machine(stateMachineArn=arn)["revisionId"] == revision
    sfn.delete_state_machine(stateMachineArn=arn)
    with pytest.raises(ClientError) as exc:
        sfn.describe_state_machine(stateMachineArn=arn)
    assert code(exc) == "StateMachineDoesNotExist"


@pytest.mark.parametrize(("call", "expected"), [
    (lambda s: s.create_state_machine(name="bad name", definition=json.dumps(PASS), roleArn=ROLE), "InvalidName"),
    (lambda s: s.create_state_machine(name="x", definition='{"StartAt": "Nope", "States": {}}', roleArn=ROLE), "InvalidDefinition"),
    (lambda s: s.create_state_machine(name="x", definition=json.dumps(PASS), roleArn="role"), "InvalidArn"),
    (lambda s: s.create_state_machine(name="x" * 81, definition=json.dumps(PASS), roleArn=ROLE), "ValidationException"),
    (lambda s: s.describe_state_machine(stateMachineArn="not-an-arn"), "InvalidArn"),
    (lambda s: s.describe_execution(executionArn="arn:aws:states:us-east-1:123456789012:execution:none:none"), "ExecutionDoesNotExist"),
    (lambda s: s.start_execution(stateMachineArn="arn:aws:states:us-east-1:123456789012:stateMachine:none"), "StateMachineDoesNotExist"),
    (lambda s: s.list_executions(stateMachineArn="arn:aws:states:us-east-1:123456789012:activity:a"), "InvalidArn"),
    (lambda s: s.send_task_success(taskToken="no-such-token", output="{}"), "TaskDoesNotExist"),
])
def test_errors_have_aws_codes(sfn, call, expected) -> None:
    with pytest.raises(ClientError) as exc:
        call(sfn)
    assert code(exc) == expected
    assert exc.value.response["Error"]["Message"]


def test_validation_message_is_aws_shaped(server) -> None:
    import urllib.request

    request = urllib.request.Request(server.url, data=b'{"definition": "{}"}', method="POST", headers={
        "X-Amz-Target": "AWSStepFunctions.CreateStateMachine", "Content-Type": "application/x-amz-json-1.0"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(request)
    body = json.loads(exc.value.read())
    assert exc.value.code == 400
    assert body["__type"] == "ValidationException"
    assert body["message"].startswith("2 validation errors detected: Value null at 'name' failed to satisfy constraint")


def test_standard_execution_idempotent_while_running_then_already_exists(sfn) -> None:
    arn = create(sfn, {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 1, "End": True}}})
    first = sfn.start_execution(stateMachineArn=arn, name="same", input='{"k": 1}')
    again = sfn.start_execution(stateMachineArn=arn, name="same", input='{"k": 1}')
    assert again["executionArn"] == first["executionArn"] and again["startDate"] == first["startDate"]
    with pytest.raises(ClientError) as exc:
        sfn.start_execution(stateMachineArn=arn, name="same", input='{"k": 2}')
    assert code(exc) == "ExecutionAlreadyExists"
    assert wait_status(sfn, first["executionArn"])["status"] == "SUCCEEDED"
    with pytest.raises(ClientError) as exc:
        sfn.start_execution(stateMachineArn=arn, name="same", input='{"k": 1}')
    assert code(exc) == "ExecutionAlreadyExists"


def test_describe_list_history_paging_and_filters(sfn) -> None:
    arn = create(sfn, {"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "B"}, "B": {"Type": "Pass", "End": True}}})
    arns = [sfn.start_execution(stateMachineArn=arn, name=f"e{i}", input=json.dumps({"i": i}))["executionArn"] for i in range(5)]
    done = [wait_status(sfn, a) for a in arns]
    assert {d["status"] for d in done} == {"SUCCEEDED"} and json.loads(done[2]["output"]) == {"i": 2}
    pages = list(sfn.get_paginator("list_executions").paginate(stateMachineArn=arn, PaginationConfig={"PageSize": 2}))
    assert [len(p["executions"]) for p in pages] == [2, 2, 1]
    assert sorted(e["name"] for p in pages for e in p["executions"]) == [f"e{i}" for i in range(5)]
    assert sfn.list_executions(stateMachineArn=arn, statusFilter="FAILED")["executions"] == []
    history = sfn.get_execution_history(executionArn=arns[0], maxResults=2)
    assert [e["type"] for e in history["events"]] == ["ExecutionStarted", "PassStateEntered"] and history["nextToken"]
    rest = sfn.get_execution_history(executionArn=arns[0], nextToken=history["nextToken"])
    assert [e["id"] for e in rest["events"]] == [3, 4, 5, 6]
    backwards = sfn.get_execution_history(executionArn=arns[0], reverseOrder=True, includeExecutionData=False)
    assert backwards["events"][0]["type"] == "ExecutionSucceeded"
    assert "output" not in backwards["events"][0]["executionSucceededEventDetails"]
    described = sfn.describe_state_machine_for_execution(executionArn=arns[0])
    assert json.loads(described["definition"])["StartAt"] == "A"


def test_failed_and_stopped_executions(sfn) -> None:
    fail = create(sfn, {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Oops", "Cause": "on purpose"}}})
    doc = wait_status(sfn, sfn.start_execution(stateMachineArn=fail)["executionArn"])
    assert (doc["status"], doc["error"], doc["cause"]) == ("FAILED", "Oops", "on purpose")
    slow = create(sfn, {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}})
    arn = sfn.start_execution(stateMachineArn=slow)["executionArn"]
    sfn.stop_execution(executionArn=arn)
    assert wait_status(sfn, arn)["status"] == "ABORTED"
    assert sfn.get_execution_history(executionArn=arn)["events"][-1]["type"] == "ExecutionAborted"


def test_express_semantics(sfn) -> None:
    arn = create(sfn, {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}, "EXPRESS")
    started = sfn.start_execution(stateMachineArn=arn, input='{"a": 1}')
    assert ":express:" in started["executionArn"]
    for call in (sfn.describe_execution, sfn.get_execution_history):
        with pytest.raises(ClientError) as exc:
            call(executionArn=started["executionArn"])
        assert code(exc) == "InvalidArn"
    with pytest.raises(ClientError) as exc:
        sfn.list_executions(stateMachineArn=arn)
    assert code(exc) == "StateMachineTypeNotSupported"
    result = sfn.start_sync_execution(stateMachineArn=arn, input='{"a": 1}')
    assert result["status"] == "SUCCEEDED" and json.loads(result["output"]) == {"a": 1}
    assert result["billingDetails"]["billedDurationInMilliseconds"] >= 100
    standard = create(sfn)
    with pytest.raises(ClientError) as exc:
        sfn.start_sync_execution(stateMachineArn=standard)
    assert code(exc) == "StateMachineTypeNotSupported"


def test_sync_execution_through_the_environment_switch(server) -> None:
    import boto3

    arn = create(server.client(), {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}, "EXPRESS")
    script = (
        "import boto3,sys;c=boto3.client('stepfunctions',endpoint_url=sys.argv[1],region_name='us-east-1',"
        "aws_access_key_id='t',aws_secret_access_key='t');print(c.start_sync_execution(stateMachineArn=sys.argv[2])['status'])"
    )
    out = subprocess.run([sys.executable, "-c", script, server.url, arn], check=False, capture_output=True, text=True,
                         env={**os.environ, "AWS_DISABLE_HOST_PREFIX_INJECTION": "true"}, timeout=60)
    assert out.stdout.strip() == "SUCCEEDED", out.stderr
    assert boto3  # the default client (prefix on) would try sync-127.0.0.1: see docs/serve.md


def test_mock_config_test_cases(sfn) -> None:
    definition = {"StartAt": "Charge", "States": {"Charge": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "charge", "Payload.$": "$"}, "OutputPath": "$.Payload",
        "Retry": [{"ErrorEquals": ["Card.Declined"], "MaxAttempts": 1, "IntervalSeconds": 1}], "End": True}}}
    arn = create(sfn, definition, name="Mocked")
    ok = wait_status(sfn, sfn.start_execution(stateMachineArn=f"{arn}#HappyPath", input="{}")["executionArn"])
    assert ok["status"] == "SUCCEEDED" and json.loads(ok["output"]) == {"charged": True}
    declined = wait_status(sfn, sfn.start_execution(stateMachineArn=f"{arn}#Declined")["executionArn"])
    assert (declined["status"], declined["error"]) == ("FAILED", "Card.Declined")
    types = [e["type"] for e in sfn.get_execution_history(executionArn=declined["executionArn"])["events"]]
    assert types.count("TaskFailed") == 2  # the retry ran against the second mocked response
    with pytest.raises(ClientError) as exc:
        sfn.start_execution(stateMachineArn=f"{arn}#NoSuchCase")
    assert code(exc) == "InvalidArn"


def test_local_function_handler(sfn) -> None:
    definition = {"StartAt": "Call", "States": {"Call": {
        "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:Echo", "End": True}}}
    doc = wait_status(sfn, sfn.start_execution(stateMachineArn=create(sfn, definition), input='{"n": 3}')["executionArn"])
    assert doc["status"] == "SUCCEEDED" and json.loads(doc["output"]) == {"echo": {"n": 3}, "function": "Echo"}


def test_activity_worker(sfn) -> None:
    activity = sfn.create_activity(name=unique("work"))["activityArn"]
    assert sfn.describe_activity(activityArn=activity)["activityArn"] == activity
    assert activity in [a["activityArn"] for a in sfn.list_activities()["activities"]]
    definition = {"StartAt": "Work", "States": {"Work": {"Type": "Task", "Resource": activity, "HeartbeatSeconds": 30, "End": True}}}
    arn = sfn.start_execution(stateMachineArn=create(sfn, definition), input='{"job": 7}')["executionArn"]

    worker = sfn  # a worker is any client polling with GetActivityTask
    task = worker.get_activity_task(activityArn=activity, workerName="w1")
    assert json.loads(task["input"]) == {"job": 7}
    worker.send_task_heartbeat(taskToken=task["taskToken"])
    worker.send_task_success(taskToken=task["taskToken"], output='{"result": 49}')
    doc = wait_status(sfn, arn)
    assert doc["status"] == "SUCCEEDED" and json.loads(doc["output"]) == {"result": 49}
    with pytest.raises(ClientError) as exc:
        worker.send_task_success(taskToken=task["taskToken"], output="{}")
    assert code(exc) == "TaskDoesNotExist"

    failing = sfn.start_execution(stateMachineArn=create(sfn, definition), input="{}")["executionArn"]
    task = worker.get_activity_task(activityArn=activity)
    worker.send_task_failure(taskToken=task["taskToken"], error="Worker.Broke", cause="disk full")
    doc = wait_status(sfn, failing)
    assert (doc["status"], doc["error"], doc["cause"]) == ("FAILED", "Worker.Broke", "disk full")
    sfn.delete_activity(activityArn=activity)


def test_activity_long_poll_waits_for_a_task(sfn) -> None:
    activity = sfn.create_activity(name=unique("poll"))["activityArn"]
    definition = {"StartAt": "Work", "States": {"Work": {"Type": "Task", "Resource": activity, "End": True}}}
    machine = create(sfn, definition)
    got = {}
    poller = threading.Thread(target=lambda: got.update(sfn.get_activity_task(activityArn=activity)))
    poller.start()
    arn = sfn.start_execution(stateMachineArn=machine, input='{"late": true}')["executionArn"]
    poller.join(timeout=30)
    assert json.loads(got["input"]) == {"late": True}
    sfn.send_task_success(taskToken=got["taskToken"], output='"ok"')
    assert wait_status(sfn, arn)["status"] == "SUCCEEDED"


def test_versions_aliases_and_tags(sfn) -> None:
    arn = create(sfn, tags=[{"key": "team", "value": "ceap"}])
    v1 = sfn.publish_state_machine_version(stateMachineArn=arn, description="first")["stateMachineVersionArn"]
    assert v1 == f"{arn}:1"
    assert sfn.publish_state_machine_version(stateMachineArn=arn)["stateMachineVersionArn"] == v1  # unchanged revision
    sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(
        {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": "v2", "End": True}}}), publish=True)
    versions = [v["stateMachineVersionArn"] for v in sfn.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"]]
    assert versions == [f"{arn}:2", v1]
    alias = sfn.create_state_machine_alias(name="live", routingConfiguration=[
        {"stateMachineVersionArn": v1, "weight": 100}])["stateMachineAliasArn"]
    assert alias == f"{arn}:live"
    out = wait_status(sfn, sfn.start_execution(stateMachineArn=alias)["executionArn"])
    assert json.loads(out["output"]) == {"done": True} and out["stateMachineAliasArn"] == alias
    assert out["stateMachineVersionArn"] == v1
    sfn.update_state_machine_alias(stateMachineAliasArn=alias, routingConfiguration=[
        {"stateMachineVersionArn": f"{arn}:2", "weight": 100}])
    out = wait_status(sfn, sfn.start_execution(stateMachineArn=alias)["executionArn"])
    assert json.loads(out["output"]) == "v2"
    assert sfn.describe_state_machine_alias(stateMachineAliasArn=alias)["name"] == "live"
    assert [a["stateMachineAliasArn"] for a in sfn.list_state_machine_aliases(stateMachineArn=arn)["stateMachineAliases"]] == [alias]
    with pytest.raises(ClientError) as exc:
        sfn.delete_state_machine_version(stateMachineVersionArn=f"{arn}:2")
    assert code(exc) == "ConflictException"
    sfn.delete_state_machine_alias(stateMachineAliasArn=alias)
    sfn.tag_resource(resourceArn=arn, tags=[{"key": "env", "value": "test"}])
    sfn.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert sfn.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "env", "value": "test"}]


def test_list_state_machines_pages(sfn) -> None:
    for _ in range(3):
        create(sfn)
    pages = list(sfn.get_paginator("list_state_machines").paginate(PaginationConfig={"PageSize": 2}))
    assert all(len(p["stateMachines"]) <= 2 for p in pages) and len(pages) >= 2
    names = [m["name"] for p in pages for m in p["stateMachines"]]
    assert len(names) == len(set(names)) and "Ceap-realtime-Workflow" in names


def test_validate_definition_and_test_state(sfn) -> None:
    assert sfn.validate_state_machine_definition(definition=json.dumps(PASS))["result"] == "OK"
    bad = sfn.validate_state_machine_definition(definition='{"StartAt": "X", "States": {"A": {"Type": "Pass", "End": true}}}')
    assert bad["result"] == "FAIL" and bad["diagnostics"][0]["severity"] == "ERROR"
    state = {"Type": "Pass", "Parameters": {"sum.$": "States.MathAdd($.a, $.b)"}, "End": True}
    answer = sfn.test_state(definition=json.dumps(state), input='{"a": 2, "b": 3}')
    assert answer["status"] == "SUCCEEDED" and json.loads(answer["output"]) == {"sum": 5}


def test_aws_cli_against_the_endpoint(server) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_DISABLE_HOST_PREFIX_INJECTION": "true"}

    def aws(*args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "awscli", "stepfunctions", *args, "--endpoint-url", server.url,
                              "--output", "json"], check=False, capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else {}

    name = unique("cli")
    arn = aws("create-state-machine", "--name", name, "--definition", json.dumps(PASS), "--role-arn", ROLE)["stateMachineArn"]
    execution = aws("start-execution", "--state-machine-arn", arn, "--input", '{"from": "cli"}')["executionArn"]
    deadline = time.monotonic() + 30
    while aws("describe-execution", "--execution-arn", execution)["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert aws("describe-execution", "--execution-arn", execution)["status"] == "SUCCEEDED"
    events = aws("get-execution-history", "--execution-arn", execution)["events"]
    assert events[-1]["type"] == "ExecutionSucceeded"
    express = aws("create-state-machine", "--name", unique("clix"), "--type", "EXPRESS", "--definition", json.dumps(PASS),
                  "--role-arn", ROLE)["stateMachineArn"]
    assert aws("start-sync-execution", "--state-machine-arn", express)["status"] == "SUCCEEDED"


def test_callback_task_completed_by_send_task_success(sfn) -> None:
    definition = {"StartAt": "Ask", "States": {
        "Ask": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/approvals",
                               "MessageBody": {"order.$": "$.order", "token.$": "$$.Task.Token"}},
                "Next": "Again"},
        "Again": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                  "Parameters": {"QueueUrl": "q", "MessageBody.$": "States.Format('token={}', $$.Task.Token)"},
                  "TimeoutSeconds": 60, "End": True}}}
    arn = sfn.start_execution(stateMachineArn=create(sfn, definition), input='{"order": 5}')["executionArn"]

    def scheduled_tokens() -> list:
        events = sfn.get_execution_history(executionArn=arn)["events"]
        return [json.loads(e["taskScheduledEventDetails"]["parameters"]) for e in events if e["type"] == "TaskScheduled"]

    deadline = time.monotonic() + 30
    while not scheduled_tokens() and time.monotonic() < deadline:
        time.sleep(0.05)
    first = scheduled_tokens()[0]["MessageBody"]
    assert first["order"] == 5 and first["token"].startswith("ceap-token-")
    sfn.send_task_success(taskToken=first["token"], output='{"approved": true}')
    while len(scheduled_tokens()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    second = scheduled_tokens()[1]["MessageBody"].removeprefix("token=")
    assert second != first["token"]
    sfn.send_task_failure(taskToken=second, error="Rejected", cause="by a human")
    doc = wait_status(sfn, arn)
    assert (doc["status"], doc["error"], doc["cause"]) == ("FAILED", "Rejected", "by a human")
    types = [e["type"] for e in sfn.get_execution_history(executionArn=arn)["events"]]
    assert "TaskSucceeded" in types and "TaskFailed" in types


def test_distributed_map_and_its_map_run(sfn) -> None:
    definition = {"StartAt": "Fan", "States": {"Fan": {
        "Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 4, "End": True,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}, "StartAt": "Double",
                          "States": {"Double": {"Type": "Pass", "Parameters": {"v.$": "States.MathAdd($, $)"}, "End": True}}}}}}
    arn = sfn.start_execution(stateMachineArn=create(sfn, definition), input='{"items": [1, 2, 3]}')["executionArn"]
    doc = wait_status(sfn, arn)
    assert doc["status"] == "SUCCEEDED" and json.loads(doc["output"]) == [{"v": 2}, {"v": 4}, {"v": 6}]
    runs = sfn.list_map_runs(executionArn=arn)["mapRuns"]
    assert len(runs) == 1 and ":mapRun:" in runs[0]["mapRunArn"] and runs[0]["executionArn"] == arn
    assert runs[0]["stopDate"] >= runs[0]["startDate"]


def test_redrive_runs_a_failed_execution_on_from_the_failed_state(sfn) -> None:
    activity = sfn.create_activity(name=unique("redrive"))["activityArn"]
    definition = {"StartAt": "Setup", "States": {
        "Setup": {"Type": "Pass", "Assign": {"attempt": "first"}, "Result": {"ready": True}, "Next": "Work"},
        "Work": {"Type": "Task", "Resource": activity, "End": True}}}
    arn = sfn.start_execution(stateMachineArn=create(sfn, definition), input='{"x": 1}')["executionArn"]
    task = sfn.get_activity_task(activityArn=activity)
    sfn.send_task_failure(taskToken=task["taskToken"], error="Flaky", cause="first try")
    failed = wait_status(sfn, arn)
    assert (failed["status"], failed["redriveStatus"]) == ("FAILED", "REDRIVABLE")
    sfn.redrive_execution(executionArn=arn)
    task = sfn.get_activity_task(activityArn=activity)
    assert json.loads(task["input"]) == {"ready": True}  # the failed state's own input, not the execution's
    sfn.send_task_success(taskToken=task["taskToken"], output='{"second": "try"}')
    done = wait_status(sfn, arn)
    assert (done["status"], done["redriveCount"], done["redriveStatus"]) == ("SUCCEEDED", 1, "NOT_REDRIVABLE")
    events = sfn.get_execution_history(executionArn=arn)["events"]
    types = [e["type"] for e in events]
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    assert types.count("ExecutionStarted") == 1 and types.index("ExecutionFailed") < types.index("ExecutionRedriven")
    assert types[-1] == "ExecutionSucceeded" and types.count("PassStateEntered") == 1
    with pytest.raises(ClientError) as exc:
        sfn.redrive_execution(executionArn=arn)
    assert code(exc) == "ExecutionNotRedrivable"
