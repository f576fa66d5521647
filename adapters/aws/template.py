"""The CloudFormation template of a workflow (``ceap synth``): the same ASL and stage code on AWS.

One stack per workflow name (``ceap-workflow-{name}``), so several workflows
live side by side in one account. What it holds:

* the workflow bucket ``ceap-workflow-{name}-{account}`` (SSE, public access
  blocked, TLS only, ``executions/`` deleted after 7 days);
* the queue ``ceap-workflow-{name}-queue`` (600 s visibility, SSE) with the
  dead-letter queue ``ceap-workflow-{name}-dlq`` (14 days, after 3 receives);
* an EventBridge Pipe from the queue to the state machine (batch size 1;
  REQUEST_RESPONSE for Express, FIRE_AND_FORGET for Standard) whose
  ``InputTemplate`` makes the execution input the message body's JSON object;
* one Lambda per stage ``CeapWorkflow-{name}-{Stage}Lambda`` (the shared code
  package, ``adapters.aws.handler.handler``), each with its log group;
* the state machine ``Ceap-{name}-Workflow`` whose definition is the builder's
  ASL (ARNs and names through DefinitionSubstitutions), logging level ALL to
  ``/aws/stepfunctions/Ceap-{name}-Workflow``, X-Ray tracing on;
* for Standard workflows the Glue job ``ceap-workflow-{name}-heavy-etl``;
* the DynamoDB candidates table; least-privilege IAM roles.

The code locations are stack parameters (``ArtifactsBucket``,
``LambdaCodeKey``, ``GlueScriptKey``), so synthesis needs no AWS call and a
new code package is a parameter change.

Example::

    spec = workflow_spec("demo", "express")
    template = synthesize(spec)
    json.dumps(template)  # what `ceap synth -n demo -t express` prints
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from ceap_engine.asl.definition import validate_definition
from ceap_engine.errors import DefinitionError, InputError, Problem
from ceap_engine.pipeline import (
    BATCH,
    REALTIME,
    build_definition,
    function_placeholder,
    substitute,
    substitution_keys,
)
from ceap_engine.pipeline.builder import BUCKET_PLACEHOLDER
from ceap_engine.pipeline.names import glue_job_name, lambda_function_name, state_machine_name
from ceap_engine.pipeline.spec import WORKFLOW_NAME, StageSpec, WorkflowSpec

from .cfn import LOG_DELIVERY_WILDCARD, XRAY_WILDCARD, allow, arn, assume, getatt, policy, ref, sub
from .schema import candidate_table_schema

__all__ = [
    "HANDLER",
    "TemplateOptions",
    "logical_id",
    "resource_names",
    "stack_name",
    "synthesize",
    "template_body",
    "validate_workflow_name",
    "workflow_spec",
]

HANDLER = "adapters.aws.handler.handler"
RUNTIME = "python3.11"
PIPE_INPUT_TEMPLATE = "<$.body>"
WorkflowType = Literal["express", "standard"]


def validate_workflow_name(name: str) -> str:
    """Return ``name`` if every name derived from it is valid on AWS, else raise :class:`InputError`.

    >>> validate_workflow_name("demo-1")
    'demo-1'
    """
    if not isinstance(name, str) or not WORKFLOW_NAME.match(name):
        raise InputError(
            [Problem("/name", f"workflow name {name!r} must be 1-30 characters: a lowercase letter, then lowercase "
                              "letters, digits or '-' (it becomes part of bucket, function, role and queue names)")],
            "workflow name",
        )
    return name


def workflow_spec(name: str, workflow_type: WorkflowType) -> WorkflowSpec:
    """The built-in workflow of ``workflow_type`` (express: realtime, standard: batch) under ``name``."""
    validate_workflow_name(name)
    if workflow_type not in ("express", "standard"):
        raise InputError([Problem("/type", f"workflow type {workflow_type!r} must be express or standard")],
                         "workflow type")
    base = REALTIME if workflow_type == "express" else BATCH
    return WorkflowSpec(name=name, type=base.type, bucket=None, stages=base.stages)


def stack_name(spec: WorkflowSpec) -> str:
    """``ceap-workflow-{name}``."""
    return f"ceap-workflow-{spec.name}"


@dataclass(frozen=True)
class ResourceNames:
    """The physical names the template gives (the bucket also gets the account id on AWS)."""

    bucket_prefix: str
    queue: str
    dlq: str
    table: str
    pipe: str
    state_machine: str
    state_machine_log_group: str

    def bucket(self, account: str) -> str:
        return f"{self.bucket_prefix}-{account}"


def resource_names(spec: WorkflowSpec) -> ResourceNames:
    name = spec.name
    return ResourceNames(
        bucket_prefix=f"ceap-workflow-{name}",
        queue=f"ceap-workflow-{name}-queue",
        dlq=f"ceap-workflow-{name}-dlq",
        table=f"ceap-workflow-{name}-candidates",
        pipe=f"ceap-workflow-{name}-pipe",
        state_machine=state_machine_name(spec),
        state_machine_log_group=f"/aws/stepfunctions/{state_machine_name(spec)}",
    )


@dataclass(frozen=True)
class TemplateOptions:
    """Choices of a synthesis that are not in the workflow spec."""

    log_execution_data: bool = True
    arch: Literal["x86_64", "arm64"] = "x86_64"
    log_retention_days: int = 30


def logical_id(stage: StageSpec, suffix: str) -> str:
    """``ETLLambda``, ``ETLLogGroup``, ``HeavyETLJob`` ..."""
    return f"{re.sub(r'[^A-Za-z0-9]', '', stage.name)}{suffix}"


def _validated_definition(spec: WorkflowSpec) -> dict[str, Any]:
    """The builder's ASL, checked by the engine's validator before it goes into any template."""
    definition = build_definition(spec)
    sample = {
        key: "ceap-sample-bucket" if key == BUCKET_PLACEHOLDER else
        ("ceap-sample-job" if key.endswith("JobName") else f"arn:aws:lambda:us-east-1:123456789012:function:{key}")
        for key in substitution_keys(spec)
    }
    problems = validate_definition(substitute(definition, sample))
    if problems:
        raise DefinitionError(problems)
    return definition


@dataclass(frozen=True)
class _Synthesis:
    """What every resource builder needs: the spec, its names and the synthesis options."""

    spec: WorkflowSpec
    options: TemplateOptions
    names: ResourceNames

    @property
    def lambda_stages(self) -> list[StageSpec]:
        return [s for s in self.spec.stages if s.kind == "lambda"]

    @property
    def glue_stages(self) -> list[StageSpec]:
        return [s for s in self.spec.stages if s.kind == "glue"]

    @property
    def express(self) -> bool:
        return self.spec.type == "express"


_BUCKET_ARN = getatt("WorkflowBucket", "Arn")
_BUCKET_OBJECTS = sub("${WorkflowBucket.Arn}/*")
_EXECUTIONS_OBJECTS = sub("${WorkflowBucket.Arn}/executions/*")
_TABLE_ARNS = [getatt("CandidatesTable", "Arn"), sub("${CandidatesTable.Arn}/index/*")]


def _parameters(s: _Synthesis) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "ArtifactsBucket": {"Type": "String", "Description": "Bucket holding the Lambda code package and the Glue script"},
        "LambdaCodeKey": {"Type": "String", "Description": "Key of the Lambda code package (named by its SHA-256)"},
    }
    if s.glue_stages:
        parameters["GlueScriptKey"] = {"Type": "String", "Description": "Key of the Glue job's script"}
    return parameters


def _bucket_resources(s: _Synthesis) -> dict[str, Any]:
    """The workflow bucket (SSE, no public access, executions/ expire after 7 days) and its TLS-only policy."""
    return {
        "WorkflowBucket": {
            "Type": "AWS::S3::Bucket",
            "Properties": {
                "BucketName": sub(f"{s.names.bucket_prefix}-${{AWS::AccountId}}"),
                "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "LifecycleConfiguration": {"Rules": [
                    {"Id": "ExpireExecutionData", "Status": "Enabled", "Prefix": "executions/", "ExpirationInDays": 7}]},
            },
        },
        "WorkflowBucketPolicy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {
                "Bucket": ref("WorkflowBucket"),
                "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                    "Sid": "DenyRequestsWithoutTLS", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                    "Resource": [_BUCKET_ARN, _BUCKET_OBJECTS],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }]},
            },
        },
    }


def _queue_resources(s: _Synthesis) -> dict[str, Any]:
    """The input queue (600 s visibility) and its dead-letter queue (after 3 receives, kept 14 days)."""
    return {
        "DeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {"QueueName": s.names.dlq, "MessageRetentionPeriod": 14 * 24 * 3600, "SqsManagedSseEnabled": True},
        },
        "Queue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": s.names.queue,
                "VisibilityTimeout": 600,
                "MessageRetentionPeriod": 4 * 24 * 3600,
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {"deadLetterTargetArn": getatt("DeadLetterQueue", "Arn"), "maxReceiveCount": 3},
            },
        },
    }


def _table_resources(s: _Synthesis) -> dict[str, Any]:
    """The DynamoDB candidates table (SSE, point-in-time recovery)."""
    return {
        "CandidatesTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "TableName": s.names.table,
                **candidate_table_schema(),
                "SSESpecification": {"SSEEnabled": True},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            },
        },
    }


def _stage_function_resources(s: _Synthesis) -> dict[str, Any]:
    """The stage role and, per Lambda stage, its log group and function."""
    spec, options = s.spec, s.options
    resources: dict[str, Any] = {
        "StageRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": sub(f"ceap-{spec.name}-stages-${{AWS::Region}}"),
                "Description": f"ceap workflow {spec.name}: the stage Lambdas",
                "AssumeRolePolicyDocument": assume("lambda.amazonaws.com"),
                "Policies": [policy("ceap-stages", [
                    # Reads: the previous stage's output and the source files (kept in this bucket, under inputs/).
                    allow("ReadWorkflowObjects", ["s3:GetObject"], [_BUCKET_OBJECTS]),
                    # ListBucket makes S3 answer 404 (not 403) for an absent key, so a missing output reads as missing.
                    allow("ListWorkflowBucket", ["s3:ListBucket"], [_BUCKET_ARN]),
                    allow("WriteStageOutputs", ["s3:PutObject"], [_EXECUTIONS_OBJECTS]),
                    allow("UseCandidateTable",
                          ["dynamodb:BatchWriteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"],
                          _TABLE_ARNS),
                    allow("WriteOwnLogs", ["logs:CreateLogStream", "logs:PutLogEvents"],
                          [getatt(logical_id(st, "LogGroup"), "Arn") for st in s.lambda_stages]),
                    XRAY_WILDCARD,
                ])],
            },
        },
    }
    for stage in s.lambda_stages:
        function_name = lambda_function_name(spec, stage)
        resources[logical_id(stage, "LogGroup")] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": f"/aws/lambda/{function_name}", "RetentionInDays": options.log_retention_days},
        }
        variables = {"CEAP_STAGE_FUNCTION": stage.function, "CEAP_CANDIDATE_TABLE": ref("CandidatesTable")}
        if stage.config:
            variables["CEAP_STAGE_CONFIG"] = json.dumps(stage.config, sort_keys=True, separators=(",", ":"))
        resources[logical_id(stage, "Lambda")] = {
            "Type": "AWS::Lambda::Function",
            # The log group first: else Lambda would create it on the first invocation, without retention.
            "DependsOn": [logical_id(stage, "LogGroup")],
            "Properties": {
                "FunctionName": function_name,
                "Description": f"ceap workflow {spec.name}: stage {stage.name} ({stage.function})",
                "Runtime": RUNTIME,
                "Architectures": [options.arch],
                "Handler": HANDLER,
                "Code": {"S3Bucket": ref("ArtifactsBucket"), "S3Key": ref("LambdaCodeKey")},
                "MemorySize": stage.memory_mb,
                "Timeout": stage.timeout_seconds,
                "Role": getatt("StageRole", "Arn"),
                "Environment": {"Variables": variables},
                "TracingConfig": {"Mode": "Active"},
            },
        }
    return resources


def _glue_resources(s: _Synthesis) -> dict[str, Any]:
    """The Glue job role and one job per Glue stage (Standard workflows); nothing without Glue stages."""
    spec = s.spec
    if not s.glue_stages:
        return {}
    resources: dict[str, Any] = {
        "GlueJobRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": sub(f"ceap-{spec.name}-glue-${{AWS::Region}}"),
                "Description": f"ceap workflow {spec.name}: the HeavyETL Glue job",
                "AssumeRolePolicyDocument": assume("glue.amazonaws.com"),
                "Policies": [policy("ceap-glue", [
                    allow("ReadJobScript", ["s3:GetObject"], [sub("arn:${AWS::Partition}:s3:::${ArtifactsBucket}/ceap/glue/*")]),
                    allow("ReadWorkflowObjects", ["s3:GetObject"], [_BUCKET_OBJECTS]),
                    allow("ListWorkflowBucket", ["s3:ListBucket"], [_BUCKET_ARN]),
                    allow("WriteStageOutput", ["s3:PutObject"], [_EXECUTIONS_OBJECTS]),
                    # Glue writes driver and executor logs to its fixed /aws-glue/ log groups.
                    allow("WriteGlueLogs", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                          [arn("logs", "log-group:/aws-glue/*")]),
                ])],
            },
        },
    }
    for stage in s.glue_stages:
        resources[logical_id(stage, "Job")] = {
            "Type": "AWS::Glue::Job",
            "Properties": {
                "Name": glue_job_name(spec, stage),
                "Description": f"ceap workflow {spec.name}: stage {stage.name} ({stage.script})",
                "Role": getatt("GlueJobRole", "Arn"),
                "Command": {"Name": "glueetl", "PythonVersion": "3",
                            "ScriptLocation": sub("s3://${ArtifactsBucket}/${GlueScriptKey}")},
                "GlueVersion": "5.0",
                "WorkerType": "G.1X",
                "NumberOfWorkers": 2,
                "Timeout": stage.timeout_seconds // 60,
                # Step Functions' Retry re-runs the job; a Glue retry as well would multiply the attempts.
                "MaxRetries": 0,
                # One run per execution: concurrent executions must not fail with ConcurrentRunsExceeded.
                "ExecutionProperty": {"MaxConcurrentRuns": 10},
                "DefaultArguments": {"--job-language": "python", "--enable-continuous-cloudwatch-log": "true"},
            },
        }
    return resources


def _state_machine_resources(s: _Synthesis, definition: dict[str, Any]) -> dict[str, Any]:
    """The state machine with its role and log group; the ASL's placeholders filled by DefinitionSubstitutions."""
    spec, names = s.spec, s.names
    statements = [
        allow("InvokeStageFunctions", ["lambda:InvokeFunction"],
              [r for st in s.lambda_stages for r in (getatt(logical_id(st, "Lambda"), "Arn"),
                                                       sub(f"${{{logical_id(st, 'Lambda')}.Arn}}:*"))]),
        # RecordFailure writes executions/{id}/failure.json with aws-sdk:s3:putObject.
        allow("RecordFailures", ["s3:PutObject"], [_EXECUTIONS_OBJECTS]),
        LOG_DELIVERY_WILDCARD,
        XRAY_WILDCARD,
    ]
    if s.glue_stages:
        statements.insert(1, allow(
            "RunGlueJobs", ["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun"],
            [arn("glue", f"job/{glue_job_name(spec, st)}") for st in s.glue_stages],
        ))
    substitutions: dict[str, Any] = {BUCKET_PLACEHOLDER: ref("WorkflowBucket")}
    for stage in spec.stages:
        substitutions[function_placeholder(stage)] = (
            ref(logical_id(stage, "Job")) if stage.kind == "glue" else getatt(logical_id(stage, "Lambda"), "Arn")
        )
    return {
        "StateMachineLogGroup": {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": names.state_machine_log_group, "RetentionInDays": s.options.log_retention_days},
        },
        "StateMachineRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": sub(f"ceap-{spec.name}-sfn-${{AWS::Region}}"),
                "Description": f"ceap workflow {spec.name}: the state machine",
                "AssumeRolePolicyDocument": assume("states.amazonaws.com"),
                "Policies": [policy("ceap-state-machine", statements)],
            },
        },
        "StateMachine": {
            "Type": "AWS::StepFunctions::StateMachine",
            "Properties": {
                "StateMachineName": names.state_machine,
                "StateMachineType": spec.type.upper(),
                "DefinitionString": json.dumps(definition, indent=2, sort_keys=False),
                "DefinitionSubstitutions": substitutions,
                "RoleArn": getatt("StateMachineRole", "Arn"),
                "LoggingConfiguration": {
                    "Level": "ALL",
                    "IncludeExecutionData": s.options.log_execution_data,
                    "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": getatt("StateMachineLogGroup", "Arn")}}],
                },
                "TracingConfiguration": {"Enabled": True},
            },
        },
    }


