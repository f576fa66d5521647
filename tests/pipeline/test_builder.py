"""The workflow builder: the ASL that is deployed and interpreted."""

import pytest
from pydantic import ValidationError

from ceap_engine.asl.definition import validate_definition
from ceap_engine.pipeline import (
    BATCH,
    REALTIME,
    RetryPolicy,
    StageSpec,
    WorkflowSpec,
    build_definition,
    express_duration_warnings,
    substitute,
    substitution_keys,
)


@pytest.mark.parametrize("spec", [REALTIME, BATCH], ids=["realtime", "batch"])
def test_definition_is_valid_asl_and_chains_the_stages(spec):
    definition = build_definition(spec)
    assert validate_definition(definition) == []
    names = [s.name for s in spec.stages]
    states = definition["States"]
    assert definition["StartAt"] == "Input"
    assert states["Input"]["Default"] == "ETL.Plan"
    assert states["Input.Unwrap"] == {"Type": "Pass", "InputPath": "$[0]", "Next": "ETL.Plan"}
    # ETL over byte ranges of its source: plan, a Map of range calls, a Map of merge calls, the manifest.
    assert [states["ETL.Plan"]["Next"], states["ETL.Ranges"]["Next"], states["ETL.Merges"]["Next"]] == [
        "ETL.Ranges", "ETL.Merges", "ETL.Manifest"]
    assert "ETL" not in states
    for here, nxt in zip(names, names[1:] + ["Summary"], strict=True):
        state = states.get(here)
        if here == "ETL":
            assert states["ETL.Manifest"]["Next"] == nxt
        elif state["Type"] == "Task":  # a Glue stage is one Task
            assert state["Next"] == nxt
        else:  # a Map over the previous stage's parts, then the manifest
            assert state["Type"] == "Map" and state["Next"] == f"{here}.Manifest"
            assert states[f"{here}.Manifest"]["Next"] == nxt


@pytest.mark.parametrize(("spec", "mode"), [(REALTIME, "INLINE"), (BATCH, "DISTRIBUTED")], ids=["realtime", "batch"])
def test_per_record_stages_map_over_the_previous_stages_parts(spec, mode):
    states = build_definition(spec)["States"]
    score = states["Score"]
    assert score["ItemProcessor"]["ProcessorConfig"]["Mode"] == mode
    assert score["ItemSelector"]["part.$"] == "$$.Map.Item.Value" and score["ResultPath"] is None
    previous = spec.previous("Score")
    if mode == "INLINE":
        assert score["ItemsPath"] == f"$.stages.{previous}.parts" and score["MaxConcurrency"] == 40
        assert states["ETL.Manifest"]["ResultSelector"]["parts.$"] == "$.Payload.parts"
    else:  # Standard: the part list is read from S3, results go back to S3
        assert score["ItemReader"]["ReaderConfig"] == {"InputType": "JSONL"}
        assert score["ItemReader"]["Parameters"]["Key.$"] == (
            f"States.Format('executions/{{}}/{previous}/parts.jsonl', $$.Execution.Name)"
        )
        assert score["ResultWriter"]["Resource"] == "arn:aws:states:::s3:putObject"
    assert states["Score.Manifest"]["Parameters"]["Payload"]["assemble"] is True
    assert states["Score.Manifest"]["ResultPath"] == "$.stages.Score"


