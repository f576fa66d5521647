"""Deploy a workflow as plan, then execute (chalice style); destroy, status, send and run it.

:func:`plan_deploy` makes only read-only calls (STS, HeadBucket, HeadObject,
DescribeStacks, GetTemplate) and builds the code package locally; it returns a
:class:`DeployPlan` of frozen steps. :func:`execute_deploy` carries the plan
out: artifacts bucket, uploads (skipped when the content-hash key is there),
a change set shown before it is executed, then the stack events until the
stack settles. A dry run prints the plan and, for an existing stack, the
change set (which it then deletes).

Example::

    async with AwsClients(AwsSettings(region="eu-west-1")) as aws:
        plan = await plan_deploy(aws, workflow_spec("demo", "express"), DeployRequest(build_dir=Path("build")))
        print("\\n".join(plan.describe()))
        result = await execute_deploy(aws, plan, report=print)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ceap_engine.pipeline.spec import WorkflowSpec

from .errors import AwsError, AwsNotFound, aws_errors, error_code
from .packaging import Artifact, LambdaBuild, build_lambda_package, glue_script_artifact
from .session import AwsClients
from .stepfunctions import Execution, StepFunctionsClient
from .template import TemplateOptions, stack_name, synthesize, template_body

__all__ = [
    "ApplyStack",
    "DeployFailed",
    "DeployPlan",
    "DeployRequest",
    "DeployResult",
    "DestroyResult",
    "EnsureArtifactsBucket",
    "UploadArtifact",
    "WorkflowStatus",
    "default_artifacts_bucket",
    "describe_changes",
    "destroy_workflow",
    "execute_deploy",
    "plan_deploy",
    "preview_change_set",
    "run_workflow",
    "send_payload",
    "workflow_status",
]

Report = Callable[[str], None]
Sleep = Callable[[float], Awaitable[Any]]
NO_CHANGES = "didn't contain changes"
_STACK_DONE = ("_COMPLETE", "_FAILED")
_STACK_BUSY = "_IN_PROGRESS"


class DeployFailed(AwsError):
    """The stack did not reach a good state; ``events`` are the failing stack events (newest last)."""

    def __init__(self, message: str, events: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, code="DeployFailed", operation="deploy")
        self.events = events or []


# -- the plan ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EnsureArtifactsBucket:
    """Create the artifacts bucket (SSE, public access blocked) unless it exists."""

    name: str
    region: str
    exists: bool

    def describe(self) -> str:
        return f"artifacts bucket s3://{self.name}: " + ("exists" if self.exists else "create (SSE, public access blocked)")


@dataclass(frozen=True)
class UploadArtifact:
    """Upload one artifact under its content-hash key unless that key is already there."""

    what: str
    bucket: str
    artifact: Artifact
    present: bool

    def describe(self) -> str:
        size = f"{self.artifact.size / 1e6:.1f} MB"
        state = "already uploaded, skipped" if self.present else f"upload ({size})"
        return f"{self.what}: s3://{self.bucket}/{self.artifact.key}: {state}"


@dataclass(frozen=True)
class ApplyStack:
    """Create or update the stack through a change set (or nothing, if template and parameters are the same)."""

    stack: str
    change_set_type: str  # CREATE or UPDATE
    body: str
    parameters: tuple[tuple[str, str], ...]
    unchanged: bool

    def describe(self) -> str:
        if self.unchanged:
            return f"stack {self.stack}: no change (same template and parameters)"
        verb = "create" if self.change_set_type == "CREATE" else "update"
        return f"stack {self.stack}: {verb} through a change set ({len(self.body) / 1024:.0f} KiB template)"


Step = EnsureArtifactsBucket | UploadArtifact | ApplyStack


@dataclass(frozen=True)
class DeployPlan:
    """Everything a deploy will do, decided from read-only calls; print it, execute it."""

    workflow: str
    workflow_type: str
    account: str
    region: str
    steps: tuple[Step, ...]

    @property
    def stack(self) -> ApplyStack:
        return next(s for s in self.steps if isinstance(s, ApplyStack))

    def describe(self) -> list[str]:
        head = f"deploy workflow {self.workflow} ({self.workflow_type}) to account {self.account}, region {self.region}:"
        return [head, *(f"  {n}. {step.describe()}" for n, step in enumerate(self.steps, 1))]


@dataclass(frozen=True)
class DeployRequest:
    """The choices of one deploy besides the workflow itself."""

    build_dir: Path
    build: LambdaBuild = field(default_factory=LambdaBuild)
    options: TemplateOptions = field(default_factory=TemplateOptions)
    artifacts_bucket: str | None = None
    glue_script: Path | None = None


def default_artifacts_bucket(account: str, region: str) -> str:
    """``ceap-artifacts-{account}-{region}``, shared by every workflow of the account and region (like SAM's)."""
    return f"ceap-artifacts-{account}-{region}"


async def _bucket_exists(s3: Any, bucket: str) -> bool:
    try:
        with aws_errors("S3 HeadBucket", f"s3://{bucket}"):
            await s3.head_bucket(Bucket=bucket)
    except AwsError as exc:
        if exc.code in {"404", "NoSuchBucket", "NotFound"}:
            return False
        if exc.code in {"403", "AccessDenied"}:
            raise AwsError(
                f"the artifacts bucket {bucket} exists but belongs to another account or refuses these credentials; "
                "pass --artifacts-bucket with a bucket of yours", code=exc.code, operation="S3 HeadBucket",
            ) from exc
        raise
    return True


async def _object_exists(s3: Any, bucket: str, key: str) -> bool:
    try:
        with aws_errors("S3 HeadObject", f"s3://{bucket}/{key}"):
            await s3.head_object(Bucket=bucket, Key=key)
    except AwsError as exc:
        if exc.code in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True


async def describe_stack(cfn: Any, name: str) -> dict[str, Any] | None:
    """The stack, or ``None`` if there is none of that name."""
    try:
        with aws_errors("CloudFormation DescribeStacks", name):
            stacks = (await cfn.describe_stacks(StackName=name))["Stacks"]
    except AwsError as exc:
        if exc.code == "ValidationError" and "does not exist" in str(exc):
            return None
        raise
    return stacks[0] if stacks else None


def stack_outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", ())}


# Each output of the template is the Ref of one resource, i.e. its physical id.
_OUTPUT_RESOURCES = {
    "StateMachineArn": "StateMachine",
    "WorkflowBucket": "WorkflowBucket",
    "QueueUrl": "Queue",
    "DLQUrl": "DeadLetterQueue",
    "CandidatesTable": "CandidatesTable",
    "StateMachineLogGroup": "StateMachineLogGroup",
}


async def workflow_outputs(cfn: Any, stack: dict[str, Any]) -> dict[str, str]:
    """The stack's outputs; any that are missing are read from the resources' physical ids.

    They are the same values (every output is a ``Ref``). Missing outputs happen on
    moto, whose CloudFormation gives stacks made through change sets no Outputs.
    """
    outputs = stack_outputs(stack)
    if all(key in outputs for key in _OUTPUT_RESOURCES):
        return outputs
    with aws_errors("CloudFormation ListStackResources", stack["StackName"]):
        paginator = cfn.get_paginator("list_stack_resources")
        physical = {
            r.get("LogicalResourceId"): r.get("PhysicalResourceId")
            async for page in paginator.paginate(StackName=stack["StackName"])
            for r in page["StackResourceSummaries"]
        }
    for key, logical in _OUTPUT_RESOURCES.items():
        if key not in outputs and physical.get(logical):
            outputs[key] = physical[logical]
    return outputs


async def plan_deploy(aws: AwsClients, spec: WorkflowSpec, request: DeployRequest) -> DeployPlan:
    """Decide what a deploy of ``spec`` does, with read-only calls and a local package build."""
    account = await aws.account()
    region = aws.region
    s3 = await aws.client("s3")
    cfn = await aws.client("cloudformation")
    bucket = request.artifacts_bucket or default_artifacts_bucket(account, region)
    bucket_exists = await _bucket_exists(s3, bucket)
    steps: list[Step] = [EnsureArtifactsBucket(bucket, region, bucket_exists)]

    package = await asyncio.to_thread(build_lambda_package, request.build, request.build_dir)
    steps.append(UploadArtifact("Lambda code", bucket, package,
                                bucket_exists and await _object_exists(s3, bucket, package.key)))
    parameters = {"ArtifactsBucket": bucket, "LambdaCodeKey": package.key}
    glue_stages = [s for s in spec.stages if s.kind == "glue"]
    if glue_stages:
        script = request.glue_script or _default_glue_script(glue_stages[0].script or "")
        glue = glue_script_artifact(script)
        steps.append(UploadArtifact("Glue script", bucket, glue, bucket_exists and await _object_exists(s3, bucket, glue.key)))
        parameters["GlueScriptKey"] = glue.key

    body = template_body(synthesize(spec, request.options))
    name = stack_name(spec)
    stack = await describe_stack(cfn, name)
    if stack is None:
        steps.append(ApplyStack(name, "CREATE", body, tuple(sorted(parameters.items())), unchanged=False))
    else:
        status = stack["StackStatus"]
        if status == "ROLLBACK_COMPLETE" or status.endswith(_STACK_BUSY):
            raise DeployFailed(
                f"stack {name} is {status}: "
                + ("a failed first create must be removed first - run `ceap destroy -n " + spec.name + "`"
                   if status == "ROLLBACK_COMPLETE" else "another operation is running; wait for it to finish")
            )
        with aws_errors("CloudFormation GetTemplate", name):
            current = (await cfn.get_template(StackName=name, TemplateStage="Original"))["TemplateBody"]
        current_body = current if isinstance(current, str) else json.dumps(current)
        current_parameters = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters", ())}
        unchanged = _same_template(current_body, body) and current_parameters == parameters
        steps.append(ApplyStack(name, "UPDATE", body, tuple(sorted(parameters.items())), unchanged=unchanged))
    return DeployPlan(spec.name, spec.type, account, region, tuple(steps))


def _same_template(current: str, new: str) -> bool:
    try:
        return json.loads(current) == json.loads(new)
    except json.JSONDecodeError:
        return False


def _default_glue_script(relative: str) -> Path:
    import ceap_engine

    return Path(ceap_engine.__file__).resolve().parent.parent / relative


# -- executing it -----------------------------------------------------------------------------------


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


async def _wait_for_stack(cfn: Any, stack: str, since: datetime, report: Report, sleep: Sleep, poll: float,
                          timeout: float) -> tuple[str, list[dict[str, Any]]]:
    """Follow the stack's events until it settles; return its status and the events seen."""
    seen: set[str] = set()
    events: list[dict[str, Any]] = []
    started = time.monotonic()
    while True:
        current = await describe_stack(cfn, stack)
        with aws_errors("CloudFormation DescribeStackEvents", stack):
            page = (await cfn.describe_stack_events(StackName=stack))["StackEvents"] if current else []
        for event in reversed(page):
            stamp = event.get("Timestamp")
            if event["EventId"] in seen or (stamp is not None and stamp < since):
                continue
            seen.add(event["EventId"])
            events.append(event)
            reason = f" - {event['ResourceStatusReason']}" if event.get("ResourceStatusReason") else ""
            report(f"  {event['ResourceStatus']:<20} {event.get('ResourceType', '')} {event['LogicalResourceId']}{reason}")
        status = current["StackStatus"] if current else "DELETE_COMPLETE"
        if not status.endswith(_STACK_BUSY) and status.endswith(_STACK_DONE):
            return status, events
        if time.monotonic() - started > timeout:
            return status, events
        await sleep(poll)


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
    status, events = await _wait_for_stack(cfn, step.stack, since, report, sleep, poll_seconds, timeout_seconds)
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


# -- destroy, status, send, run ---------------------------------------------------------------------


@dataclass(frozen=True)
class DestroyResult:
    stack: str
    removed: list[str]
    dlq_messages: int | None
    emptied_objects: int


async def _existing_stack(aws: AwsClients, workflow: str) -> dict[str, Any]:
    name = f"ceap-workflow-{workflow}"
    stack = await describe_stack(await aws.client("cloudformation"), name)
    if stack is None:
        raise AwsNotFound(
            f"no workflow {workflow!r} is deployed in {aws.region} (no stack {name}); "
            "check -n, --region and --profile, or deploy it with `ceap deploy`",
            code="StackNotFound", operation="describe",
        )
    return stack


async def dlq_depth(aws: AwsClients, outputs: dict[str, str]) -> int | None:
    url = outputs.get("DLQUrl")
    if not url:
        return None
    sqs = await aws.client("sqs")
    with aws_errors("SQS GetQueueAttributes", url):
        attributes = (await sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        ))["Attributes"]
    return sum(int(attributes.get(k, 0)) for k in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"))


async def _empty_bucket(s3: Any, bucket: str) -> int:
    removed = 0
    with aws_errors("S3 emptying the workflow bucket", f"s3://{bucket}"):
        paginator = s3.get_paginator("list_object_versions")
        async for page in paginator.paginate(Bucket=bucket):
            doomed = [{"Key": v["Key"], "VersionId": v["VersionId"]}
                      for v in [*page.get("Versions", ()), *page.get("DeleteMarkers", ())]]
            for start in range(0, len(doomed), 1000):
                await s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed[start:start + 1000], "Quiet": True})
            removed += len(page.get("Versions", ()))
    return removed


