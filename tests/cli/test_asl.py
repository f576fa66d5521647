"""``ceap asl validate`` and ``ceap asl run``."""

import json

from .conftest import json_out

RETRYING = {
    "StartAt": "Call",
    "States": {
        "Call": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": "score", "Payload.$": "$"},
            "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 20, "MaxAttempts": 2, "BackoffRate": 2.0}],
            "End": True,
        }
    },
}

MOCKS = {
    "StateMachines": {"retrying": {"TestCases": {"FlakyThenOk": {"Call": "FailTwice"}}}},
    "MockedResponses": {
        "FailTwice": {
            "0-1": {"Throw": {"Error": "Lambda.TooManyRequestsException", "Cause": "slow down"}},
            "2": {"Return": {"StatusCode": 200, "Payload": {"ok": True}}},
        }
    },
}


def test_validate_reports_every_problem_with_its_path(run_ceap, tmp_path):
    bad = {"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Next": "Missing", "End": True},
        "B": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": True,
              "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 0}, {"ErrorEquals": ["X"]}]},
        "C": {"Type": "Wait", "Seconds": 1, "Bogus": 1, "End": True},
    }}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    proc = run_ceap("asl", "validate", str(path), "--format", "json")
    assert proc.returncode == 2
    paths = {d["path"] for d in json_out(proc)["details"]}
    assert {"/States/A", "/States/A/Next", "/States/B/Retry/0/IntervalSeconds", "/States/B/Retry/0", "/States/C",
            "/States/B"} <= paths
    text = run_ceap("asl", "validate", str(path))
    assert "MISSING_TRANSITION_TARGET: Missing 'Next' target: Missing at /States/A/Next" in text.stderr


def test_run_with_mock_config_retries_on_the_virtual_clock(run_ceap, tmp_path):
    definition = tmp_path / "retrying.json"
    definition.write_text(json.dumps(RETRYING))
    mocks = tmp_path / "mocks.json"
    mocks.write_text(json.dumps(MOCKS))
    proc = run_ceap("asl", "run", str(definition), "--input", '{"id": 7}', "--mock-config", str(mocks),
                    "--test-case", "FlakyThenOk", "--start-time", "2026-01-01T00:00:00Z", "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json_out(proc)
    assert doc["status"] == "SUCCEEDED" and doc["output"] == {"StatusCode": 200, "Payload": {"ok": True}}
    assert doc["startDate"] == "2026-01-01T00:00:00.000Z" and doc["stopDate"] == "2026-01-01T00:01:00.000Z"
    scheduled = [e["timestamp"] for e in doc["events"] if e["type"] == "TaskScheduled"]
    assert scheduled == ["2026-01-01T00:00:00.000Z", "2026-01-01T00:00:20.000Z", "2026-01-01T00:01:00.000Z"]
    assert json.loads(doc["events"][0]["executionStartedEventDetails"]["input"]) == {"id": 7}
    assert set(doc) == {"schemaVersion", "command", "ok", "executionArn", "name", "stateMachineArn", "status", "startDate", "stopDate",
                        "input", "output", "error", "cause", "events"}


def test_run_failed_execution_exits_1_with_error_and_cause(run_ceap, tmp_path):
    definition = tmp_path / "fail.json"
    definition.write_text(json.dumps({"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "Boom", "Cause": "why"}}}))
    proc = run_ceap("asl", "run", str(definition), "--format", "json")
    assert proc.returncode == 1
    doc = json_out(proc)
    assert (doc["status"], doc["error"], doc["cause"], doc["output"]) == ("FAILED", "Boom", "why", None)


def test_unknown_resource_is_refused_before_the_run(run_ceap, tmp_path):
    definition = tmp_path / "sqs.json"
    definition.write_text(json.dumps({"StartAt": "S", "States": {"S": {
        "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage", "End": True}}}))
    proc = run_ceap("asl", "run", str(definition), "--format", "json")
    assert proc.returncode == 2
    assert "sqs:sendMessage" in json_out(proc)["details"][0]["message"]


def test_bad_execution_name_and_input(run_ceap, tmp_path):
    definition = tmp_path / "p.json"
    definition.write_text(json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))
    assert run_ceap("asl", "run", str(definition), "--name", "has space").returncode == 2
    assert run_ceap("asl", "run", str(definition), "--input", "{nope").returncode == 2
    ok = run_ceap("asl", "run", str(definition), "--name", "good-name_1", "--format", "json")
    assert json_out(ok)["name"] == "good-name_1"


def test_express_refuses_sync_integrations(run_ceap, tmp_path):
    definition = tmp_path / "glue.json"
    definition.write_text(json.dumps({"StartAt": "G", "States": {"G": {
        "Type": "Task", "Resource": "arn:aws:states:::glue:startJobRun.sync", "Parameters": {"JobName": "j"}, "End": True}}}))
    proc = run_ceap("asl", "run", str(definition), "--type", "express", "--format", "json")
    assert proc.returncode == 2 and "Express" in json_out(proc)["details"][0]["message"]


def test_ctrl_c_aborts_the_execution_with_an_event(tmp_path):
    # A real process interrupted mid-run: the one place a virtual clock cannot stand in.
    import signal
    import subprocess
    import sys

    definition = tmp_path / "wait.json"
    definition.write_text(json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}))
    proc = subprocess.Popen([sys.executable, "-m", "ceap_engine.cli", "asl", "run", str(definition), "--clock", "real",
                             "--format", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "started" in proc.stderr.readline()  # the readiness line: the execution runs
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    doc = json.loads(out)
    assert doc["status"] == "ABORTED"
    assert [e["type"] for e in doc["events"]] == ["ExecutionStarted", "WaitStateEntered", "ExecutionAborted"]
