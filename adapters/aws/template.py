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


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def _arn(service: str, resource: str, *, region: bool = True, account: bool = True) -> dict[str, str]:
    return _sub(
        f"arn:${{AWS::Partition}}:{service}:{'${AWS::Region}' if region else ''}:"
        f"{'${AWS::AccountId}' if account else ''}:{resource}"
    )


def _getatt(resource: str, attribute: str) -> dict[str, list[str]]:
    return {"Fn::GetAtt": [resource, attribute]}


def _ref(name: str) -> dict[str, str]:
    return {"Ref": name}


def _assume(service: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def _policy(name: str, statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"PolicyName": name, "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}}


def _allow(sid: str, actions: list[str], resources: list[Any], **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources, **extra}


# --- the statements AWS accepts only on "Resource": "*" ----------------------------------------
# X-Ray: PutTraceSegments, PutTelemetryRecords and the sampling reads have no resource-level
# permissions at all (the X-Ray service authorization reference lists no resource types for them),
# so tracing from Lambda or Step Functions needs "*".
XRAY_WILDCARD = _allow(
    "XRayTracingHasNoResourceLevelPermissions",
    ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"],
    ["*"],
)
# Step Functions logging to CloudWatch Logs goes through "vended log delivery": these actions
# manage deliveries and the log group resource policy, and AWS documents that they must be granted
# on "*" (they act on delivery objects that have no ARN before they exist).
LOG_DELIVERY_WILDCARD = _allow(
    "StepFunctionsLogDeliveryRequiresWildcard",
    [
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    ],
    ["*"],
)


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


def synthesize(spec: WorkflowSpec, options: TemplateOptions | None = None) -> dict[str, Any]:
    """The CloudFormation template (a JSON-ready dict) of ``spec``."""
    options = options or TemplateOptions()
    validate_workflow_name(spec.name)
    names = resource_names(spec)
    definition = _validated_definition(spec)
    lambda_stages = [s for s in spec.stages if s.kind == "lambda"]
    glue_stages = [s for s in spec.stages if s.kind == "glue"]
    bucket_arn = _getatt("WorkflowBucket", "Arn")
    bucket_objects = _sub("${WorkflowBucket.Arn}/*")
    executions_objects = _sub("${WorkflowBucket.Arn}/executions/*")

    parameters: dict[str, Any] = {
        "ArtifactsBucket": {"Type": "String", "Description": "Bucket holding the Lambda code package and the Glue script"},
        "LambdaCodeKey": {"Type": "String", "Description": "Key of the Lambda code package (named by its SHA-256)"},
    }
    if glue_stages:
        parameters["GlueScriptKey"] = {"Type": "String", "Description": "Key of the Glue job's script"}

    resources: dict[str, Any] = {}
    resources["WorkflowBucket"] = {
        "Type": "AWS::S3::Bucket",
        "Properties": {
            "BucketName": _sub(f"{names.bucket_prefix}-${{AWS::AccountId}}"),
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LifecycleConfiguration": {"Rules": [
                {"Id": "ExpireExecutionData", "Status": "Enabled", "Prefix": "executions/", "ExpirationInDays": 7}]},
        },
    }
    resources["WorkflowBucketPolicy"] = {
        "Type": "AWS::S3::BucketPolicy",
        "Properties": {
            "Bucket": _ref("WorkflowBucket"),
            "PolicyDocument": {"Version": "2012-10-17", "Statement": [{
                "Sid": "DenyRequestsWithoutTLS", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                "Resource": [bucket_arn, bucket_objects],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }]},
        },
    }
    resources["DeadLetterQueue"] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {"QueueName": names.dlq, "MessageRetentionPeriod": 14 * 24 * 3600, "SqsManagedSseEnabled": True},
    }
    resources["Queue"] = {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            "QueueName": names.queue,
            "VisibilityTimeout": 600,
            "MessageRetentionPeriod": 4 * 24 * 3600,
            "SqsManagedSseEnabled": True,
            "RedrivePolicy": {"deadLetterTargetArn": _getatt("DeadLetterQueue", "Arn"), "maxReceiveCount": 3},
        },
    }
    resources["CandidatesTable"] = {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "TableName": names.table,
            **candidate_table_schema(),
            "SSESpecification": {"SSEEnabled": True},
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
        },
    }
    table_arns = [_getatt("CandidatesTable", "Arn"), _sub("${CandidatesTable.Arn}/index/*")]

    # -- the stage functions ---------------------------------------------------------------------
    resources["StageRole"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": _sub(f"ceap-{spec.name}-stages-${{AWS::Region}}"),
            "Description": f"ceap workflow {spec.name}: the stage Lambdas",
            "AssumeRolePolicyDocument": _assume("lambda.amazonaws.com"),
            "Policies": [_policy("ceap-stages", [
                # Reads: the previous stage's output and the source files (kept in this bucket, under inputs/).
                _allow("ReadWorkflowObjects", ["s3:GetObject"], [bucket_objects]),
                # ListBucket makes S3 answer 404 (not 403) for an absent key, so a missing output reads as missing.
                _allow("ListWorkflowBucket", ["s3:ListBucket"], [bucket_arn]),
                _allow("WriteStageOutputs", ["s3:PutObject"], [executions_objects]),
                _allow("UseCandidateTable",
                       ["dynamodb:BatchWriteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"],
                       table_arns),
                _allow("WriteOwnLogs", ["logs:CreateLogStream", "logs:PutLogEvents"],
                       [_getatt(logical_id(s, "LogGroup"), "Arn") for s in lambda_stages]),
                XRAY_WILDCARD,
            ])],
        },
    }
    for stage in lambda_stages:
        function_name = lambda_function_name(spec, stage)
        resources[logical_id(stage, "LogGroup")] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": f"/aws/lambda/{function_name}", "RetentionInDays": options.log_retention_days},
        }
        variables = {"CEAP_STAGE_FUNCTION": stage.function, "CEAP_CANDIDATE_TABLE": _ref("CandidatesTable")}
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
                "Code": {"S3Bucket": _ref("ArtifactsBucket"), "S3Key": _ref("LambdaCodeKey")},
                "MemorySize": stage.memory_mb,
                "Timeout": stage.timeout_seconds,
                "Role": _getatt("StageRole", "Arn"),
                "Environment": {"Variables": variables},
                "TracingConfig": {"Mode": "Active"},
            },
        }

    # -- the Glue job (Standard workflows) -----------------------------------------------------------
    if glue_stages:
        resources["GlueJobRole"] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": _sub(f"ceap-{spec.name}-glue-${{AWS::Region}}"),
                "Description": f"ceap workflow {spec.name}: the HeavyETL Glue job",
                "AssumeRolePolicyDocument": _assume("glue.amazonaws.com"),
                "Policies": [_policy("ceap-glue", [
                    _allow("ReadJobScript", ["s3:GetObject"], [_sub("arn:${AWS::Partition}:s3:::${ArtifactsBucket}/ceap/glue/*")]),
                    _allow("ReadWorkflowObjects", ["s3:GetObject"], [bucket_objects]),
                    _allow("ListWorkflowBucket", ["s3:ListBucket"], [bucket_arn]),
                    _allow("WriteStageOutput", ["s3:PutObject"], [executions_objects]),
                    # Glue writes driver and executor logs to its fixed /aws-glue/ log groups.
                    _allow("WriteGlueLogs", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                           [_arn("logs", "log-group:/aws-glue/*")]),
                ])],
            },
        }
        for stage in glue_stages:
            resources[logical_id(stage, "Job")] = {
                "Type": "AWS::Glue::Job",
                "Properties": {
                    "Name": glue_job_name(spec, stage),
                    "Description": f"ceap workflow {spec.name}: stage {stage.name} ({stage.script})",
                    "Role": _getatt("GlueJobRole", "Arn"),
                    "Command": {"Name": "glueetl", "PythonVersion": "3",
                                "ScriptLocation": _sub("s3://${ArtifactsBucket}/${GlueScriptKey}")},
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

    # -- the state machine -----------------------------------------------------------------------
    resources["StateMachineLogGroup"] = {
        "Type": "AWS::Logs::LogGroup",
        "Properties": {"LogGroupName": names.state_machine_log_group, "RetentionInDays": options.log_retention_days},
    }
    machine_statements = [
        _allow("InvokeStageFunctions", ["lambda:InvokeFunction"],
               [r for s in lambda_stages for r in (_getatt(logical_id(s, "Lambda"), "Arn"),
                                                     _sub(f"${{{logical_id(s, 'Lambda')}.Arn}}:*"))]),
        # RecordFailure writes executions/{id}/failure.json with aws-sdk:s3:putObject.
        _allow("RecordFailures", ["s3:PutObject"], [executions_objects]),
        LOG_DELIVERY_WILDCARD,
        XRAY_WILDCARD,
    ]
    if glue_stages:
        machine_statements.insert(1, _allow(
            "RunGlueJobs", ["glue:StartJobRun", "glue:GetJobRun", "glue:GetJobRuns", "glue:BatchStopJobRun"],
            [_arn("glue", f"job/{glue_job_name(spec, s)}") for s in glue_stages],
        ))
    resources["StateMachineRole"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": _sub(f"ceap-{spec.name}-sfn-${{AWS::Region}}"),
            "Description": f"ceap workflow {spec.name}: the state machine",
            "AssumeRolePolicyDocument": _assume("states.amazonaws.com"),
            "Policies": [_policy("ceap-state-machine", machine_statements)],
        },
    }
    substitutions: dict[str, Any] = {BUCKET_PLACEHOLDER: _ref("WorkflowBucket")}
    for stage in spec.stages:
        substitutions[function_placeholder(stage)] = (
            _ref(logical_id(stage, "Job")) if stage.kind == "glue" else _getatt(logical_id(stage, "Lambda"), "Arn")
        )
    resources["StateMachine"] = {
        "Type": "AWS::StepFunctions::StateMachine",
        "Properties": {
            "StateMachineName": names.state_machine,
            "StateMachineType": spec.type.upper(),
            "DefinitionString": json.dumps(definition, indent=2, sort_keys=False),
            "DefinitionSubstitutions": substitutions,
            "RoleArn": _getatt("StateMachineRole", "Arn"),
            "LoggingConfiguration": {
                "Level": "ALL",
                "IncludeExecutionData": options.log_execution_data,
                "Destinations": [{"CloudWatchLogsLogGroup": {"LogGroupArn": _getatt("StateMachineLogGroup", "Arn")}}],
            },
            "TracingConfiguration": {"Enabled": True},
        },
    }

    # -- the queue -> state machine pipe ------------------------------------------------------------
    express = spec.type == "express"
    resources["PipeRole"] = {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": _sub(f"ceap-{spec.name}-pipe-${{AWS::Region}}"),
            "Description": f"ceap workflow {spec.name}: the queue-to-state-machine pipe",
            "AssumeRolePolicyDocument": _assume("pipes.amazonaws.com"),
            "Policies": [_policy("ceap-pipe", [
                _allow("ConsumeQueue", ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                       [_getatt("Queue", "Arn")]),
                _allow("StartExecutions", ["states:StartSyncExecution" if express else "states:StartExecution"],
                       [_ref("StateMachine")]),
            ])],
        },
    }
    resources["Pipe"] = {
        "Type": "AWS::Pipes::Pipe",
        "Properties": {
            "Name": names.pipe,
            "Description": f"ceap workflow {spec.name}: one execution per queue message",
            "RoleArn": _getatt("PipeRole", "Arn"),
            "Source": _getatt("Queue", "Arn"),
            "SourceParameters": {"SqsQueueParameters": {"BatchSize": 1}},
            "Target": _ref("StateMachine"),
            "TargetParameters": {
                # Pipes hands Step Functions the SQS record, whose body is a string; "<$.body>" (unquoted)
                # makes the execution input the body's JSON object (see docs/deploy.md for the AWS doc).
                "InputTemplate": PIPE_INPUT_TEMPLATE,
                "StepFunctionStateMachineParameters": {
                    "InvocationType": "REQUEST_RESPONSE" if express else "FIRE_AND_FORGET",
                },
            },
            "DesiredState": "RUNNING",
        },
    }

    outputs = {
        "StateMachineArn": {"Description": "The workflow's state machine", "Value": _ref("StateMachine")},
        "WorkflowBucket": {"Description": "Bucket of execution data (executions/...) and inputs", "Value": _ref("WorkflowBucket")},
        "QueueUrl": {"Description": "Send a payload here to start an execution", "Value": _ref("Queue")},
        "DLQUrl": {"Description": "Messages that failed 3 times", "Value": _ref("DeadLetterQueue")},
        "CandidatesTable": {"Description": "DynamoDB table of stored candidates", "Value": _ref("CandidatesTable")},
        "StateMachineLogGroup": {"Description": "Execution logs (Express executions are read from here)",
                                 "Value": names.state_machine_log_group},
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
                       f"{' -> '.join(s.name for s in spec.stages)}. Generated by ceap synth; do not edit.",
        "Parameters": parameters,
        "Resources": resources,
        "Outputs": outputs,
    }


_STATEFUL = {"AWS::S3::Bucket", "AWS::SQS::Queue", "AWS::DynamoDB::Table", "AWS::Logs::LogGroup"}


def template_body(template: dict[str, Any]) -> str:
    """The template as CloudFormation receives it: stable JSON (same template, same text)."""
    return json.dumps(template, indent=1, sort_keys=True)
