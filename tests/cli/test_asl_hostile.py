"""`ceap asl run` under hostile definitions: signals and hung tasks end the process (issue 14, part 1).

Real processes: each waits for a readiness line its own Lambda handler prints
(never a fixed sleep), then signals it or lets it time out, under generous timeouts.
"""

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest

BOUND = 120

HANDLERS = textwrap.dedent('''
    import sys
    import threading


    def ready(event, context):
        print("READY", file=sys.stderr, flush=True)
        return {}


    def hang(event, context):
        print("READY", file=sys.stderr, flush=True)
        threading.Event().wait()
''')

LOOP_AFTER_READY = {
    "StartAt": "T",
    "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:ready", "Next": "A"},
        "A": {"Type": "Pass", "Next": "B"},
        "B": {"Type": "Choice", "Choices": [{"Variable": "$.stop", "IsPresent": True, "Next": "C"}], "Default": "A"},
        "C": {"Type": "Succeed"},
    },
}

HUNG = {"StartAt": "T", "States": {"T": {
    "Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:hang", "TimeoutSeconds": 2, "End": True,
}}}


def start(tmp_path, definition, *args):
    (tmp_path / "handlers.py").write_text(HANDLERS)
    path = tmp_path / "machine.json"
    path.write_text(json.dumps(definition))
    return subprocess.Popen(
        [sys.executable, "-m", "ceap_engine.cli", "asl", "run", str(path), "--format", "json",
         "--function", "ready=handlers:ready", "--function", "hang=handlers:hang", *args],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_ready(proc):
    # Under --clock real ceap says "execution ... started" first (its own readiness line); then the handler's.
    line = proc.stderr.readline()
    if line.startswith("execution ") and "started" in line:  # --clock real says it runs first
        line = proc.stderr.readline()
    assert line.strip() == "READY", line + proc.stderr.read()


def finish(proc):
    try:
        out, err = proc.communicate(timeout=BOUND)
    except subprocess.TimeoutExpired:  # pragma: no cover - the failure this test exists for
        proc.kill()
        raise
    try:
        return proc.returncode, json.loads(out), err
    except json.JSONDecodeError:  # pragma: no cover
        raise AssertionError(f"exit {proc.returncode}, not JSON:\n{out[-2000:]}\n{err[-2000:]}") from None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_an_express_infinite_loop_as_aborted(tmp_path, signum):
    proc = start(tmp_path, LOOP_AFTER_READY, "--type", "express")
    wait_ready(proc)
    sent = time.monotonic()
    proc.send_signal(signum)
    rc, doc, err = finish(proc)
    assert rc == 1, err
    assert doc["status"] == "ABORTED" and doc["events"][-1]["type"] == "ExecutionAborted"
    # Express keeps a bounded tail of its events, not one row per state since the start.
    assert len(doc["events"]) <= 50_001
    assert time.monotonic() - sent < BOUND


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_a_run_whose_sync_handler_hangs(tmp_path, signum):
    definition = json.loads(json.dumps(HUNG))
    del definition["States"]["T"]["TimeoutSeconds"]
    proc = start(tmp_path, definition)
    wait_ready(proc)
    proc.send_signal(signum)
    rc, doc, err = finish(proc)
    assert rc == 1, err
    assert doc["status"] == "ABORTED"


@pytest.mark.parametrize("clock", ["virtual", "real"])
def test_a_hung_sync_handler_times_out_and_the_process_exits(tmp_path, clock):
    proc = start(tmp_path, HUNG, "--clock", clock)
    wait_ready(proc)
    rc, doc, err = finish(proc)
    assert rc == 1, err
    assert doc["status"] == "FAILED" and doc["error"] == "States.Timeout"
    assert "LambdaFunctionTimedOut" in [e["type"] for e in doc["events"]]


def test_timeout_seconds_ends_an_express_loop_under_the_virtual_clock(tmp_path):
    proc = start(tmp_path, dict(LOOP_AFTER_READY, TimeoutSeconds=2), "--type", "express")
    rc, doc, err = finish(proc)
    assert rc == 1, err
    assert doc["status"] == "TIMED_OUT" and doc["error"] == "States.Timeout"
