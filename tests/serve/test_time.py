"""Time on the endpoint: --clock virtual skips waits, --wait-time-scale shortens them."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.serve.clocks import ScaledClock
from tests.serve.conftest import ROLE, start_server

WAIT = {"StartAt": "Long", "States": {
    "Long": {"Type": "Wait", "Seconds": 3600, "Next": "Retry"},
    "Retry": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
              "Parameters": {"FunctionName": "Missing"},
              "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 300, "MaxAttempts": 1}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Done"}], "End": True},
    "Done": {"Type": "Succeed"}}}


def _ts(value) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _run(server, definition) -> tuple[dict, list, float]:
    sfn = server.client()
    arn = sfn.create_state_machine(name="Timed", definition=json.dumps(definition), roleArn=ROLE)["stateMachineArn"]
    began = time.monotonic()
    execution = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    while (doc := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() - began < 60
        time.sleep(0.02)
    return doc, sfn.get_execution_history(executionArn=execution)["events"], time.monotonic() - began


def test_virtual_clock_skips_an_hour_and_a_retry_interval(tmp_path) -> None:
    server = start_server(tmp_path, "--no-workflows", "--clock", "virtual")
    try:
        doc, events, wall = _run(server, WAIT)
    finally:
        server.stop()
    assert doc["status"] == "SUCCEEDED" and wall < 20
    assert _ts(doc["stopDate"]) - _ts(doc["startDate"]) >= 3600 + 300  # the history shows the gaps
    failed = [e for e in events if e["type"] == "TaskFailed"]
    assert len(failed) == 2 and _ts(failed[1]["timestamp"]) - _ts(failed[0]["timestamp"]) >= 300


def test_wait_time_scale_shortens_waits(tmp_path) -> None:
    definition = {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 200, "End": True}}}
    server = start_server(tmp_path, "--no-workflows", "--wait-time-scale", "0.01")
    try:
        doc, _, wall = _run(server, definition)
    finally:
        server.stop()
    assert doc["status"] == "SUCCEEDED"
    assert 1.9 <= _ts(doc["stopDate"]) - _ts(doc["startDate"]) < 10 and wall < 15


async def test_scaled_clock_scales_sleeps_and_timers_not_time() -> None:
    inner = VirtualClock(start=0)
    clock = ScaledClock(inner, 0.5)
    fired = []
    with clock.activity():
        clock.call_later(10, lambda: fired.append(inner.time()))
        await clock.sleep(100)
    assert clock.time() == 50 and fired == [5]
    with pytest.raises(ValueError):
        ScaledClock(inner, -1)
