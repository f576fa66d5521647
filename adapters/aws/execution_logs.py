"""Express executions rebuilt from the state machine's CloudWatch log group.

AWS keeps no DescribeExecution for Express workflows: their log group is the
record. Each ``Execution*`` log event is folded into one entry per execution.

Example::

    recent = await express_executions_from_logs(aws, "/aws/stepfunctions/Ceap-demo-Workflow", limit=5)
    recent[0]["status"]  # 'SUCCEEDED'
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from .errors import AwsNotFound, aws_errors
from .session import AwsClients

__all__ = ["express_executions_from_logs", "fold_execution_event"]


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
                    fold_execution_event(by_arn, event.get("message", ""))
    except AwsNotFound:
        return []
    ordered = sorted(by_arn.values(), key=lambda e: e.get("startDate") or "", reverse=True)
    return ordered[:limit]


def fold_execution_event(by_arn: dict[str, dict[str, Any]], message: str) -> None:
    """Fold one log message into ``by_arn`` (execution ARN -> name, status, dates, error); others are ignored."""
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
