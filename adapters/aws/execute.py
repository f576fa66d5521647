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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import aws_errors
from .plan import ApplyStack, DeployPlan, EnsureArtifactsBucket, UploadArtifact
from .session import AwsClients
from .stacks import DeployFailed, Report, Sleep, describe_stack, wait_for_stack, workflow_outputs

__all__ = ["DeployResult", "describe_changes", "execute_deploy", "preview_change_set", "resources_to_create"]

NO_CHANGES = "didn't contain changes"


@dataclass(frozen=True)
class DeployResult:
    """How a deploy ended: ``status`` is the stack's, or ``CHANGE_SET_CREATED`` (``--no-execute``) or
    ``DECLINED`` (the confirmation said no; the change set was deleted)."""

    stack: str
    status: str
    changed: bool
    outputs: dict[str, str]
    change_set: str | None = None


Confirm = Callable[[list[str]], bool]


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
    sleep: Sleep = asyncio.sleep, execute: bool = True, confirm: Confirm | None = None,
) -> DeployResult:
    """Carry out ``plan``; raise :class:`DeployFailed` (with the failing events) if the stack does not settle well.

    With ``execute=False`` the change set is created, shown and kept for review; with
    ``confirm`` it is executed only if ``confirm(changes)`` says yes (else it is deleted).
    A plan with blockers is refused before anything is created.
    """
    if plan.blockers:
        raise DeployFailed(f"the deploy of {plan.workflow} would fail, nothing was changed: " + " ".join(plan.blockers))
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
    if step.current_status == "REVIEW_IN_PROGRESS":
        # The stack has no resources, only change sets nobody executed: start again from nothing.
        report(f"removing the empty stack {step.stack} (REVIEW_IN_PROGRESS) and its unexecuted change sets")
        with aws_errors("CloudFormation DeleteStack", step.stack):
            await cfn.delete_stack(StackName=step.stack)
        await wait_for_stack(cfn, step.stack, since, lambda _: None, sleep, poll_seconds, timeout_seconds)
    change_set = await _create_change_set(cfn, step, sleep, poll_seconds)
    if change_set["Status"] == "FAILED":
        reason = change_set.get("StatusReason", "")
        with aws_errors("CloudFormation DeleteChangeSet", step.stack):
            await cfn.delete_change_set(ChangeSetName=change_set["ChangeSetId"], StackName=step.stack)
        if NO_CHANGES in reason:
            report(f"stack {step.stack}: no change")
            stack = await describe_stack(cfn, step.stack) or {}
            return DeployResult(step.stack, stack.get("StackStatus", "?"), False, await workflow_outputs(cfn, stack))
        await _drop_empty_stack(cfn, step)
        raise DeployFailed(f"CloudFormation refused the change set for {step.stack}: {reason}")
    changes = describe_changes(change_set)
    report(f"change set for {step.stack}:")
    for line in changes:
        report(f"  {line}")
    if not execute:
        report(f"kept for review, not executed: execute it with `aws cloudformation execute-change-set "
               f"--change-set-name {change_set['ChangeSetId']}`, or delete it with delete-change-set")
        return DeployResult(step.stack, "CHANGE_SET_CREATED", False, {}, change_set["ChangeSetId"])
    if confirm is not None and not confirm(changes):
        with aws_errors("CloudFormation DeleteChangeSet", step.stack):
            await cfn.delete_change_set(ChangeSetName=change_set["ChangeSetId"], StackName=step.stack)
        await _drop_empty_stack(cfn, step)
        report("not executed; the change set was deleted")
        return DeployResult(step.stack, "DECLINED", False, {}, None)
    with aws_errors("CloudFormation ExecuteChangeSet", step.stack):
        await cfn.execute_change_set(ChangeSetName=change_set["ChangeSetId"], StackName=step.stack)
    status, events = await wait_for_stack(cfn, step.stack, since, report, sleep, poll_seconds, timeout_seconds)
    if status not in {"CREATE_COMPLETE", "UPDATE_COMPLETE"}:
        failing = [e for e in events if e["ResourceStatus"].endswith("_FAILED")]
        raise DeployFailed(f"stack {step.stack} ended {status}", failing)
    stack = await describe_stack(cfn, step.stack) or {}
    return DeployResult(step.stack, status, True, await workflow_outputs(cfn, stack))


async def _drop_empty_stack(cfn: Any, step: ApplyStack) -> None:
    """A CREATE change set leaves a REVIEW_IN_PROGRESS stack with no resources; remove it when it is not used."""
    if step.change_set_type != "CREATE":
        return
    stack = await describe_stack(cfn, step.stack)
    if stack and stack["StackStatus"] == "REVIEW_IN_PROGRESS":
        with aws_errors("CloudFormation DeleteStack", step.stack):
            await cfn.delete_stack(StackName=step.stack)


def _base64_sha256(hex_digest: str) -> str:
    import base64

    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


async def preview_change_set(aws: AwsClients, plan: DeployPlan, *, sleep: Sleep = asyncio.sleep,
                             poll_seconds: float = 2.0) -> list[str] | None:
    """For a dry run: the changes an update would make (the change set is deleted again).

    ``[]`` when nothing changes; ``None`` when there is no stack to compare with (a new
    stack: a change set would itself create a REVIEW_IN_PROGRESS stack, so none is made -
    :func:`resources_to_create` lists what the deploy would create).
    """
    step = plan.stack
    if step.unchanged:
        return []
    if step.change_set_type == "CREATE":
        return None
    cfn = await aws.client("cloudformation")
    change_set = await _create_change_set(cfn, step, sleep, poll_seconds)
    with aws_errors("CloudFormation DeleteChangeSet", step.stack):
        await cfn.delete_change_set(ChangeSetName=change_set["ChangeSetId"], StackName=step.stack)
    if change_set["Status"] == "FAILED":
        reason = change_set.get("StatusReason", "")
        return [] if NO_CHANGES in reason else [f"(change set failed: {reason})"]
    return describe_changes(change_set)


def resources_to_create(plan: DeployPlan) -> list[str]:
    """For a dry run of a new stack: one line per resource of the template, as a change set would show it."""
    import json

    resources = json.loads(plan.stack.body).get("Resources", {})
    return [f"{'Add':<7} {r['Type'].removeprefix('AWS::')} {logical}" for logical, r in sorted(resources.items())]