def test_lambda_stage_task_shape():
    states = build_definition(REALTIME)["States"]
    assert states["Score"]["ItemSelector"] == {
        "executionId.$": "$$.Execution.Name",
        "currentStage": "Score",
        "previousStage": "Filter",
        "workflowBucket": "${WorkflowBucket}",
        "part.$": "$$.Map.Item.Value",
    }
    assert states["Score"]["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Score.Failed"}]
    score = states["Score"]["ItemProcessor"]["States"]["Score.Part"]
    assert score["Resource"] == "arn:aws:states:::lambda:invoke"
    assert score["Parameters"] == {"FunctionName": "${ScoreFunctionArn}", "Payload.$": "$"}
    # Express: each part's state gives up before the Score Lambda's own 120 s, and retries once, quickly.
    assert score["TimeoutSeconds"] == 10 < REALTIME.stages[2].timeout_seconds == 120
    assert states["Score.Manifest"]["TimeoutSeconds"] == 5
    assert score["Retry"] == [
        {"ErrorEquals": ["Ceap.PermanentError"], "MaxAttempts": 0},
        {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "MaxAttempts": 1, "BackoffRate": 2.0},
    ]
    assert "Catch" not in score  # the Map catches, after the part's own retries
    batch_score = build_definition(BATCH)["States"]["Score"]["ItemProcessor"]["States"]["Score.Part"]
    assert batch_score["TimeoutSeconds"] == 120  # Standard: the Lambda's own timeout, the usual retries
    assert batch_score["Retry"][1] == {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 20, "MaxAttempts": 2,
                                       "BackoffRate": 2.0}
    assert build_definition(BATCH)["States"]["Score.Manifest"]["TimeoutSeconds"] == 120


def test_first_stage_gets_the_execution_input():
    plan = build_definition(REALTIME)["States"]["ETL.Plan"]
    assert plan["Parameters"]["Payload"]["input.$"] == "$" and plan["Parameters"]["Payload"]["step"] == "plan"
    assert plan["Parameters"]["Payload"]["previousStage"] is None
    assert plan["ResultPath"] == "$.stages.ETL" and plan["TimeoutSeconds"] == 5


@pytest.mark.parametrize(("spec", "mode"), [(REALTIME, "INLINE"), (BATCH, "DISTRIBUTED")], ids=["realtime", "batch"])
def test_etl_maps_over_the_ranges_then_the_partition_groups_its_plan_lists(spec, mode):
    states = build_definition(spec)["States"]
    for map_name, item, step, listed in (("ETL.Ranges", "range", "range", "ranges"), ("ETL.Merges", "group", "merge", "groups")):
        state = states[map_name]
        assert state["Type"] == "Map" and state["ItemProcessor"]["ProcessorConfig"]["Mode"] == mode
        assert state["ItemSelector"]["step"] == step and state["ItemSelector"][f"{item}.$"] == "$$.Map.Item.Value"
        assert state["ItemSelector"]["previousStage"] is None and state["ResultPath"] is None
        assert state["Catch"][0]["Next"] == "ETL.Failed"
        if mode == "INLINE":
            assert state["ItemsPath"] == f"$.stages.ETL.{listed}" and state["MaxConcurrency"] == 40
            assert states["ETL.Plan"]["ResultSelector"][f"{listed}.$"] == f"$.Payload.{listed}"
        else:
            assert state["ItemReader"]["Parameters"]["Key.$"] == (
                f"States.Format('executions/{{}}/ETL/{listed}.jsonl', $$.Execution.Name)")
            assert f"{listed}.$" not in states["ETL.Plan"]["ResultSelector"]  # Standard: read from S3, not the state
    (range_call,) = states["ETL.Ranges"]["ItemProcessor"]["States"].values()
    (merge_call,) = states["ETL.Merges"]["ItemProcessor"]["States"].values()
    if mode == "INLINE":
        assert (range_call["TimeoutSeconds"], merge_call["TimeoutSeconds"]) == (25, 15)
    else:
        assert range_call["TimeoutSeconds"] == merge_call["TimeoutSeconds"] == 300
    assert states["ETL.Manifest"]["Parameters"]["Payload"]["assemble"] is True


def test_glue_stage_retries_five_minutes_then_ten():
    heavy = build_definition(BATCH)["States"]["HeavyETL"]
    assert heavy["Resource"] == "arn:aws:states:::glue:startJobRun.sync"
    assert heavy["Retry"][1] == {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 300, "MaxAttempts": 2, "BackoffRate": 2.0}
    assert heavy["Parameters"]["Arguments"]["--source-uri.$"] == "$.source"