async def destroy_workflow(
    aws: AwsClients, workflow: str, *, report: Report, poll_seconds: float = 5.0, timeout_seconds: float = 1800,
    sleep: Sleep = asyncio.sleep,
) -> DestroyResult:
    """Report what is left in the DLQ, empty the workflow bucket, delete the stack and say what went."""
    stack = await _existing_stack(aws, workflow)
    cfn, s3 = await aws.client("cloudformation"), await aws.client("s3")
    name, outputs = stack["StackName"], await workflow_outputs(cfn, stack)
    depth = await dlq_depth(aws, outputs)
    if depth:
        report(f"warning: {depth} message(s) are still in the dead-letter queue {outputs['DLQUrl']}; they go with it")
    with aws_errors("CloudFormation ListStackResources", name):
        paginator = cfn.get_paginator("list_stack_resources")
        resources = [r async for page in paginator.paginate(StackName=name) for r in page["StackResourceSummaries"]
                     if r.get("ResourceType")]
    emptied = 0
    bucket = outputs.get("WorkflowBucket")
    if bucket:
        emptied = await _empty_bucket(s3, bucket)
        report(f"emptied s3://{bucket} ({emptied} object(s))")
    since = datetime.now(UTC).replace(microsecond=0)
    with aws_errors("CloudFormation DeleteStack", name):
        await cfn.delete_stack(StackName=stack["StackId"])
    status, events = await _wait_for_stack(cfn, name, since, report, sleep, poll_seconds, timeout_seconds)
    if status != "DELETE_COMPLETE":
        raise DeployFailed(f"stack {name} ended {status}", [e for e in events if e["ResourceStatus"].endswith("_FAILED")])
    removed = sorted(f"{r['ResourceType']} {r.get('PhysicalResourceId') or r['LogicalResourceId']}" for r in resources)
    return DestroyResult(name, removed, depth, emptied)


