"""The CloudFormation template of a workflow (``ceap synth``): the same ASL and stage code on AWS.

One stack per workflow name (``ceap-workflow-{name}``), so several workflows
live side by side in one account. What it holds:

* the workflow bucket ``ceap-workflow-{name}-{account}-{region}`` (a long name is
  shortened with a hash so the bucket name stays within S3's 63 characters; SSE,
  public access blocked, TLS only, ``executions/`` deleted after 7 days);
* the queue ``ceap-workflow-{name}-queue`` (SSE) with the dead-letter queue
  ``ceap-workflow-{name}-dlq``, named by :mod:`ceap_engine.pipeline.names` and set as the
  spec's ``queue`` says (defaults: 600 s visibility, the DLQ after 3 receives, kept 14 days) -
  the settings the local queue has;
* an EventBridge Pipe from the queue to the state machine with the constants the local
  Pipe uses (:mod:`ceap_engine.queueing.pipe`: batch size ``PIPE_BATCH_SIZE``,
  REQUEST_RESPONSE for Express, FIRE_AND_FORGET for Standard, and the
  ``PIPE_INPUT_TEMPLATE`` that makes the execution input the message body's JSON object);
* one Lambda per stage ``CeapWorkflow-{name}-{Stage}Lambda`` (the shared code
  package, ``adapters.aws.handler.handler``, runtime python3.12 by default), each
  with its log group and its own role: it reads the previous stage's
  ``executions/*/{prev}/`` (ETL: ``inputs/``) and writes its own ``executions/*/{stage}/``;
  only Store and Reactive may use the candidates table;
* the state machine ``Ceap-{name}-Workflow`` whose definition is the builder's
  ASL (ARNs and names through DefinitionSubstitutions), logging level ALL to
  ``/aws/stepfunctions/Ceap-{name}-Workflow``, X-Ray tracing on;
* for Standard workflows the Glue job ``ceap-workflow-{name}-heavy-etl``;
* the DynamoDB candidates table; least-privilege IAM roles;
* CloudWatch alarms (DLQ depth, failed and timed-out executions, each function's
  errors and throttles) and, with ``alarm_email``, an SNS topic mailing them.

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
from ceap_engine.pipeline.names import (
    dlq_name,
    glue_job_name,
    kebab,
    lambda_function_name,
    queue_name,
    state_machine_name,
    workflow_bucket_name,
    workflow_bucket_prefix,
)
from ceap_engine.pipeline.spec import WORKFLOW_NAME, StageSpec, WorkflowSpec
from ceap_engine.ports import QueueSettings
from ceap_engine.queueing.pipe import PIPE_BATCH_SIZE, PIPE_INPUT_TEMPLATE, invocation_type

from .alarms import alarm_resources, validate_alarm_email
from .cfn import allow, arn, assume, getatt, logical_id, policy, ref, sub
from .iam import (
    BUCKET_ARN,
    CANDIDATE_STAGES,
    has_distributed_map,
    machine_role_statements,
    stage_role_statements,
    with_stage_sids,
)
from .schema import candidate_table_schema

__all__ = [
    "HANDLER",
    "TEMPLATE_BODY_LIMIT",
    "deploy_body",
    "TemplateOptions",
    "logical_id",
    "resource_names",
    "stack_name",
    "synthesize",
    "has_distributed_map",
    "machine_role_statements",
    "stage_role_statements",
    "template_body",
    "validate_workflow_name",
    "workflow_bucket_name",
    "workflow_spec",
]

HANDLER = "adapters.aws.handler.handler"
DEFAULT_RUNTIME = "python3.12"
RUNTIMES = ("python3.12", "python3.13", "python3.11")
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
    return WorkflowSpec(name=name, type=base.type, bucket=None, stages=base.stages, queue=base.queue)


def stack_name(spec: WorkflowSpec) -> str:
    """``ceap-workflow-{name}``."""
    return f"ceap-workflow-{spec.name}"


@dataclass(frozen=True)
class ResourceNames:
    """The physical names the template gives (the bucket also gets the account id and region on AWS)."""

    bucket_prefix: str
    queue: str
    dlq: str
    table: str
    pipe: str
    state_machine: str
    state_machine_log_group: str

    def bucket(self, account: str, region: str) -> str:
        return f"{self.bucket_prefix}-{account}-{region}"


def resource_names(spec: WorkflowSpec) -> ResourceNames:
    name = spec.name
    return ResourceNames(
        bucket_prefix=workflow_bucket_prefix(spec),
        queue=queue_name(spec),
        dlq=dlq_name(spec),
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
    runtime: str = DEFAULT_RUNTIME
    alarm_email: str | None = None

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise InputError([Problem("/runtime", f"Lambda runtime {self.runtime!r} must be one of {', '.join(RUNTIMES)}")],
                             "argument")
        if self.alarm_email is not None:
            validate_alarm_email(self.alarm_email)


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


_BUCKET_OBJECTS = sub("${WorkflowBucket.Arn}/*")  # only the TLS-only bucket policy names every object


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
                "BucketName": sub(f"{s.names.bucket_prefix}-${{AWS::AccountId}}-${{AWS::Region}}"),
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
                    "Resource": [BUCKET_ARN, _BUCKET_OBJECTS],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }]},
            },
        },
    }


def _queue_properties(name: str, settings: QueueSettings) -> dict[str, Any]:
    """An ``AWS::SQS::Queue``'s properties from the queue settings the local queue has too (every one, explicitly)."""
    properties: dict[str, Any] = {
        "QueueName": name,
        "VisibilityTimeout": settings.visibility_timeout,
        "MessageRetentionPeriod": settings.retention_seconds,
        "DelaySeconds": settings.delay_seconds,
        "ReceiveMessageWaitTimeSeconds": settings.receive_wait_seconds,
        "MaximumMessageSize": settings.maximum_message_size,
        "SqsManagedSseEnabled": True,
    }
    if settings.redrive is not None:
        properties["RedrivePolicy"] = {"deadLetterTargetArn": getatt("DeadLetterQueue", "Arn"),
                                       "maxReceiveCount": settings.redrive.max_receive_count}
    return properties


