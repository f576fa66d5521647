"""Carry out a :class:`~adapters.aws.plan.DeployPlan`: bucket, uploads, change set, stack events.

The artifacts bucket is created if the plan says so, each artifact is uploaded
unless its content-hash key is there, then a change set is created, shown and
executed, and the stack's events are followed until it settles. A dry run
creates the change set only to show it (and deletes it again).

Example::

    plan = await plan_deploy(aws, spec, request)
    result = await execute_deploy(aws, plan, report=print)
    result.outputs["StateMachineArn"]
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import aws_errors
from .plan import ApplyStack, DeployPlan, EnsureArtifactsBucket, UploadArtifact
from .session import AwsClients
from .stacks import DeployFailed, Report, Sleep, describe_stack, wait_for_stack, workflow_outputs

__all__ = ["DeployResult", "describe_changes", "execute_deploy", "preview_change_set"]

NO_CHANGES = "didn't contain changes"


@dataclass(frozen=True)
class DeployResult:
    stack: str
    status: str
    changed: bool
    outputs: dict[str, str]


async def _create_artifacts_bucket(s3: Any, bucket: str, region: str) -> None:
    request: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":  # us-east-1 refuses a LocationConstraint naming itself
        request["CreateBucketConfiguration"] = {"LocationConstraint": region}
    with aws_errors("S3 CreateBucket", f"s3://{bucket}"):
        await s3.create_bucket(**request)
        await s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True})
        await s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})


async def _create_change_set(cfn: Any, step: ApplyStack, sleep: Sleep, poll: float) -> dict[str, Any]:
    name = f"ceap-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}"
    with aws_errors("CloudFormation CreateChangeSet", step.stack):
        created = await cfn.create_change_set(
            StackName=step.stack,
            ChangeSetName=name,
            ChangeSetType=step.change_set_type,
            TemplateBody=step.body,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in step.parameters],
            Capabilities=["CAPABILITY_NAMED_IAM"],
            Tags=[{"Key": "ceap:workflow", "Value": step.stack.removeprefix("ceap-workflow-")}],
        )
    while True:
        with aws_errors("CloudFormation DescribeChangeSet", step.stack):
            change_set = await cfn.describe_change_set(ChangeSetName=created["Id"], StackName=step.stack)
        if change_set["Status"] in {"CREATE_COMPLETE", "FAILED"}:
            return change_set
        await sleep(poll)


def describe_changes(change_set: dict[str, Any]) -> list[str]:
    """One line per resource change: ``Add Lambda::Function ETLLambda``."""
    lines = []
    for change in change_set.get("Changes", ()):
        rc = change.get("ResourceChange", {})
        replace = " (replacement)" if rc.get("Replacement") == "True" else ""
        kind = rc.get("ResourceType", "").removeprefix("AWS::")
        lines.append(f"{rc.get('Action', '?'):<7} {kind} {rc.get('LogicalResourceId', '?')}{replace}")
    return lines


async def execute_deploy(
    aws: AwsClients, plan: DeployPlan, *, report: Report, poll_seconds: float = 5.0, timeout_seconds: float = 3600,
    sleep: Sleep = asyncio.sleep,
) -> DeployResult:
    """Carry out ``plan``; raise :class:`DeployFailed` (with the failing events) if the stack does not settle well."""
    s3 = await aws.client("s3")
    cfn = await aws.client("cloudformation")
    for step in plan.steps:
        if isinstance(step, EnsureArtifactsBucket) and not step.exists:
            report(f"creating artifacts bucket s3://{step.name}")
            await _create_artifacts_bucket(s3, step.name, step.region)
        elif isinstance(step, UploadArtifact):
            if step.present:
                report(f"{step.what}: already at s3://{step.bucket}/{step.artifact.key}")
                continue
            report(f"uploading {step.what} to s3://{step.bucket}/{step.artifact.key}")
            with aws_errors("S3 PutObject", f"s3://{step.bucket}/{step.artifact.key}"):
                await s3.put_object(Bucket=step.bucket, Key=step.artifact.key, Body=step.artifact.path.read_bytes(),
                                    ChecksumSHA256=_base64_sha256(step.artifact.sha256))
    step = plan.stack
    if step.unchanged:
        report(f"stack {step.stack}: no change")
        stack = await describe_stack(cfn, step.stack) or {}
        return DeployResult(step.stack, stack.get("StackStatus", "?"), False, await workflow_outputs(cfn, stack))
    since = datetime.now(UTC).replace(microsecond=0)
    change_set = await _create_change_set(cfn, step, sleep, poll_seconds)
    if change_set["Status"] == "FAILED":
        reason = change_set.get("StatusReason", "")
        with aws_errors("CloudFormation DeleteChangeSet", step.stack):
            await cfn.delete_change_set(ChangeSetName=change_set["ChangeSetId"], StackName=step.stack)
        if NO_CHANGES in reason:
            report(f"stack {step.stack}: no change")
            stack = await describe_stack(cfn, step.stack) or {}
            return DeployResult(step.stack, stack.get("StackStatus", "?"), False, await workflow_outputs(cfn, stack))
        raise DeployFailed(f"CloudFormation refused the change set for {step.stack}: {reason}")
    report(f"change set for {step.stack}:")
    for line in describe_changes(change_set):
        report(f"  {line}")
    with aws_errors("CloudFormation ExecuteChangeSet", step.stack):
        await cfn.execute_change_set(ChangeSetName=change_set["ChangeSetId"], StackName=step.stack)
    status, events = await wait_for_stack(cfn, step.stack, since, report, sleep, poll_seconds, timeout_seconds)
    if status not in {"CREATE_COMPLETE", "UPDATE_COMPLETE"}:
        failing = [e for e in events if e["ResourceStatus"].endswith("_FAILED")]
        raise DeployFailed(f"stack {step.stack} ended {status}", failing)
    stack = await describe_stack(cfn, step.stack) or {}
    return DeployResult(step.stack, status, True, await workflow_outputs(cfn, stack))


def _base64_sha256(hex_digest: str) -> str:
    import base64

    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


async def preview_change_set(aws: AwsClients, plan: DeployPlan, *, sleep: Sleep = asyncio.sleep,
                             poll_seconds: float = 2.0) -> list[str] | None:
    """For a dry run: the changes an update would make (the change set is deleted again); ``None`` for a new stack."""
    step = plan.stack
    if step.change_set_type == "CREATE" or step.unchanged:
        return None
    cfn = await aws.client("cloudformation")
    change_set = await _create_change_set(cfn, step, sleep, poll_seconds)
    with aws_errors("CloudFormation DeleteChangeSet", step.stack):
        await cfn.delete_change_set(ChangeSetName=change_set["ChangeSetId"], StackName=step.stack)
    if change_set["Status"] == "FAILED":
        reason = change_set.get("StatusReason", "")
        return [] if NO_CHANGES in reason else [f"(change set failed: {reason})"]
    return describe_changes(change_set)