def _pipe_resources(s: _Synthesis) -> dict[str, Any]:
    """The EventBridge Pipe from the queue to the state machine, one execution per message, and its role."""
    spec = s.spec
    return {
        "PipeRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": sub(f"ceap-{spec.name}-pipe-${{AWS::Region}}"),
                "Description": f"ceap workflow {spec.name}: the queue-to-state-machine pipe",
                "AssumeRolePolicyDocument": assume("pipes.amazonaws.com"),
                "Policies": [policy("ceap-pipe", [
                    allow("ConsumeQueue", ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                          [getatt("Queue", "Arn")]),
                    allow("StartExecutions", ["states:StartSyncExecution" if s.express else "states:StartExecution"],
                          [ref("StateMachine")]),
                ])],
            },
        },
        "Pipe": {
            "Type": "AWS::Pipes::Pipe",
            "Properties": {
                "Name": s.names.pipe,
                "Description": f"ceap workflow {spec.name}: one execution per queue message",
                "RoleArn": getatt("PipeRole", "Arn"),
                "Source": getatt("Queue", "Arn"),
                "SourceParameters": {"SqsQueueParameters": {"BatchSize": 1}},
                "Target": ref("StateMachine"),
                "TargetParameters": {
                    # Pipes hands Step Functions the SQS record, whose body is a string; "<$.body>" (unquoted)
                    # makes the execution input the body's JSON object (see docs/deploy.md for the AWS doc).
                    "InputTemplate": PIPE_INPUT_TEMPLATE,
                    "StepFunctionStateMachineParameters": {
                        "InvocationType": "REQUEST_RESPONSE" if s.express else "FIRE_AND_FORGET",
                    },
                },
                "DesiredState": "RUNNING",
            },
        },
    }


