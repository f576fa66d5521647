"""Outcomes per state, attempts and retry waits, read from histories (our own runs and AWS's)."""

import glob
import json
from pathlib import Path

from ceap_engine.asl.definition import load_definition
from ceap_engine.asl.interpreter import Engine
from ceap_engine.observe.counts import count_chain, stage_counts
from ceap_engine.observe.trace import event_time, trace_execution
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.runtime.tasks import LambdaFunctions, TaskRunners

ROOT = Path(__file__).resolve().parents[2]

MACHINE = {
    "StartAt": "Flaky",
    "States": {
        "Flaky": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "flaky"},
                  "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 5, "MaxAttempts": 2}], "Next": "Both"},
        "Both": {"Type": "Parallel", "Next": "Broken", "Branches": [
            {"StartAt": "Left", "States": {"Left": {"Type": "Pass", "End": True}}},
            {"StartAt": "Right", "States": {"Right": {"Type": "Wait", "Seconds": 30, "End": True}}}]},
        "Broken": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "broken"},
                   "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Stop"}], "Next": "Never"},
        "Never": {"Type": "Succeed"},
        "Stop": {"Type": "Fail", "Error": "Gave.Up", "Cause": "broken is broken"},
    },
}


async def run_machine():
    calls = []

    def flaky(event, context):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("try again")
        return {"ok": True}

    def broken(event, context):
        raise ValueError("no")

    runners = TaskRunners()
    functions = runners.register_lambda(LambdaFunctions())
    functions.register("flaky", flaky)
    functions.register("broken", broken)
    engine = Engine(clock=VirtualClock(start=1_000.0), runners=runners, seed=1)
    result = await engine.start(load_definition(MACHINE), {}).task
    return result.to_json()


async def test_outcomes_attempts_and_waits_of_a_run():
    execution = await run_machine()
    trace = trace_execution(execution["events"])
    assert trace.status == "FAILED" and trace.error == "Gave.Up" and trace.cause == "broken is broken"
    assert trace.outcomes == {"Flaky": "retried", "Both": "succeeded", "Left": "succeeded", "Right": "succeeded",
                              "Broken": "caught", "Stop": "failed"}
    assert trace.failed_states == ["Stop"]
    # (The report draws only the pairs the definition has an edge for: how a history chains
    # parallel branches' first events is the interpreter's business.)
    assert trace.transitions >= {("Flaky", "Flaky"), ("Flaky", "Both"), ("Both", "Left"), ("Both", "Broken"),
                                 ("Broken", "Stop")}
    assert ("Broken", "Never") not in trace.transitions
    flaky = trace.visits[0]
    assert [(a.number, a.status, a.error) for a in flaky.attempts] == [(1, "failed", "ConnectionError"),
                                                                        (2, "succeeded", None)]
    assert [b - a for a, b in flaky.retry_waits] == [5.0]
    both = next(v for v in trace.visits if v.name == "Both")
    assert both.exited - both.entered == 30.0  # the Wait branch
    assert trace.stopped - trace.started == 35.0


async def test_a_running_execution_has_running_states_and_no_status():
    events = (await run_machine())["events"]
    cut = next(i for i, e in enumerate(events) if e["type"] == "WaitStateEntered") + 1
    trace = trace_execution(events[:cut])
    assert trace.status == "RUNNING" and trace.stopped is None
    assert trace.outcomes["Right"] == "running" and trace.outcomes["Both"] == "running"
    assert "Broken" not in trace.outcomes


def test_recorded_aws_histories_end_as_aws_said():
    checked = 0
    for f in glob.glob(str(ROOT / "tests/conformance/data/cases/*/*.json")):
        case = json.loads(Path(f).read_text())
        expected = case["expected"]
        if not expected.get("events") or expected.get("status") is None:
            continue
        trace = trace_execution(expected["events"])
        assert trace.status == expected["status"], f
        if expected["status"] == "SUCCEEDED":  # inside a caught Parallel/Map a state may fail; at the top, never
            top = set(case["definition"]["States"])
            assert not [s for s, o in trace.outcomes.items() if o == "failed" and s in top], f
        checked += 1
    assert checked > 300


def test_event_time_reads_iso_epoch_and_missing_timestamps():
    assert event_time({"timestamp": "2026-01-01T00:00:00.500Z"}) == 1_767_225_600.5
    assert event_time({"timestamp": 12}) == 12.0
    assert event_time({}, default=3.0) == 3.0


def test_stage_counts_from_output_or_from_the_last_state_output():
    output = {"stages": {"ETL": {"outputKey": "k", "counts": {"processedCount": 4}}, "Glue": {"outputKey": "g"}}}
    assert stage_counts(output) == {"ETL": {"processedCount": 4}, "Glue": {}}
    events = [{"type": "TaskStateExited", "stateExitedEventDetails": {"name": "ETL", "output": json.dumps(output)}},
              {"type": "PassStateExited", "stateExitedEventDetails": {"name": "X", "output": "not json"}}]
    assert stage_counts(None, events) == {"ETL": {"processedCount": 4}, "Glue": {}}
    assert stage_counts(None, []) == {}


def test_count_chain_says_where_records_left_and_what_is_unaccounted():
    counts = {"ETL": {"processedCount": 10, "transformedCount": 8, "errorCount": 2},
              "Filter": {"inputCount": 7, "passedCount": 5, "rejectedCount": 2},
              "Score": {"scoredCount": 5}, "Store": {"storedCount": 4, "failedCount": 1},
              "Reactive": {"actionCount": 9}}
    chain = {step["step"]: step for step in count_chain(counts)}
    assert list(chain) == ["lines read", "records", "into Filter", "passed the filters", "scored", "stored", "actions"]
    assert chain["records"]["left"] == 2 and chain["records"]["unexplained"] == 0
    assert chain["into Filter"]["unexplained"] == 1  # 8 records, 7 reached Filter, nothing says why
    assert chain["stored"]["why"] == "write failures" and chain["stored"]["unexplained"] == 0
    assert chain["actions"]["unexplained"] == 0
