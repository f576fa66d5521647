"""Step Functions: start, describe, follow, list and stop executions of a deployed workflow.

A thin layer over the aiobotocore client whose answers are small frozen
dataclasses, with botocore errors mapped at the boundary. Express workflows
have no DescribeExecution or history: they run through
:meth:`StepFunctionsClient.start_sync_execution`, whose answer is final.

Example::

    sfn = StepFunctionsClient(await aws.client("stepfunctions"))
    arn = await sfn.start_execution(machine_arn, {"programId": "p-1", ...})
    final = await sfn.wait(arn, on_event=print)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import aws_errors

__all__ = ["TERMINAL_STATUSES", "Execution", "ExecutionSummary", "StepFunctionsClient"]

TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


def _parse(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@dataclass(frozen=True)
class Execution:
    """One execution as DescribeExecution or StartSyncExecution report it; input and output parsed."""

    arn: str
    name: str
    status: str
    start_date: datetime | None = None
    stop_date: datetime | None = None
    input: Any = None
    output: Any = None
    error: str | None = None
    cause: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_response(cls, response: dict[str, Any]) -> Execution:
        arn = response["executionArn"]
        return cls(
            arn=arn,
            name=response.get("name") or arn.rsplit(":", 1)[-1],
            status=response["status"],
            start_date=response.get("startDate"),
            stop_date=response.get("stopDate"),
            input=_parse(response.get("input")),
            output=_parse(response.get("output")),
            error=response.get("error"),
            cause=response.get("cause"),
        )


@dataclass(frozen=True)
class ExecutionSummary:
    """One line of ListExecutions."""

    arn: str
    name: str
    status: str
    start_date: datetime | None
    stop_date: datetime | None


class StepFunctionsClient:
    """The Step Functions calls ceap makes, over an aiobotocore ``stepfunctions`` client."""

    def __init__(self, client: Any) -> None:
        self.client = client

    async def start_execution(self, state_machine_arn: str, payload: Any, *, name: str | None = None) -> str:
        """StartExecution (Standard); returns the execution ARN."""
        request: dict[str, Any] = {"stateMachineArn": state_machine_arn, "input": json.dumps(payload)}
        if name:
            request["name"] = name
        with aws_errors("Step Functions StartExecution", state_machine_arn):
            return (await self.client.start_execution(**request))["executionArn"]

    async def start_sync_execution(self, state_machine_arn: str, payload: Any, *, name: str | None = None) -> Execution:
        """StartSyncExecution (Express): runs the whole execution and returns its final state."""
        request: dict[str, Any] = {"stateMachineArn": state_machine_arn, "input": json.dumps(payload)}
        if name:
            request["name"] = name
        with aws_errors("Step Functions StartSyncExecution", state_machine_arn):
            return Execution.from_response(await self.client.start_sync_execution(**request))

    async def describe_execution(self, execution_arn: str) -> Execution:
        with aws_errors("Step Functions DescribeExecution", execution_arn):
            return Execution.from_response(await self.client.describe_execution(executionArn=execution_arn))

    async def get_execution_history(self, execution_arn: str) -> list[dict[str, Any]]:
        """Every history event, oldest first (all pages)."""
        events: list[dict[str, Any]] = []
        with aws_errors("Step Functions GetExecutionHistory", execution_arn):
            paginator = self.client.get_paginator("get_execution_history")
            async for page in paginator.paginate(executionArn=execution_arn, reverseOrder=False):
                events.extend(page.get("events", ()))
        return events

    async def list_executions(
        self, state_machine_arn: str, *, status: str | None = None, max_results: int = 10
    ) -> list[ExecutionSummary]:
        """The most recent executions (Standard workflows only: AWS does not list Express ones)."""
        request: dict[str, Any] = {"stateMachineArn": state_machine_arn, "maxResults": max_results}
        if status:
            request["statusFilter"] = status
        with aws_errors("Step Functions ListExecutions", state_machine_arn):
            response = await self.client.list_executions(**request)
        return [
            # Some backends leave out the name (it is the ARN's last part).
            ExecutionSummary(e["executionArn"], e.get("name") or e["executionArn"].rsplit(":", 1)[-1],
                             e.get("status", "?"), e.get("startDate"), e.get("stopDate"))
            for e in response.get("executions", ())
        ]

    async def stop_execution(self, execution_arn: str, *, error: str | None = None, cause: str | None = None) -> None:
        request: dict[str, Any] = {"executionArn": execution_arn}
        if error:
            request["error"] = error
        if cause:
            request["cause"] = cause
        with aws_errors("Step Functions StopExecution", execution_arn):
            await self.client.stop_execution(**request)

    async def wait(
        self,
        execution_arn: str,
        *,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        poll_seconds: float = 2.0,
        timeout_seconds: float | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> Execution:
        """Poll until the execution ends, passing each new history event to ``on_event``; return the end state."""
        seen = 0
        waited = 0.0
        while True:
            execution = await self.describe_execution(execution_arn)
            if on_event is not None:
                events = await self.get_execution_history(execution_arn)
                for event in events[seen:]:
                    on_event(event)
                seen = max(seen, len(events))
            if execution.finished:
                return execution
            if timeout_seconds is not None and waited >= timeout_seconds:
                return execution
            await sleep(poll_seconds)
            waited += poll_seconds
