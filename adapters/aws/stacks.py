"""The CloudFormation stack of a workflow as the deploy and the day-to-day commands read it.

Shared by the plan (is there a stack? what does it hold?), the execution (follow the
events until it settles) and the operations (outputs of a deployed workflow).

Example::

    stack = await describe_stack(await aws.client("cloudformation"), "ceap-workflow-demo")
    outputs = await workflow_outputs(cfn, stack) if stack else {}
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from .errors import AwsError, AwsNotFound, aws_errors
from .session import AwsClients

__all__ = [
    "DeployFailed",
    "Report",
    "Sleep",
    "describe_stack",
    "existing_stack",
    "stack_outputs",
    "wait_for_stack",
    "workflow_outputs",
]

Report = Callable[[str], None]
Sleep = Callable[[float], Awaitable[Any]]
STACK_DONE = ("_COMPLETE", "_FAILED")
STACK_BUSY = "_IN_PROGRESS"


class DeployFailed(AwsError):
    """The stack did not reach a good state; ``events`` are the failing stack events (newest last)."""

    def __init__(self, message: str, events: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message, code="DeployFailed", operation="deploy")
        self.events = events or []


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


async def wait_for_stack(cfn: Any, stack: str, since: datetime, report: Report, sleep: Sleep, poll: float,
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
        if not status.endswith(STACK_BUSY) and status.endswith(STACK_DONE):
            return status, events
        if time.monotonic() - started > timeout:
            return status, events
        await sleep(poll)


async def existing_stack(aws: AwsClients, workflow: str) -> dict[str, Any]:
    """The stack of ``workflow``, or :class:`AwsNotFound` saying how to find or deploy it."""
    name = f"ceap-workflow-{workflow}"
    stack = await describe_stack(await aws.client("cloudformation"), name)
    if stack is None:
        raise AwsNotFound(
            f"no workflow {workflow!r} is deployed in {aws.region} (no stack {name}); "
            "check -n, --region and --profile, or deploy it with `ceap deploy`",
            code="StackNotFound", operation="describe",
        )
    return stack