@dataclass(frozen=True)
class WorkflowStatus:
    stack: str
    status: str
    workflow_type: str
    outputs: dict[str, str]
    executions: list[dict[str, Any]]
    executions_source: str


async def workflow_status(aws: AwsClients, workflow: str, *, limit: int = 10, since_hours: float = 24) -> WorkflowStatus:
    """Stack state, outputs and recent executions (Express ones from the state machine's log group)."""
    stack = await _existing_stack(aws, workflow)
    outputs = await workflow_outputs(await aws.client("cloudformation"), stack)
    machine_arn = outputs.get("StateMachineArn", "")
    executions: list[dict[str, Any]] = []
    machine_type = await _deployed_machine_type(await aws.client("cloudformation"), stack["StackName"])
    if machine_type == "EXPRESS":
        group = outputs.get("StateMachineLogGroup") or _log_group_of(stack)
        executions = await express_executions_from_logs(aws, group, limit=limit, since_hours=since_hours)
        source = f"log group {group}"
    else:
        source = "ListExecutions"
        try:
            summaries = await StepFunctionsClient(await aws.client("stepfunctions")).list_executions(
                machine_arn, max_results=limit)
        except AwsNotFound as exc:
            summaries, source = [], f"none: {exc}"
        for summary in summaries:
            executions.append({"name": summary.name, "status": summary.status, "startDate": summary.start_date,
                               "stopDate": summary.stop_date})
    return WorkflowStatus(stack["StackName"], stack["StackStatus"], machine_type.lower(), outputs, executions, source)


