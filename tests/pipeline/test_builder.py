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
    assert definition["StartAt"] == "Input"
    assert definition["States"]["Input"]["Default"] == names[0]
    assert definition["States"]["Input.Unwrap"] == {"Type": "Pass", "InputPath": "$[0]", "Next": names[0]}
    for here, nxt in zip(names, names[1:] + ["Summary"], strict=True):
        assert definition["States"][here]["Next"] == nxt


def test_lambda_stage_task_shape():
    score = build_definition(REALTIME)["States"]["Score"]
    assert score["Resource"] == "arn:aws:states:::lambda:invoke"
    assert score["Parameters"]["FunctionName"] == "${ScoreFunctionArn}"
    assert score["Parameters"]["Payload"] == {
        "executionId.$": "$$.Execution.Name",
        "currentStage": "Score",
        "previousStage": "Filter",
        "workflowBucket": "${WorkflowBucket}",
    }
    # Express: the state gives up before the Score Lambda's own 120 s, and retries once, quickly.
    assert score["TimeoutSeconds"] == 25 < REALTIME.stages[2].timeout_seconds == 120
    assert score["Retry"] == [
        {"ErrorEquals": ["Ceap.PermanentError"], "MaxAttempts": 0},
        {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 2, "MaxAttempts": 1, "BackoffRate": 2.0},
    ]
    batch_score = build_definition(BATCH)["States"]["Score"]
    assert batch_score["TimeoutSeconds"] == 120  # Standard: the Lambda's own timeout, the usual retries
    assert batch_score["Retry"][1] == {"ErrorEquals": ["States.ALL"], "IntervalSeconds": 20, "MaxAttempts": 2,
                                       "BackoffRate": 2.0}
    assert score["Catch"] == [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": "Score.Failed"}]
    assert score["ResultPath"] == "$.stages.Score"


def test_first_stage_gets_the_execution_input():
    etl = build_definition(REALTIME)["States"]["ETL"]
    assert etl["Parameters"]["Payload"]["input.$"] == "$"
    assert etl["Parameters"]["Payload"]["previousStage"] is None


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
    # Recomputed from the definition itself: every attempt timing out, every wait, then the failure record.
    worst = 0.0
    for stage in REALTIME.stages:
        state = definition["States"][stage.name]
        retry = state["Retry"][1]
        worst += state["TimeoutSeconds"] * (retry["MaxAttempts"] + 1) + sum(
            retry["IntervalSeconds"] * retry["BackoffRate"] ** r for r in range(retry["MaxAttempts"]))
        assert state["TimeoutSeconds"] < stage.timeout_seconds  # the state gives up before its Lambda
    record = definition["States"]["RecordFailure"]
    r = record["Retry"][0]
    worst += record["TimeoutSeconds"] * (r["MaxAttempts"] + 1) + r["IntervalSeconds"]
    assert worst <= 300


def test_express_warning_names_the_stages_that_overrun():
    slow = WorkflowSpec(name="slow", type="express", stages=(
        StageSpec(name="ETL", function="m:f", timeout_seconds=300), StageSpec(name="B", function="m:g", timeout_seconds=10)))
    (warning,) = express_duration_warnings(slow)
    assert "1071 s" in warning and "ETL (960 s)" in warning and "B" not in warning.split("so:")[1]
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
