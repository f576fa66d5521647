"""Turn a :class:`~ceap_engine.pipeline.spec.WorkflowSpec` into ASL.

The same definition is deployed to Step Functions (ARNs and names arrive
through ``DefinitionSubstitutions``) and interpreted locally (the engine
substitutes local names first, as AWS would). Shape of the state machine::

    Input -> ETL -> Filter -> [HeavyETL] -> Score -> Store -> Reactive -> Summary
               \\        \\            \\          \\       \\         \\
                +--------+------------+----------+-------+---------+--> <Stage>.Failed -> RecordFailure -> Failed

Each stage is a Task whose small result (``ResultSelector``: output key and
counts) lands at ``$.stages.<Stage>``, so the state payload stays small while
the data itself flows through the object store. A stage failure that Retry
cannot fix is caught, named, written to ``executions/{id}/failure.json`` and
ends the execution FAILED with the stage's own error and cause.

Example::

    definition = build_definition(REALTIME)
    warnings = express_duration_warnings(REALTIME)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ceap_engine.pipeline.layout import FAILURE_DOCUMENT, format_template
from ceap_engine.pipeline.spec import RetryPolicy, StageSpec, WorkflowSpec, worst_case_seconds

__all__ = [
    "PERMANENT_ERROR",
    "build_definition",
    "express_duration_warnings",
    "function_placeholder",
    "substitute",
    "substitution_keys",
]

PERMANENT_ERROR = "Ceap.PermanentError"
EXPRESS_LIMIT_SECONDS = 300
#: Writing failure.json (one small S3 put) gets 10 s and one retry: it runs after a stage used its
#: whole budget, so it counts in every worst case (21 s).
RECORD_FAILURE_TIMEOUT_SECONDS = 10
RECORD_FAILURE_RETRY = RetryPolicy(interval_seconds=1, max_attempts=1, backoff_rate=2.0)
BUCKET_PLACEHOLDER = "WorkflowBucket"
RECORD_FAILURE = "RecordFailure"
FAILED = "Failed"
FAILED_STAGE = "Failed.Stage"
FAILED_RESERVED = "Failed.Reserved"
STAGE_FAILED = "Ceap.StageFailed"
SUMMARY = "Summary"
INPUT = "Input"
UNWRAP = "Input.Unwrap"


def function_placeholder(stage: StageSpec) -> str:
    """The DefinitionSubstitutions key of a stage's Lambda ARN or Glue job name."""
    return f"{stage.name}JobName" if stage.kind == "glue" else f"{stage.name}FunctionArn"


def substitution_keys(spec: WorkflowSpec) -> list[str]:
    """Every ``${...}`` placeholder the definition of ``spec`` uses."""
    return [BUCKET_PLACEHOLDER] + [function_placeholder(s) for s in spec.stages]


def _retry(stage: StageSpec) -> list[dict[str, Any]]:
    policy = stage.retry_policy
    transient: dict[str, Any] = {
        "ErrorEquals": ["States.ALL"],
        "IntervalSeconds": policy.interval_seconds,
        "MaxAttempts": policy.max_attempts,
        "BackoffRate": policy.backoff_rate,
    }
    if policy.max_delay_seconds is not None:
        transient["MaxDelaySeconds"] = policy.max_delay_seconds
    if policy.jitter != "NONE":
        transient["JitterStrategy"] = policy.jitter
    # Bad data never gets better: the stage raises Ceap.PermanentError and the
    # first retrier (MaxAttempts 0) sends it straight to Catch.
    return [{"ErrorEquals": [PERMANENT_ERROR], "MaxAttempts": 0}, transient]