async def _deployed_machine_type(cfn: Any, stack: str) -> str:
    """EXPRESS or STANDARD, as the deployed template says (read-only, and needs no Step Functions call)."""
    with aws_errors("CloudFormation GetTemplate", stack):
        body = (await cfn.get_template(StackName=stack))["TemplateBody"]
    template = json.loads(body) if isinstance(body, str) else body
    return template.get("Resources", {}).get("StateMachine", {}).get("Properties", {}).get("StateMachineType", "STANDARD")


def _log_group_of(stack: dict[str, Any]) -> str:
    workflow = stack["StackName"].removeprefix("ceap-workflow-")
    return f"/aws/stepfunctions/Ceap-{workflow}-Workflow"


async def express_executions_from_logs(aws: AwsClients, group: str, *, limit: int = 10,
                                       since_hours: float = 24) -> list[dict[str, Any]]:
    """Recent Express executions, rebuilt from the ExecutionStarted/Succeeded/Failed... log events.

    AWS keeps no DescribeExecution for Express workflows: their log group is
    the record (``IncludeExecutionData`` decides whether input and output are in it).
    """
    logs = await aws.client("logs")
    start = int((time.time() - since_hours * 3600) * 1000)
    by_arn: dict[str, dict[str, Any]] = {}
    pattern = '{ $.type = "Execution*" }'
    try:
        with aws_errors("CloudWatch Logs FilterLogEvents", group):
            paginator = logs.get_paginator("filter_log_events")
            async for page in paginator.paginate(logGroupName=group, startTime=start, filterPattern=pattern):
                for event in page.get("events", ()):
                    _fold_execution_event(by_arn, event.get("message", ""))
    except AwsNotFound:
        return []
    ordered = sorted(by_arn.values(), key=lambda e: e.get("startDate") or "", reverse=True)
    return ordered[:limit]


