"""Day-to-day operations on a deployed workflow: destroy, status, send, run.

Example::

    async with AwsClients(AwsSettings(region="eu-west-1")) as aws:
        state = await workflow_status(aws, "demo")
        execution = await run_workflow(aws, "demo", {"programId": "retail", ...})
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import AwsError, AwsNotFound, aws_errors, error_code
from .execution_logs import express_executions_from_logs
from .session import AwsClients
from .stacks import DeployFailed, Report, Sleep, describe_stack, existing_stack, wait_for_stack, workflow_outputs
from .stepfunctions import Execution, StepFunctionsClient

EXPRESS_CALL_SECONDS = 330  # Express's 300 s limit and a margin for the answer

__all__ = [
    "DestroyResult",
    "WorkflowStatus",
    "destroy_workflow",
    "dlq_depth",
    "run_workflow",
    "send_payload",
    "state_machine_arn",
    "workflow_status",
]


@dataclass(frozen=True)
class DestroyResult:
    stack: str
    removed: list[str]
    dlq_messages: int | None
    emptied_objects: int


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
    stack = await existing_stack(aws, workflow)
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
    status, events = await wait_for_stack(cfn, name, since, report, sleep, poll_seconds, timeout_seconds)
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
    stack = await existing_stack(aws, workflow)
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


async def send_payload(aws: AwsClients, workflow: str, payload: dict[str, Any]) -> str:
    """Put ``payload`` on the workflow's queue (the Pipe starts an execution); return the message id."""
    stack = await existing_stack(aws, workflow)
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
            if error_code(exc) != "StateMachineDoesNotExist":
                raise
            if stack is not None:
                # The stack says the machine is there; this endpoint's Step Functions does not know it.
                raise AwsNotFound(
                    f"the stack {stack['StackName']} ({stack['StackStatus']}) has the state machine {arn}, but this "
                    f"endpoint's Step Functions API does not know it. moto's CloudFormation keeps the state machines "
                    f"it creates apart from its Step Functions API (a known moto limit): run the workflow on AWS "
                    f"or MiniStack; on AWS, check --region and that the stack was not changed by hand",
                    code="StateMachineDoesNotExist",
                ) from exc
            raise AwsNotFound(
                f"no state machine for workflow {workflow!r} in {aws.region}: deploy it with "
                f"`ceap deploy --target aws -n {workflow}`", code="StateMachineDoesNotExist",
            ) from exc
    return arn, described.get("type", "STANDARD")


async def run_workflow(
    aws: AwsClients, workflow: str, payload: dict[str, Any], *, on_event: Callable[[dict[str, Any]], None] | None = None,
    name: str | None = None, poll_seconds: float = 2.0, sleep: Sleep = asyncio.sleep,
    timeout_seconds: float | None = None,
) -> Execution:
    """Start an execution: synchronously for Express, start-and-follow for Standard; return its end state.

    A Standard execution still running after ``timeout_seconds`` is returned as it is (RUNNING).
    """
    arn, machine_type = await state_machine_arn(aws, workflow)
    if machine_type == "EXPRESS":
        # Express runs up to 5 minutes inside this one call; never repeated (a retry is a second run).
        sync = StepFunctionsClient(await aws.client("stepfunctions", read_timeout=EXPRESS_CALL_SECONDS, max_attempts=1))
        return await sync.start_sync_execution(arn, payload, name=name)
    sfn = StepFunctionsClient(await aws.client("stepfunctions"))
    execution_arn = await sfn.start_execution(arn, payload, name=name)
    return await sfn.wait(execution_arn, on_event=on_event, poll_seconds=poll_seconds, sleep=sleep,
                          timeout_seconds=timeout_seconds)