def _catch(stage: StageSpec) -> list[dict[str, Any]]:
    return [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.failure", "Next": f"{stage.name}.Failed"}]


def _lambda_task(spec: WorkflowSpec, stage: StageSpec, nxt: str) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "executionId.$": "$$.Execution.Name",
        "currentStage": stage.name,
        "previousStage": spec.previous(stage.name),
        "workflowBucket": "${%s}" % BUCKET_PLACEHOLDER,
    }
    if spec.previous(stage.name) is None:
        payload["input.$"] = "$"  # the execution's payload, unwrapped by the Input state
    return {
        "Type": "Task",
        "Comment": f"{stage.name}: {stage.function}",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "${%s}" % function_placeholder(stage), "Payload": payload},
        "ResultSelector": {"outputKey.$": "$.Payload.outputKey", "counts.$": "$.Payload.counts"},
        "ResultPath": f"$.stages.{stage.name}",
        "TimeoutSeconds": stage.task_timeout_seconds,
        "Retry": _retry(stage),
        "Catch": _catch(stage),
        "Next": nxt,
    }


def _glue_task(spec: WorkflowSpec, stage: StageSpec, nxt: str) -> dict[str, Any]:
    previous = spec.previous(stage.name)
    bucket = "${%s}" % BUCKET_PLACEHOLDER
    return {
        "Type": "Task",
        "Comment": f"{stage.name}: Glue job running {stage.script}",
        "Resource": "arn:aws:states:::glue:startJobRun.sync",
        "Parameters": {
            "JobName": "${%s}" % function_placeholder(stage),
            "Arguments": {
                "--execution-id.$": "$$.Execution.Name",
                "--input-bucket": bucket,
                "--input-key.$": f"States.Format('{format_template(previous)}', $$.Execution.Name)",
                "--output-bucket": bucket,
                "--output-key.$": f"States.Format('{format_template(stage.name)}', $$.Execution.Name)",
                "--source-uri.$": "$.source",
                "--date-start.$": "$.dateRange.start",
                "--date-end.$": "$.dateRange.end",
            },
        },
        "ResultSelector": {
            "outputKey.$": "$.Arguments['--output-key']",
            "jobRunId.$": "$.Id",
            "jobRunState.$": "$.JobRunState",
        },
        "ResultPath": f"$.stages.{stage.name}",
        "TimeoutSeconds": stage.task_timeout_seconds,
        "Retry": _retry(stage),
        "Catch": _catch(stage),
        "Next": nxt,
    }


def build_definition(spec: WorkflowSpec) -> dict[str, Any]:
    """The ASL of ``spec`` with ``${...}`` placeholders (see :func:`substitution_keys`)."""
    stages = list(spec.stages)
    states: dict[str, Any] = {
        # An EventBridge Pipe hands Step Functions its batch as a JSON array even with
        # batch size 1 (AWS: "EventBridge Pipes batching and concurrency"); a direct
        # StartExecution sends the payload object. Both become the payload object here.
        INPUT: {
            "Type": "Choice",
            "Comment": "A one-element array (a Pipe batch) or the payload object itself.",
            "Choices": [{"Variable": "$[0]", "IsPresent": True, "Next": UNWRAP}],
            "Default": stages[0].name,
        },
        UNWRAP: {"Type": "Pass", "InputPath": "$[0]", "Next": stages[0].name},
    }
    for i, stage in enumerate(stages):
        nxt = stages[i + 1].name if i + 1 < len(stages) else SUMMARY
        task = _glue_task(spec, stage, nxt) if stage.kind == "glue" else _lambda_task(spec, stage, nxt)
        states[stage.name] = task
        # Name the failed stage before recording it: Catch only gives Error and Cause.
        states[f"{stage.name}.Failed"] = {
            "Type": "Pass",
            "Result": stage.name,
            "ResultPath": "$.failure.stage",
            "Next": RECORD_FAILURE,
        }
    states[SUMMARY] = {
        "Type": "Pass",
        "Comment": "Per stage: where its output is and what it counted.",
        "Parameters": {
            "workflow": spec.name,
            "executionId.$": "$$.Execution.Name",
            "input.$": "$$.Execution.Input",
            "stages.$": "$.stages",
        },
        "End": True,
    }
    states[RECORD_FAILURE] = {
        "Type": "Task",
        "Comment": "Write executions/{id}/failure.json (stage, error, cause) before failing.",
        "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
        "Parameters": {
            "Bucket": "${%s}" % BUCKET_PLACEHOLDER,
            "Key.$": f"States.Format('{format_template(name=FAILURE_DOCUMENT)}', $$.Execution.Name)",
            "ContentType": "application/json",
            "Body.$": "States.JsonToString($.failure)",
        },
        "ResultPath": None,
        "TimeoutSeconds": RECORD_FAILURE_TIMEOUT_SECONDS,
        "Retry": [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": RECORD_FAILURE_RETRY.interval_seconds,
                   "MaxAttempts": RECORD_FAILURE_RETRY.max_attempts, "BackoffRate": RECORD_FAILURE_RETRY.backoff_rate}],
        # Even if the record cannot be written the execution still fails with the stage's error.
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.recordFailureError", "Next": FAILED}],
        "Next": FAILED,
    }
    # The ASL specification reserves error names starting with "States." to the
    # service (moto and LocalStack refuse them in a Fail state with States.Runtime):
    # a stage that failed with one (States.Timeout...) ends as Ceap.StageFailed, its
    # own error leading the cause and kept in failure.json.
    states[FAILED] = {
        "Type": "Choice",
        "Choices": [{"Variable": "$.failure.Error", "StringMatches": "States.*", "Next": FAILED_RESERVED}],
        "Default": FAILED_STAGE,
    }
    states[FAILED_STAGE] = {
        "Type": "Fail",
        "Comment": "The failed stage's own error and cause.",
        "ErrorPath": "$.failure.Error",
        "CausePath": "$.failure.Cause",
    }
    states[FAILED_RESERVED] = {
        "Type": "Fail",
        "Comment": "A stage failed with a States.* error, which a Fail state may not raise.",
        "Error": STAGE_FAILED,
        "CausePath": "States.Format('{} in stage {}: {}', $.failure.Error, $.failure.stage, $.failure.Cause)",
    }
    return {
        "Comment": f"CEAP workflow '{spec.name}' ({spec.type}): {' -> '.join(s.name for s in stages)}. Built by ceap.",
        "StartAt": INPUT,
        "States": states,
    }


_PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


def substitute(definition: Any, values: Mapping[str, str]) -> Any:
    """Replace ``${Key}`` placeholders as Step Functions' DefinitionSubstitutions do.

    >>> substitute({"a": "${B}"}, {"B": "x"})
    {'a': 'x'}
    """
    if isinstance(definition, dict):
        return {k: substitute(v, values) for k, v in definition.items()}
    if isinstance(definition, list):
        return [substitute(v, values) for v in definition]
    if isinstance(definition, str) and "${" in definition:
        def repl(m: re.Match[str]) -> str:
            key = m.group(1)
            if key not in values:
                raise KeyError(f"no value for the definition placeholder ${{{key}}}")
            return values[key]

        return _PLACEHOLDER.sub(repl, definition)
    return definition


def express_duration_warnings(spec: WorkflowSpec) -> list[str]:
    """Why an EXPRESS workflow might outlive Express's 5-minute limit (empty if it cannot).

    The worst case of a stage is every attempt timing out plus every retry
    wait; the workflow's worst case is their sum.
    """
    if spec.type != "express":
        return []
    per_stage = [(s.name, s.worst_case_seconds) for s in spec.stages]
    # The last stage can fail after its whole budget: recording the failure comes on top.
    total = sum(seconds for _, seconds in per_stage) + worst_case_seconds(RECORD_FAILURE_TIMEOUT_SECONDS,
                                                                          RECORD_FAILURE_RETRY)
    if total <= EXPRESS_LIMIT_SECONDS:
        return []
    heavy = sorted(per_stage, key=lambda p: -p[1])
    named, running = [], 0.0
    for name, seconds in heavy:
        named.append(f"{name} ({seconds:.0f} s)")
        running += seconds
        if running > EXPRESS_LIMIT_SECONDS:
            break
    return [
        f"workflow '{spec.name}' is EXPRESS but can run {total:.0f} s in the worst case (every attempt timing out, "
        f"plus retry waits and recording the failure), over Express's {EXPRESS_LIMIT_SECONDS} s limit; the stages that make it so: "
        f"{', '.join(named)}. Lower their timeouts or retries, or use a STANDARD workflow."
    ]
