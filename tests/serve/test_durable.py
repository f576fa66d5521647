"""Standard executions survive kill -9: resumed from the journal, one continuous history."""

from __future__ import annotations

import json
import time
from datetime import datetime

from tests.serve.conftest import ROLE, start_server

MACHINE = {
    "StartAt": "Prepare",
    "States": {
        "Prepare": {"Type": "Pass", "Result": {"step": 1}, "ResultPath": "$.prepared", "Assign": {"seen": "yes"},
                    "Next": "Pause"},
        "Pause": {"Type": "Wait", "Seconds": 5, "Next": "Finish"},
        "Finish": {"Type": "Pass", "Parameters": {"prepared.$": "$.prepared", "seen.$": "$seen", "order.$": "$.order"},
                   "End": True},
    },
}


def _seconds(value) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_kill_minus_nine_during_a_wait_then_restart_succeeds_with_one_history(tmp_path) -> None:
    data = tmp_path / "data"
    first = start_server(data, "--no-workflows", "--keep-express-history")
    try:
        sfn = first.client()
        arn = sfn.create_state_machine(name="Durable", definition=json.dumps(MACHINE), roleArn=ROLE)["stateMachineArn"]
        express = sfn.create_state_machine(name="DurableExpress", type="EXPRESS", roleArn=ROLE, definition=json.dumps(
            {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 2, "End": True}}}))["stateMachineArn"]
        began = time.time()
        execution = sfn.start_execution(stateMachineArn=arn, name="survivor", input='{"order": 42}')["executionArn"]
        express_run = sfn.start_execution(stateMachineArn=express, name="async-express")["executionArn"]
        _wait_for(lambda: any(e["type"] == "WaitStateEntered"
                              for e in sfn.get_execution_history(executionArn=execution)["events"]))
    finally:
        first.kill()
    killed_at = time.time()
    assert killed_at - began < 4.5, "the kill must land inside the 5 s Wait"

    second = start_server(data, "--no-workflows", "--keep-express-history")
    ready_at = time.time()
    try:
        assert "resumed 2 execution(s)" in second.lines[-1]
        sfn = second.client()
        done = _wait_for(lambda: (d := sfn.describe_execution(executionArn=execution))["status"] != "RUNNING" and d)
        assert done["status"] == "SUCCEEDED", done
        assert json.loads(done["output"]) == {"prepared": {"step": 1}, "seen": "yes", "order": 42}

        events = sfn.get_execution_history(executionArn=execution)["events"]
        assert [e["id"] for e in events] == list(range(1, len(events) + 1))
        types = [e["type"] for e in events]
        assert types == ["ExecutionStarted", "PassStateEntered", "PassStateExited", "WaitStateEntered",
                         "WaitStateExited", "PassStateEntered", "PassStateExited", "ExecutionSucceeded"]
        assert all(0 <= e["previousEventId"] < e["id"] for e in events)
        entered, exited = events[3], events[4]
        # The Wait ended at its original deadline (or at once, if the restart came after it):
        # it was not waited again from the start.
        deadline = _seconds(entered["timestamp"]) + 5
        assert deadline - 0.01 <= _seconds(exited["timestamp"]) <= max(deadline, ready_at) + 1.5
        assert json.loads(events[0]["executionStartedEventDetails"]["input"]) == {"order": 42}

        # The asynchronous Express execution in flight ran again from its start (at least once).
        express_done = _wait_for(lambda: (d := sfn.describe_execution(executionArn=express_run))["status"] != "RUNNING" and d)
        assert express_done["status"] == "SUCCEEDED"
        assert _seconds(express_done["startDate"]) >= killed_at - 0.5
    finally:
        second.stop()


def test_a_restart_keeps_state_machines_and_finished_executions(tmp_path) -> None:
    data = tmp_path / "data"
    first = start_server(data, "--no-workflows")
    try:
        sfn = first.client()
        arn = sfn.create_state_machine(name="Kept", roleArn=ROLE, definition=json.dumps(
            {"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}}))["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=arn, name="once", input='{"x": 1}')["executionArn"]
        _wait_for(lambda: sfn.describe_execution(executionArn=execution)["status"] == "SUCCEEDED")
    finally:
        first.stop()
    second = start_server(data, "--no-workflows")
    try:
        sfn = second.client()
        assert [m["name"] for m in sfn.list_state_machines()["stateMachines"]] == ["Kept"]
        assert sfn.describe_execution(executionArn=execution)["status"] == "SUCCEEDED"
        assert [e["name"] for e in sfn.list_executions(stateMachineArn=arn)["executions"]] == ["once"]
        assert len(sfn.get_execution_history(executionArn=execution)["events"]) == 4
    finally:
        second.stop()


def test_an_async_express_execution_in_flight_runs_again_after_kill_minus_nine(tmp_path) -> None:
    marks = tmp_path / "marks"
    definition = {"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 3, "Next": "Mark"},
        "Mark": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:Mark", "End": True}}}
    args = ("--no-workflows", "--function", "Mark=tests.serve.handlers:mark")
    first = start_server(tmp_path / "data", *args)
    try:
        sfn = first.client()
        arn = sfn.create_state_machine(name="Async", type="EXPRESS", roleArn=ROLE,
                                       definition=json.dumps(definition))["stateMachineArn"]
        # StartExecution returns after the record is journaled (synchronously), so a kill now is "in flight".
        sfn.start_execution(stateMachineArn=arn, input=json.dumps({"folder": str(marks)}))
    finally:
        first.kill()
    assert not marks.exists()  # killed inside the Wait: the Task never ran
    second = start_server(tmp_path / "data", *args)
    try:
        assert "resumed 1 execution(s)" in second.lines[-1]
        _wait_for(lambda: marks.exists() and len(list(marks.iterdir())) == 1, timeout=30)
    finally:
        second.stop()


def test_a_graceful_stop_leaves_running_executions_to_resume(tmp_path) -> None:
    data = tmp_path / "data"
    definition = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 2, "Next": "Done"},
                                             "Done": {"Type": "Pass", "Result": "finished", "End": True}}}
    first = start_server(data, "--no-workflows")
    try:
        sfn = first.client()
        arn = sfn.create_state_machine(name="Graceful", definition=json.dumps(definition), roleArn=ROLE)["stateMachineArn"]
        execution = sfn.start_execution(stateMachineArn=arn, name="g")["executionArn"]
        _wait_for(lambda: len(sfn.get_execution_history(executionArn=execution)["events"]) >= 2)
    finally:
        first.stop()  # SIGTERM: not an abort of what runs
    assert first.process.returncode == 0
    second = start_server(data, "--no-workflows")
    try:
        sfn = second.client()
        done = _wait_for(lambda: (d := sfn.describe_execution(executionArn=execution))["status"] != "RUNNING" and d)
        assert (done["status"], json.loads(done["output"])) == ("SUCCEEDED", "finished")
        types = [e["type"] for e in sfn.get_execution_history(executionArn=execution)["events"]]
        assert "ExecutionAborted" not in types and types.count("ExecutionStarted") == 1
    finally:
        second.stop()