def _fold_execution_event(by_arn: dict[str, dict[str, Any]], message: str) -> None:
    try:
        record = json.loads(message)
    except json.JSONDecodeError:
        return
    kind, arn = record.get("type", ""), record.get("execution_arn")
    if not arn or not kind.startswith("Execution"):
        return
    entry = by_arn.setdefault(arn, {"name": arn.rsplit(":", 1)[-1], "status": "RUNNING", "startDate": None, "stopDate": None})
    stamp = datetime.fromtimestamp(int(record.get("event_timestamp", 0)) / 1000, UTC)
    details = record.get("details") or {}
    if kind == "ExecutionStarted":
        entry["startDate"] = stamp
    else:
        entry["status"] = {"ExecutionSucceeded": "SUCCEEDED", "ExecutionFailed": "FAILED", "ExecutionAborted": "ABORTED",
                           "ExecutionTimedOut": "TIMED_OUT"}.get(kind, entry["status"])
        entry["stopDate"] = stamp
        if details.get("error"):
            entry["error"] = details.get("error")
            entry["cause"] = details.get("cause")


async def send_payload(aws: AwsClients, workflow: str, payload: dict[str, Any]) -> str:
    """Put ``payload`` on the workflow's queue (the Pipe starts an execution); return the message id."""
    stack = await _existing_stack(aws, workflow)
    url = (await workflow_outputs(await aws.client("cloudformation"), stack)).get("QueueUrl")
    if not url:
        raise AwsError(f"stack {stack['StackName']} has no QueueUrl output; redeploy with `ceap deploy`")
    sqs = await aws.client("sqs")
    with aws_errors("SQS SendMessage", url):
        return (await sqs.send_message(QueueUrl=url, MessageBody=json.dumps(payload)))["MessageId"]


async def state_machine_arn(aws: AwsClients, workflow: str) -> tuple[str, str]:
    """(ARN, type) of the workflow's state machine: from the stack's outputs, else by its name."""
    cfn = await aws.client("cloudformation")
    stack = await describe_stack(cfn, f"ceap-workflow-{workflow}")
    arn = (await workflow_outputs(cfn, stack)).get("StateMachineArn") if stack else None
    if not arn:
        arn = f"arn:aws:states:{aws.region}:{await aws.account()}:stateMachine:Ceap-{workflow}-Workflow"
    sfn = await aws.client("stepfunctions")
    with aws_errors("Step Functions DescribeStateMachine", arn):
        try:
            described = await sfn.describe_state_machine(stateMachineArn=arn)
        except Exception as exc:
            if error_code(exc) == "StateMachineDoesNotExist":
                raise AwsNotFound(
                    f"no state machine for workflow {workflow!r} in {aws.region}: deploy it with "
                    f"`ceap deploy --target aws -n {workflow}`", code="StateMachineDoesNotExist",
                ) from exc
            raise
    return arn, described.get("type", "STANDARD")


async def run_workflow(
    aws: AwsClients, workflow: str, payload: dict[str, Any], *, on_event: Callable[[dict[str, Any]], None] | None = None,
    name: str | None = None, poll_seconds: float = 2.0, sleep: Sleep = asyncio.sleep,
) -> Execution:
    """Start an execution: synchronously for Express, start-and-follow for Standard; return its end state."""
    arn, machine_type = await state_machine_arn(aws, workflow)
    sfn = StepFunctionsClient(await aws.client("stepfunctions"))
    if machine_type == "EXPRESS":
        return await sfn.start_sync_execution(arn, payload, name=name)
    execution_arn = await sfn.start_execution(arn, payload, name=name)
    return await sfn.wait(execution_arn, on_event=on_event, poll_seconds=poll_seconds, sleep=sleep)

