"""The IAM statements of a workflow's roles: each stage reads its input and writes its own prefix.

The key layout (:mod:`ceap_engine.pipeline.layout`) puts a stage's objects under
``executions/{executionId}/{stage}/``; so a stage's role reads the previous stage's
``executions/*/{prev}/*`` (the first stage: ``inputs/*``), reads and writes its own
``executions/*/{stage}/*``, and only the stages that use the candidate store
(:data:`CANDIDATE_STAGES`) get the table.

Example::

    stage_role_statements(spec, spec.stages[1])   # Filter: reads executions/*/ETL/*, writes executions/*/Filter/*
"""

from __future__ import annotations

import re
from typing import Any

from ceap_engine.pipeline.names import glue_job_name, state_machine_name
from ceap_engine.pipeline.spec import StageSpec, WorkflowSpec

from .cfn import LOG_DELIVERY_WILDCARD, XRAY_WILDCARD, allow, arn, getatt, logical_id, sub

__all__ = [
    "BUCKET_ARN",
    "CANDIDATE_STAGES",
    "has_distributed_map",
    "machine_role_statements",
    "stage_role_statements",
    "with_stage_sids",
]

# The stages that use the candidate store: only they get the table (environment and IAM).
CANDIDATE_STAGES = frozenset({"Store", "Reactive"})
BUCKET_ARN = getatt("WorkflowBucket", "Arn")
_EXECUTIONS_OBJECTS = sub("${WorkflowBucket.Arn}/executions/*")
_TABLE_ARNS = [getatt("CandidatesTable", "Arn"), sub("${CandidatesTable.Arn}/index/*")]


def _stage_objects(stage: str) -> dict[str, str]:
    """``executions/*/{stage}/*``: every object a stage writes, in every execution."""
    return sub(f"${{WorkflowBucket.Arn}}/executions/*/{stage}/*")


def stage_role_statements(spec: WorkflowSpec, stage: StageSpec) -> list[dict[str, Any]]:
    """What one stage may do: read its input (the previous stage's objects, or ``inputs/`` for the first),
    read and write its own objects, list the bucket, and (Store, Reactive) use the candidates table."""
    previous = spec.previous(stage.name)
    reads = [sub("${WorkflowBucket.Arn}/inputs/*")] if previous is None else [_stage_objects(previous)]
    statements = [
        allow("ReadStageInput", ["s3:GetObject"], reads),
        # Its own objects too: a retried attempt finds what an earlier one wrote (idempotent stages).
        allow("ReadOwnOutput", ["s3:GetObject"], [_stage_objects(stage.name)]),
        allow("WriteOwnOutput", ["s3:PutObject"], [_stage_objects(stage.name)]),
        # ListBucket makes S3 answer 404 (not 403) for an absent key, so a missing output reads as missing.
        allow("ListWorkflowBucket", ["s3:ListBucket"], [BUCKET_ARN]),
    ]
    if previous is None:
        # The first stage (ETL) removes its scratch (spill/) once a merge call has read it.
        statements.append(allow("DeleteOwnScratch", ["s3:DeleteObject"], [_stage_objects(stage.name)]))
    if stage.name in CANDIDATE_STAGES:
        statements.append(allow(
            "UseCandidateTable",
            ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:DeleteItem", "dynamodb:GetItem",
             "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
            _TABLE_ARNS))
    if stage.kind == "lambda":
        statements.append(allow("WriteOwnLogs", ["logs:CreateLogStream", "logs:PutLogEvents"],
                                [getatt(logical_id(stage, "LogGroup"), "Arn")]))
        statements.append(XRAY_WILDCARD)
    return statements


def with_stage_sids(statements: list[dict[str, Any]], stage: StageSpec) -> list[dict[str, Any]]:
    """The statements with the stage in their Sid (one policy may hold several stages' statements)."""
    tag = re.sub(r"[^A-Za-z0-9]", "", stage.name)
    return [{**st, "Sid": f"{st['Sid']}{tag}"} for st in statements]


def _distributed_maps(states: dict[str, Any]) -> bool:
    for state in states.values():
        if state.get("Type") == "Map":
            processor = state.get("ItemProcessor") or state.get("Iterator") or {}
            if (processor.get("ProcessorConfig") or {}).get("Mode") == "DISTRIBUTED":
                return True
            if _distributed_maps(processor.get("States", {})):
                return True
        for branch in state.get("Branches", ()):
            if _distributed_maps(branch.get("States", {})):
                return True
    return False


def has_distributed_map(definition: dict[str, Any]) -> bool:
    """True if any Map state of ``definition`` (at any depth) runs in DISTRIBUTED mode.

    >>> has_distributed_map({"States": {"M": {"Type": "Map", "ItemProcessor": {
    ...     "ProcessorConfig": {"Mode": "DISTRIBUTED"}, "States": {}}}}})
    True
    """
    return _distributed_maps(definition.get("States", {}))


def machine_role_statements(spec: WorkflowSpec, definition: dict[str, Any]) -> list[dict[str, Any]]:
    """What the state machine may do: invoke the stage functions, run the Glue jobs, record failures,
    and, if the definition has a Distributed Map, run its child executions and read/write its S3 items."""
    lambda_stages = [st for st in spec.stages if st.kind == "lambda"]
    glue_stages = [st for st in spec.stages if st.kind == "glue"]
    statements = [
        allow("InvokeStageFunctions", ["lambda:InvokeFunction"],
              [r for st in lambda_stages for r in (getatt(logical_id(st, "Lambda"), "Arn"),
                                                     sub(f"${{{logical_id(st, 'Lambda')}.Arn}}:*"))]),
        # RecordFailure writes executions/{id}/failure.json with aws-sdk:s3:putObject.
        allow("RecordFailures", ["s3:PutObject"], [_EXECUTIONS_OBJECTS]),
    ]
    if glue_stages:
        statements.insert(1, allow(
            "RunGlueJobs", ["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun"],
            [arn("glue", f"job/{glue_job_name(spec, st)}") for st in glue_stages],
        ))
    if has_distributed_map(definition):
        machine = state_machine_name(spec)
        statements += [
            # A Distributed Map runs each batch as a child execution of this very state machine.
            allow("RunMapChildExecutions", ["states:StartExecution"], [arn("states", f"stateMachine:{machine}")]),
            allow("FollowMapChildExecutions", ["states:DescribeExecution", "states:StopExecution"],
                  [arn("states", f"execution:{machine}:*"), arn("states", f"express:{machine}:*:*")]),
            # ItemReader reads the part lists; ResultWriter writes its manifest and results (multipart).
            allow("ReadMapItems", ["s3:GetObject"], [_EXECUTIONS_OBJECTS]),
            allow("ListMapItems", ["s3:ListBucket"], [BUCKET_ARN]),
            allow("WriteMapResults", ["s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:PutObject"],
                  [_EXECUTIONS_OBJECTS]),
        ]
    return [*statements, LOG_DELIVERY_WILDCARD, XRAY_WILDCARD]