def _queue_resources(s: _Synthesis) -> dict[str, Any]:
    """The input queue and its dead-letter queue, as the spec's ``queue`` sets them (the local queues' settings)."""
    queue = s.spec.queue
    return {
        "DeadLetterQueue": {"Type": "AWS::SQS::Queue", "Properties": _queue_properties(s.names.dlq, queue.dlq_settings())},
        "Queue": {"Type": "AWS::SQS::Queue", "Properties": _queue_properties(s.names.queue, queue.settings(s.names.dlq))},
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
    """Per Lambda stage: its role (scoped to what it reads and writes), its log group and its function."""
    spec, options = s.spec, s.options
    resources: dict[str, Any] = {}
    for stage in s.lambda_stages:
        function_name = lambda_function_name(spec, stage)
        resources[logical_id(stage, "Role")] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": sub(f"ceap-{spec.name}-{kebab(stage.name)}-${{AWS::Region}}"),
                "Description": f"ceap workflow {spec.name}: stage {stage.name}",
                "AssumeRolePolicyDocument": assume("lambda.amazonaws.com"),
                "Policies": [policy(f"ceap-stage-{kebab(stage.name)}", stage_role_statements(spec, stage))],
            },
        }
        resources[logical_id(stage, "LogGroup")] = {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"LogGroupName": f"/aws/lambda/{function_name}", "RetentionInDays": options.log_retention_days},
        }
        variables: dict[str, Any] = {"CEAP_STAGE_FUNCTION": stage.function}
        if stage.name in CANDIDATE_STAGES:
            variables["CEAP_CANDIDATE_TABLE"] = ref("CandidatesTable")
        if stage.config:
            variables["CEAP_STAGE_CONFIG"] = json.dumps(stage.config, sort_keys=True, separators=(",", ":"))
        resources[logical_id(stage, "Lambda")] = {
            "Type": "AWS::Lambda::Function",
            # The log group first: else Lambda would create it on the first invocation, without retention.
            "DependsOn": [logical_id(stage, "LogGroup")],
            "Properties": {
                "FunctionName": function_name,
                "Description": f"ceap workflow {spec.name}: stage {stage.name} ({stage.function})",
                "Runtime": options.runtime,
                "Architectures": [options.arch],
                "Handler": HANDLER,
                "Code": {"S3Bucket": ref("ArtifactsBucket"), "S3Key": ref("LambdaCodeKey")},
                "MemorySize": stage.memory_mb,
                "Timeout": stage.timeout_seconds,
                "Role": getatt(logical_id(stage, "Role"), "Arn"),
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
                    *(st for stage in s.glue_stages for st in with_stage_sids(stage_role_statements(spec, stage), stage)),
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
    statements = machine_role_statements(spec, definition)
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
                # Compact: the state machine console formats it anyway, and the batch workflow's fan-out Maps
                # (ETL's two, one per later stage) would take an indented template over the inline limit.
                "DefinitionString": json.dumps(definition, separators=(",", ":")),
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
                "SourceParameters": {"SqsQueueParameters": {"BatchSize": PIPE_BATCH_SIZE}},
                "Target": ref("StateMachine"),
                "TargetParameters": {
                    # Pipes hands Step Functions the SQS record, whose body is a string; "<$.body>" (unquoted)
                    # makes the execution input the body's JSON object (see docs/deploy.md for the AWS doc).
                    "InputTemplate": PIPE_INPUT_TEMPLATE,
                    "StepFunctionStateMachineParameters": {
                        "InvocationType": invocation_type(spec.type),
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
        "DLQUrl": {"Description": f"Messages received {s.spec.queue.max_receive_count} times without success",
                   "Value": ref("DeadLetterQueue")},
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
        **alarm_resources(spec, dlq_name=s.names.dlq, alarm_email=s.options.alarm_email),
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


#: CloudFormation's limit on a TemplateBody passed inline (a larger one must come from S3).
TEMPLATE_BODY_LIMIT = 51_200


def template_body(template: dict[str, Any]) -> str:
    """The template as ``ceap synth`` prints it: stable, indented JSON (same template, same text)."""
    return json.dumps(template, indent=1, sort_keys=True)


def deploy_body(template: dict[str, Any]) -> str:
    """The template as the deploy sends it: stable, compact JSON, within :data:`TEMPLATE_BODY_LIMIT` bytes.

    The Map states of the fan-out make the definitions long; indentation alone would take
    the batch workflow's template over CloudFormation's inline limit.
    """
    body = json.dumps(template, separators=(",", ":"), sort_keys=True)
    size = len(body.encode("utf-8"))
    if size > TEMPLATE_BODY_LIMIT:
        raise ValueError(
            f"the stack template is {size:,} bytes, over CloudFormation's {TEMPLATE_BODY_LIMIT:,}-byte TemplateBody "
            "limit: fewer stages or shorter stage configs make it smaller"
        )
    return body
