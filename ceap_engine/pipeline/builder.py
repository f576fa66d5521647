"""Turn a :class:`~ceap_engine.pipeline.spec.WorkflowSpec` into ASL.

The same definition is deployed to Step Functions (ARNs and names arrive
through ``DefinitionSubstitutions``) and interpreted locally (the engine
substitutes local names first, as AWS would). Shape of the state machine::

    Input -> ETL -> Filter -> [HeavyETL] -> Score -> Store -> Reactive -> Summary
              (ETL: ETL.Plan, a Map of ETL.Range calls over byte ranges of the source, a Map of
               ETL.Merge calls over groups of hash partitions, ETL.Manifest; each of Filter,
               Score, Store, Reactive: a Map over the previous stage's parts, then
               <Stage>.Manifest assembling its manifest)
               \\        \\            \\          \\       \\         \\
                +--------+------------+----------+-------+---------+--> <Stage>.Failed -> RecordFailure -> Failed

A Glue stage is a single Task, as is a first stage without ``fan_out_source``; ETL's
two Maps and every later Lambda stage's Map run one call per item - range, partition
group, or part of the previous stage's output (inline for EXPRESS, Distributed with an
``ItemReader`` over ``ranges.jsonl``, ``groups.jsonl`` or ``parts.jsonl`` for STANDARD) -
followed by a ``<Stage>.Manifest`` Task. Each stage's small result (``ResultSelector``: output key, counts, part list)
lands at ``$.stages.<Stage>``, so the state payload stays small while
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

from ceap_engine.pipeline.layout import FAILURE_DOCUMENT, GROUP_LIST, PART_LIST, RANGE_LIST, format_template
from ceap_engine.pipeline.spec import RetryPolicy, StageSpec, WorkflowSpec, worst_case_seconds

__all__ = [
    "PERMANENT_ERROR",
    "build_definition",
    "express_duration_warnings",
    "entry_state",
    "fans_out",
    "fans_out_over_source",
    "stage_worst_case_seconds",
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
#: Inline Map runs at most 40 iterations at once on AWS; a Distributed Map's children are
#: Lambda invocations, bounded here so a big day does not exhaust the account's concurrency.
INLINE_MAP_CONCURRENCY = 40
DISTRIBUTED_MAP_CONCURRENCY = 100
PART = ".Part"
MANIFEST = ".Manifest"
#: The states of a first stage that fans out over its source (``StageSpec.fan_out_source``):
PLAN = ".Plan"
RANGES = ".Ranges"
RANGE = ".Range"
MERGES = ".Merges"
MERGE = ".Merge"


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


def _request(spec: WorkflowSpec, stage: StageSpec) -> dict[str, Any]:
    return {
        "executionId.$": "$$.Execution.Name",
        "currentStage": stage.name,
        "previousStage": spec.previous(stage.name),
        "workflowBucket": "${%s}" % BUCKET_PLACEHOLDER,
    }


def _invoke(stage: StageSpec, payload: dict[str, Any], timeout_seconds: int | None = None) -> dict[str, Any]:
    return {
        "Type": "Task",
        "Comment": f"{stage.name}: {stage.function}",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "${%s}" % function_placeholder(stage), "Payload": payload},
        "TimeoutSeconds": timeout_seconds or stage.task_timeout_seconds,
        "Retry": _retry(stage),
    }


def _pointer_selector(spec: WorkflowSpec) -> dict[str, Any]:
    selector = {"outputKey.$": "$.Payload.outputKey", "counts.$": "$.Payload.counts", "partList.$": "$.Payload.partList"}
    if spec.type == "express":
        selector["parts.$"] = "$.Payload.parts"  # the next inline Map iterates over it
    return selector


def _lambda_task(spec: WorkflowSpec, stage: StageSpec, nxt: str) -> dict[str, Any]:
    payload = _request(spec, stage)
    payload["input.$"] = "$"  # the execution's payload, unwrapped by the Input state
    return {
        **_invoke(stage, payload),
        "ResultSelector": _pointer_selector(spec),
        "ResultPath": f"$.stages.{stage.name}",
        "Catch": _catch(stage),
        "Next": nxt,
    }


def _item_map(spec: WorkflowSpec, stage: StageSpec, *, item: str, task: str, items_of: str, item_list: str,
              results: str, timeout: int, nxt: str, comment: str, step: str | None = None) -> dict[str, Any]:
    """A Map of one Lambda call per item (``item``: the request's key for it) - a part of the previous stage's
    output, or a range or partition group of a first stage that fans out over its source.

    ``items_of`` is the stage whose result lists the items (``$.stages.<it>.<item>s``, inline for EXPRESS)
    and ``item_list`` the file name of their JSON Lines beside its manifest (a Distributed Map's ItemReader).
    """
    selector = {**_request(spec, stage), **({"step": step} if step else {}), f"{item}.$": "$$.Map.Item.Value"}
    call = {
        **_invoke(stage, {}, timeout),
        "ResultSelector": {f"{item}.$": f"$.Payload.{item}", "counts.$": "$.Payload.counts"},
        "End": True,
    }
    call["Parameters"] = {"FunctionName": "${%s}" % function_placeholder(stage), "Payload.$": "$"}
    state: dict[str, Any] = {
        "Type": "Map",
        "Comment": comment,
        "ItemSelector": selector,
        "ResultPath": None,
        "Catch": _catch(stage),
        "Next": nxt,
    }
    bucket = "${%s}" % BUCKET_PLACEHOLDER
    if spec.type == "express":
        # Express cannot run a Distributed Map: the item list travels in the state (well under 256 KB).
        state["ItemsPath"] = f"$.stages.{items_of}.{item}s"
        state["MaxConcurrency"] = INLINE_MAP_CONCURRENCY
        processor_config: dict[str, Any] = {"Mode": "INLINE"}
    else:
        state["ItemReader"] = {
            "Resource": "arn:aws:states:::s3:getObject",
            "ReaderConfig": {"InputType": "JSONL"},
            "Parameters": {
                "Bucket": bucket,
                "Key.$": f"States.Format('{format_template(items_of, item_list)}', $$.Execution.Name)",
            },
        }
        state["ResultWriter"] = {
            "Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {
                "Bucket": bucket,
                "Prefix.$": f"States.Format('{format_template(stage.name, results)}', $$.Execution.Name)",
            },
        }
        state["MaxConcurrency"] = DISTRIBUTED_MAP_CONCURRENCY
        processor_config = {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    state["ItemProcessor"] = {"ProcessorConfig": processor_config, "StartAt": task, "States": {task: call}}
    return state


def _part_map(spec: WorkflowSpec, stage: StageSpec) -> dict[str, Any]:
    """One Map iteration per part of the previous stage's output (see docs/architecture.md)."""
    previous = spec.previous(stage.name)
    assert previous is not None
    return _item_map(spec, stage, item="part", task=f"{stage.name}{PART}", items_of=previous, item_list=PART_LIST,
                     results="map-results", timeout=stage.task_timeout_seconds, nxt=f"{stage.name}{MANIFEST}",
                     comment=f"{stage.name} over each part of {previous}'s output; its manifest is assembled after.")


def _source_states(spec: WorkflowSpec, stage: StageSpec, nxt: str) -> dict[str, Any]:
    """A first stage over byte ranges of its source: Plan, a Map of range calls, a Map of merge calls, Manifest."""
    name = stage.name
    selector = {"rangeCount.$": "$.Payload.rangeCount", "groupCount.$": "$.Payload.groupCount"}
    if spec.type == "express":
        selector |= {"ranges.$": "$.Payload.ranges", "groups.$": "$.Payload.groups"}
    plan = {
        **_invoke(stage, {**_request(spec, stage), "step": "plan", "input.$": "$"}, stage.manifest_task_timeout_seconds),
        "Comment": f"{name}: the byte ranges of the source (one call each) and the partition groups to merge",
        "ResultSelector": selector,
        "ResultPath": f"$.stages.{name}",
        "Catch": _catch(stage),
        "Next": f"{name}{RANGES}",
    }
    ranges = _item_map(spec, stage, item="range", task=f"{name}{RANGE}", items_of=name, item_list=RANGE_LIST,
                       results="range-results", timeout=stage.task_timeout_seconds, nxt=f"{name}{MERGES}", step="range",
                       comment=f"{name} over each byte range of the source: validate, scope, spill by partition.")
    merges = _item_map(spec, stage, item="group", task=f"{name}{MERGE}", items_of=name, item_list=GROUP_LIST,
                       results="merge-results", timeout=stage.merge_task_timeout_seconds, nxt=f"{name}{MANIFEST}",
                       step="merge", comment=f"{name} over each group of partitions: merge every range's events into candidates.")
    return {f"{name}{PLAN}": plan, f"{name}{RANGES}": ranges, f"{name}{MERGES}": merges,
            f"{name}{MANIFEST}": _manifest_task(spec, stage, nxt)}


def _manifest_task(spec: WorkflowSpec, stage: StageSpec, nxt: str) -> dict[str, Any]:
    return {
        **_invoke(stage, {**_request(spec, stage), "assemble": True}, stage.manifest_task_timeout_seconds),
        "Comment": f"{stage.name}: add up its parts' summaries into its manifest and check the reconciliation",
        "ResultSelector": _pointer_selector(spec),
        "ResultPath": f"$.stages.{stage.name}",
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
            "Default": entry_state(spec, stages[0]),
        },
        UNWRAP: {"Type": "Pass", "InputPath": "$[0]", "Next": entry_state(spec, stages[0])},
    }
    for i, stage in enumerate(stages):
        nxt = entry_state(spec, stages[i + 1]) if i + 1 < len(stages) else SUMMARY
        if stage.kind == "glue":
            states[stage.name] = _glue_task(spec, stage, nxt)
        elif fans_out_over_source(spec, stage):
            states.update(_source_states(spec, stage, nxt))
        elif not fans_out(spec, stage):
            states[stage.name] = _lambda_task(spec, stage, nxt)
        else:
            states[stage.name] = _part_map(spec, stage)
            states[f"{stage.name}{MANIFEST}"] = _manifest_task(spec, stage, nxt)
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

    The worst case of a step is every attempt timing out plus every retry wait. A stage that
    fans out over parts counts one part call (its parts run at once, up to the inline Map's 40)
    and its ``<Stage>.Manifest``; a first stage over byte ranges of its source its Plan, one range
    call, one merge call and its Manifest; the workflow's worst case is the stages' sum plus
    recording the failure.

    >>> from ceap_engine.pipeline.builtin import REALTIME
    >>> express_duration_warnings(REALTIME)
    []
    """
    if spec.type != "express":
        return []
    per_stage = [(s.name, stage_worst_case_seconds(spec, s)) for s in spec.stages]
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


def fans_out(spec: WorkflowSpec, stage: StageSpec) -> bool:
    """Whether the built definition runs ``stage`` as a Map over parts plus a ``<Stage>.Manifest`` step."""
    return stage.kind == "lambda" and spec.stages[0].name != stage.name


def fans_out_over_source(spec: WorkflowSpec, stage: StageSpec) -> bool:
    """Whether the built definition runs ``stage`` (the first) as Plan, Maps of range and merge calls, Manifest."""
    return stage.kind == "lambda" and stage.fan_out_source and spec.stages[0].name == stage.name


def entry_state(spec: WorkflowSpec, stage: StageSpec) -> str:
    """The state a stage starts at: ``<Stage>.Plan`` for a first stage that fans out over its source, else its name."""
    return f"{stage.name}{PLAN}" if fans_out_over_source(spec, stage) else stage.name


def stage_worst_case_seconds(spec: WorkflowSpec, stage: StageSpec) -> float:
    """The longest ``stage`` can take in ``spec``'s definition: its one task, or one part call and its manifest,
    or (over its source) its plan, one range call, one merge call and its manifest.

    >>> from ceap_engine.pipeline.builtin import REALTIME
    >>> [stage_worst_case_seconds(REALTIME, s) for s in REALTIME.stages]
    [108.0, 34.0, 34.0, 54.0, 34.0]
    """
    if fans_out_over_source(spec, stage):
        return (stage.manifest_worst_case_seconds + stage.worst_case_seconds + stage.merge_worst_case_seconds
                + stage.manifest_worst_case_seconds)
    if fans_out(spec, stage):
        return stage.worst_case_seconds + stage.manifest_worst_case_seconds
    return stage.worst_case_seconds
