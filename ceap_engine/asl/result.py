"""How an execution ended (:class:`ExecutionResult`) and what names Step Functions accepts for one.

Example::

    validate_execution_name("order-7")
    result.status, result.to_json()["events"]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ceap_engine.asl.history import ExecutionHistory, iso_timestamp
from ceap_engine.errors import InputError, Problem

__all__ = ["ExecutionResult", "validate_execution_name"]

_NAME_FORBIDDEN = re.compile(r'[\s<>{}\[\]?*"#%\\^|~`$&,;:/\x00-\x1f\x7f-\x9f]')


def validate_execution_name(name: str) -> str:
    """Return ``name`` if Step Functions would accept it as an execution name.

    1-80 characters; no whitespace, none of ``< > { } [ ] ? * " # % \\ ^ | ~ ` $ & , ; : /``,
    no control characters.
    """
    if not isinstance(name, str) or not 1 <= len(name) <= 80:
        raise InputError([Problem("/name", "An execution name must be 1-80 characters long")], "execution name")
    bad = _NAME_FORBIDDEN.search(name)
    if bad:
        raise InputError(
            [Problem("/name", f"The execution name {name!r} contains {bad.group()!r}: use letters, digits, '-', '_', '.' or '@'")],
            "execution name",
        )
    return name


@dataclass
class ExecutionResult:
    """How an execution ended: AWS's DescribeExecution fields plus the history."""

    execution_arn: str
    name: str
    state_machine_arn: str
    status: str
    start_time: float
    stop_time: float | None
    input: Any
    output: Any = None
    error: str | None = None
    cause: str | None = None
    history: ExecutionHistory | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"

    def to_json(self, include_events: bool = True) -> dict[str, Any]:
        """The ``ceap asl run --format json`` document (every key always present)."""
        return {
            "schemaVersion": 1,
            "executionArn": self.execution_arn,
            "name": self.name,
            "stateMachineArn": self.state_machine_arn,
            "status": self.status,
            "startDate": iso_timestamp(self.start_time),
            "stopDate": iso_timestamp(self.stop_time) if self.stop_time is not None else None,
            "input": self.input,
            "output": self.output if self.status == "SUCCEEDED" else None,
            "error": self.error,
            "cause": self.cause,
            "events": self.history.to_aws() if (include_events and self.history is not None) else [],
        }