def test_failure_path_records_then_fails_with_the_stage_error():
    states = build_definition(REALTIME)["States"]
    assert states["Filter.Failed"] == {"Type": "Pass", "Result": "Filter", "ResultPath": "$.failure.stage", "Next": "RecordFailure"}
    record = states["RecordFailure"]
    assert record["Resource"] == "arn:aws:states:::aws-sdk:s3:putObject"
    assert record["Next"] == "Failed" and record["Catch"][0]["Next"] == "Failed"
    assert states["Failed"]["Choices"] == [
        {"Variable": "$.failure.Error", "StringMatches": "States.*", "Next": "Failed.Reserved"}]
    assert states["Failed.Stage"]["ErrorPath"] == "$.failure.Error"
    assert states["Failed.Stage"]["CausePath"] == "$.failure.Cause"
    assert states["Failed.Reserved"]["Error"] == "Ceap.StageFailed"


def test_substitution_replaces_every_placeholder():
    definition = build_definition(BATCH)
    keys = substitution_keys(BATCH)
    filled = substitute(definition, {k: f"value-of-{k}" for k in keys})
    assert "${" not in str(filled)
    with pytest.raises(KeyError, match="no value for the definition placeholder"):
        substitute(definition, {})


def test_the_builtin_realtime_workflow_fits_express_by_construction():
    assert express_duration_warnings(REALTIME) == []
    definition = build_definition(REALTIME)
    # Recomputed from the definition itself: every attempt of every task on the path timing out, every
    # wait, then the failure record. A Map's parts run at once (one wave: up to 40 parts), so it counts
    # one part call; then the stage's Manifest step.
    states = definition["States"]

    def task_worst(state: dict) -> float:
        retry = state["Retry"][1]
        return state["TimeoutSeconds"] * (retry["MaxAttempts"] + 1) + sum(
            retry["IntervalSeconds"] * retry["BackoffRate"] ** r for r in range(retry["MaxAttempts"]))

    worst = 0.0
    for stage in REALTIME.stages:
        state = states.get(stage.name)
        if state is None:  # ETL: its plan, one range call, one merge call (each Map one wave), its manifest
            steps = [states["ETL.Plan"], states["ETL.Manifest"]]
            for name in ("ETL.Ranges", "ETL.Merges"):
                assert states[name]["MaxConcurrency"] == 40
                steps += list(states[name]["ItemProcessor"]["States"].values())
        elif state["Type"] == "Map":
            assert state["MaxConcurrency"] == 40
            (part,) = state["ItemProcessor"]["States"].values()
            steps = [part, states[f"{stage.name}.Manifest"]]
        else:
            steps = [state]
        for step in steps:
            worst += task_worst(step)
            assert step["TimeoutSeconds"] < stage.timeout_seconds  # the state gives up before its Lambda
    record = definition["States"]["RecordFailure"]
    r = record["Retry"][0]
    worst += record["TimeoutSeconds"] * (r["MaxAttempts"] + 1) + r["IntervalSeconds"]
    assert worst <= 300


def test_express_warning_names_the_stages_that_overrun():
    slow = WorkflowSpec(name="slow", type="express", stages=(
        StageSpec(name="ETL", function="m:f", timeout_seconds=300), StageSpec(name="B", function="m:g", timeout_seconds=10)))
    (warning,) = express_duration_warnings(slow)
    assert "1161 s" in warning and "ETL (960 s)" in warning and "B" not in warning.split("so:")[1]
    quick = WorkflowSpec(name="quick", type="express", stages=(
        StageSpec(name="A", function="m:f", timeout_seconds=10, retry=RetryPolicy(interval_seconds=1, max_attempts=1)),))
    assert express_duration_warnings(quick) == []
    assert express_duration_warnings(BATCH) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "Bad_Name"}, "workflow name"),
        ({"stages": ()}, "at least one stage"),
        ({"stages": (StageSpec(name="A", function="m:f"), StageSpec(name="A", function="m:g"))}, "unique"),
        ({"type": "express", "stages": (StageSpec(name="A", function="m:f"), StageSpec(name="G", kind="glue", script="j.py"))}, "Express"),
    ],
)
def test_spec_refuses_what_cannot_be_deployed(kwargs, message):
    base = {"name": "ok", "stages": (StageSpec(name="A", function="m:f"),)}
    with pytest.raises(ValidationError, match=message):
        WorkflowSpec(**(base | kwargs))


def test_stage_spec_needs_an_import_path():
    with pytest.raises(ValidationError, match="import path"):
        StageSpec(name="A", function="not a path")
