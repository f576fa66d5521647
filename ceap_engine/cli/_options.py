"""Option types and input readers shared by the ``ceap`` commands."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from ..errors import InputError, Problem
from ._output import read_json_file

__all__ = ["ClockKind", "OutputFormat", "read_payload"]


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


class ClockKind(str, Enum):
    virtual = "virtual"
    real = "real"


def read_payload(path: Path) -> dict[str, Any]:
    """The payload file's JSON object."""
    payload = read_json_file(path, "payload")
    if not isinstance(payload, dict):
        raise InputError([Problem("/", "the payload must be a JSON object with programId, marketplace, dateRange and source")], "payload")
    return payload