def _outputs(s: _Synthesis) -> dict[str, Any]:
    return {
        "StateMachineArn": {"Description": "The workflow's state machine", "Value": ref("StateMachine")},
        "WorkflowBucket": {"Description": "Bucket of execution data (executions/...) and inputs", "Value": ref("WorkflowBucket")},
        "QueueUrl": {"Description": "Send a payload here to start an execution", "Value": ref("Queue")},
        "DLQUrl": {"Description": "Messages that failed 3 times", "Value": ref("DeadLetterQueue")},
        "CandidatesTable": {"Description": "DynamoDB table of stored candidates", "Value": ref("CandidatesTable")},
        "StateMachineLogGroup": {"Description": "Execution logs (Express executions are read from here)",
                                 "Value": s.names.state_machine_log_group},
    }


def synthesize(spec: WorkflowSpec, options: TemplateOptions | None = None) -> dict[str, Any]:
    """The CloudFormation template (a JSON-ready dict) of ``spec``: the per-resource builders' parts, merged."""
    validate_workflow_name(spec.name)
    s = _Synthesis(spec, options or TemplateOptions(), resource_names(spec))
    definition = _validated_definition(spec)
    resources: dict[str, Any] = {
        **_bucket_resources(s),
        **_queue_resources(s),
        **_table_resources(s),
        **_stage_function_resources(s),
        **_glue_resources(s),
        **_state_machine_resources(s, definition),
        **_pipe_resources(s),
    }
    for resource in resources.values():
        if resource["Type"] in _STATEFUL:
            # Said out loud: `ceap destroy` is the rollback and removes the workflow's data with it
            # (it empties the bucket first); keep data elsewhere if it must outlive the workflow.
            resource["DeletionPolicy"] = "Delete"
            resource["UpdateReplacePolicy"] = "Delete"
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"ceap workflow {spec.name} ({spec.type}): "
                       f"{' -> '.join(st.name for st in spec.stages)}. Generated by ceap synth; do not edit.",
        "Parameters": _parameters(s),
        "Resources": resources,
        "Outputs": _outputs(s),
    }


_STATEFUL = {"AWS::S3::Bucket", "AWS::SQS::Queue", "AWS::DynamoDB::Table", "AWS::Logs::LogGroup"}


def template_body(template: dict[str, Any]) -> str:
    """The template as CloudFormation receives it: stable JSON (same template, same text)."""
    return json.dumps(template, indent=1, sort_keys=True)
