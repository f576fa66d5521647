"""Distributed Map runs through boto3: ListMapRuns, DescribeMapRun, UpdateMapRun and the child executions."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from tests.serve.test_api import code, create, unique, wait_status


def _fan(resource: str, child_type: str, **map_fields) -> dict:
    return {"StartAt": "Fan", "States": {"Fan": {
        "Type": "Map", "ItemsPath": "$.items", "Label": "Fan", "End": True, **map_fields,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": child_type}, "StartAt": "Work",
                          "States": {"Work": {"Type": "Task", "Resource": resource, "End": True}}}}}}


def _map_run(sfn, execution_arn: str) -> str:
    runs = sfn.list_map_runs(executionArn=execution_arn)["mapRuns"]
    assert len(runs) == 1
    return runs[0]["mapRunArn"]


def test_update_map_run_raises_the_concurrency_and_tolerance_of_a_running_run(sfn) -> None:
    # Each child waits for an activity worker, so the run stays open until the test answers.
    activity = sfn.create_activity(name=unique("child"))["activityArn"]
    machine = create(sfn, _fan(activity, "STANDARD", MaxConcurrency=1))
    arn = sfn.start_execution(stateMachineArn=machine, input='{"items": [1, 2, 3]}')["executionArn"]
    first = sfn.get_activity_task(activityArn=activity)
    run_arn = _map_run(sfn, arn)
    name = machine.split(":")[-1]
    assert run_arn.startswith(f"arn:aws:states:us-east-1:123456789012:mapRun:{name}/Fan:")
    doc = sfn.describe_map_run(mapRunArn=run_arn)
    assert (doc["status"], doc["executionArn"], doc["maxConcurrency"]) == ("RUNNING", arn, 1)
    assert (doc["toleratedFailureCount"], doc["toleratedFailurePercentage"]) == (0, 0.0)
    counts = doc["executionCounts"]
    assert (counts["pending"], counts["running"], counts["total"]) == (2, 1, 3)
    assert doc["itemCounts"]["total"] == 3 and "stopDate" not in doc

    sfn.update_map_run(mapRunArn=run_arn, maxConcurrency=3, toleratedFailureCount=1)
    # Under the old limit of 1 neither of these would start before the first child ended.
    others = [sfn.get_activity_task(activityArn=activity) for _ in range(2)]
    assert sorted(json.loads(t["input"]) for t in others) == [2, 3]
    doc = sfn.describe_map_run(mapRunArn=run_arn)
    assert (doc["maxConcurrency"], doc["toleratedFailureCount"], doc["executionCounts"]["running"]) == (3, 1, 3)

    sfn.send_task_failure(taskToken=first["taskToken"], error="Item.Bad", cause="item 1")  # tolerated now
    for task in others:
        sfn.send_task_success(taskToken=task["taskToken"], output=task["input"])
    assert wait_status(sfn, arn)["status"] == "SUCCEEDED"
    doc = sfn.describe_map_run(mapRunArn=run_arn)
    assert doc["status"] == "SUCCEEDED" and doc["stopDate"] >= doc["startDate"]
    counts = doc["executionCounts"]
    assert (counts["succeeded"], counts["failed"], counts["running"], counts["pending"]) == (2, 1, 0, 0)

    children = sfn.list_executions(mapRunArn=run_arn)["executions"]
    assert len(children) == 3 and {c["mapRunArn"] for c in children} == {run_arn}
    assert {c["stateMachineArn"] for c in children} == {f"{machine}/Fan"}
    assert sorted(c["status"] for c in children) == ["FAILED", "SUCCEEDED", "SUCCEEDED"]
    failed = sfn.list_executions(mapRunArn=run_arn, statusFilter="FAILED")["executions"]
    assert len(failed) == 1 and failed[0]["executionArn"].startswith(f"{machine.replace(':stateMachine:', ':execution:')}/Fan:")
    child = sfn.describe_execution(executionArn=failed[0]["executionArn"])
    assert (child["status"], child["error"], child["cause"], child["input"]) == ("FAILED", "Item.Bad", "item 1", "1")
    assert child["mapRunArn"] == run_arn
    events = sfn.get_execution_history(executionArn=failed[0]["executionArn"])["events"]
    assert [e["type"] for e in events][0] == "ExecutionStarted" and events[-1]["type"] == "ExecutionFailed"
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))

    with pytest.raises(ClientError) as excinfo:  # it ended: nothing to update
        sfn.update_map_run(mapRunArn=run_arn, maxConcurrency=2)
    assert code(excinfo) == "ValidationException"


def test_express_children_are_visible_to_describe_execution_not_to_history(sfn) -> None:
    double = {"Type": "Pass", "Parameters": {"v.$": "States.MathAdd($, $)"}, "End": True}
    definition = _fan("unused", "EXPRESS", MaxConcurrency=2)
    definition["States"]["Fan"]["ItemProcessor"]["States"] = {"Work": double}
    arn = sfn.start_execution(stateMachineArn=create(sfn, definition), input='{"items": [1, 2, 3, 4]}')["executionArn"]
    assert wait_status(sfn, arn)["status"] == "SUCCEEDED"
    run_arn = _map_run(sfn, arn)
    doc = sfn.describe_map_run(mapRunArn=run_arn)
    assert doc["status"] == "SUCCEEDED" and doc["executionCounts"]["succeeded"] == doc["itemCounts"]["succeeded"] == 4
    children = sfn.list_executions(mapRunArn=run_arn, maxResults=3)
    assert len(children["executions"]) == 3 and "nextToken" in children
    child_arn = children["executions"][0]["executionArn"]
    assert ":express:" in child_arn
    child = sfn.describe_execution(executionArn=child_arn)
    assert child["status"] == "SUCCEEDED" and json.loads(child["output"]) == {"v": 2 * int(child["input"])}
    with pytest.raises(ClientError) as excinfo:  # Express: its history is in the logs, as on AWS
        sfn.get_execution_history(executionArn=child_arn)
    assert code(excinfo) == "InvalidArn"


def test_item_batches_count_items_and_executions_apart(sfn) -> None:
    definition = _fan("unused", "EXPRESS", ItemBatcher={"MaxItemsPerBatch": 2})
    definition["States"]["Fan"]["ItemProcessor"]["States"] = {"Work": {"Type": "Pass", "End": True}}
    arn = sfn.start_execution(stateMachineArn=create(sfn, definition), input='{"items": [1, 2, 3, 4, 5]}')["executionArn"]
    assert wait_status(sfn, arn)["status"] == "SUCCEEDED"
    doc = sfn.describe_map_run(mapRunArn=_map_run(sfn, arn))
    assert (doc["itemCounts"]["total"], doc["executionCounts"]["total"]) == (5, 3)


@pytest.mark.parametrize(("call", "expected"), [
    (lambda sfn: sfn.describe_map_run(mapRunArn="arn:aws:states:us-east-1:123456789012:mapRun:none/Fan:0"), "ResourceNotFound"),
    (lambda sfn: sfn.describe_map_run(mapRunArn="arn:aws:states:us-east-1:123456789012:stateMachine:x"), "InvalidArn"),
    (lambda sfn: sfn.update_map_run(mapRunArn="arn:aws:states:us-east-1:123456789012:mapRun:none/Fan:0",
                                    maxConcurrency=2), "ResourceNotFound"),
    (lambda sfn: sfn.update_map_run(mapRunArn="arn:aws:states:us-east-1:123456789012:mapRun:none/Fan:0",
                                    toleratedFailurePercentage=101.0), "ValidationException"),
    (lambda sfn: sfn.list_executions(mapRunArn="arn:aws:states:us-east-1:123456789012:mapRun:none/Fan:0"), "ResourceNotFound"),
    (lambda sfn: sfn.describe_execution(
        executionArn="arn:aws:states:us-east-1:123456789012:execution:none/Fan:0"), "ExecutionDoesNotExist"),
])
def test_map_run_errors(sfn, call, expected) -> None:
    with pytest.raises(ClientError) as excinfo:
        call(sfn)
    assert code(excinfo) == expected
