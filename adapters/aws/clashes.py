"""Physical names a new stack would take that something outside it already holds.

CloudFormation finds these only at ExecuteChangeSet, after minutes of creating other
resources and a rollback. The plan asks first, with one read-only call per name: a
stack of the original platform (same function, bucket, queue or table names) or the
leftovers of a stack deleted by hand show up before anything is created.

Example::

    taken = await taken_names(aws, resources_to_create(template, account, region))
    # ['Lambda function CeapWorkflow-demo-ETLLambda', 'SQS queue ceap-workflow-demo-queue']
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .errors import error_code
from .session import AwsClients

__all__ = ["NamedResource", "named_resources", "taken_names"]

_NOT_FOUND = {
    "404", "NoSuchBucket", "NotFound", "ResourceNotFoundException", "NoSuchEntity", "EntityNotFoundException",
    "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "StateMachineDoesNotExist", "NotFoundException",
}


@dataclass(frozen=True)
class NamedResource:
    """One resource of the template with the physical name it will have."""

    logical_id: str
    kind: str  # the CloudFormation type
    name: str


_NAME_PROPERTY = {
    "AWS::Lambda::Function": "FunctionName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::IAM::Role": "RoleName",
    "AWS::Glue::Job": "Name",
    "AWS::Pipes::Pipe": "Name",
    "AWS::Logs::LogGroup": "LogGroupName",
}


def _resolve(value: Any, account: str, region: str) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        return value["Fn::Sub"].replace("${AWS::AccountId}", account).replace("${AWS::Region}", region)
    return None


def named_resources(template: dict[str, Any], account: str, region: str,
                    skip: set[str] | frozenset[str] = frozenset()) -> list[NamedResource]:
    """The resources of ``template`` (except the logical ids in ``skip``) that carry a fixed physical name."""
    found = []
    for logical, resource in sorted(template.get("Resources", {}).items()):
        prop = _NAME_PROPERTY.get(resource["Type"])
        if logical in skip or prop is None:
            continue
        name = _resolve(resource.get("Properties", {}).get(prop), account, region)
        if name:
            found.append(NamedResource(logical, resource["Type"], name))
    return found


async def _exists(probe: Callable[[], Awaitable[Any]], taken_codes: frozenset[str] = frozenset()) -> bool | None:
    """True if the probe finds the resource, False if AWS says it is not there, None if it cannot tell."""
    try:
        result = await probe()
    except Exception as exc:  # noqa: BLE001 - any other answer (access denied, not emulated) is "cannot tell"
        code = error_code(exc)
        if code in taken_codes:
            return True
        return False if code in _NOT_FOUND else None
    return bool(result) if isinstance(result, bool) else True


async def _log_group_exists(logs: Any, name: str) -> bool:
    groups = (await logs.describe_log_groups(logGroupNamePrefix=name)).get("logGroups", ())
    return any(g.get("logGroupName") == name for g in groups)


async def taken_names(aws: AwsClients, resources: list[NamedResource]) -> list[str]:
    """``kind name`` of each resource whose physical name is already in use in the account and region."""
    region, account = aws.region, await aws.account()
    probes: dict[str, Callable[[Any, NamedResource], Awaitable[Any]]] = {
        "AWS::Lambda::Function": lambda c, r: c.get_function(FunctionName=r.name),
        "AWS::S3::Bucket": lambda c, r: c.head_bucket(Bucket=r.name),
        "AWS::SQS::Queue": lambda c, r: c.get_queue_url(QueueName=r.name),
        "AWS::DynamoDB::Table": lambda c, r: c.describe_table(TableName=r.name),
        "AWS::StepFunctions::StateMachine": lambda c, r: c.describe_state_machine(
            stateMachineArn=f"arn:aws:states:{region}:{account}:stateMachine:{r.name}"),
        "AWS::IAM::Role": lambda c, r: c.get_role(RoleName=r.name),
        "AWS::Glue::Job": lambda c, r: c.get_job(JobName=r.name),
        "AWS::Pipes::Pipe": lambda c, r: c.describe_pipe(Name=r.name),
        "AWS::Logs::LogGroup": lambda c, r: _log_group_exists(c, r.name),
    }
    services = {
        "AWS::Lambda::Function": "lambda", "AWS::S3::Bucket": "s3", "AWS::SQS::Queue": "sqs",
        "AWS::DynamoDB::Table": "dynamodb", "AWS::StepFunctions::StateMachine": "stepfunctions", "AWS::IAM::Role": "iam",
        "AWS::Glue::Job": "glue", "AWS::Pipes::Pipe": "pipes", "AWS::Logs::LogGroup": "logs",
    }
    taken = []
    for resource in resources:
        client = await aws.client(services[resource.kind])
        # Bucket names are global: 403 is a bucket of another account.
        codes = frozenset({"403", "AccessDenied"}) if resource.kind == "AWS::S3::Bucket" else frozenset()
        exists = await _exists(lambda: probes[resource.kind](client, resource), codes)
        if exists:
            taken.append(f"{resource.kind.removeprefix('AWS::')} {resource.name}")
    return taken
