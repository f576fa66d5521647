"""Option types and input readers shared by the ``ceap`` commands."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from ..errors import InputError, Problem
from ._output import read_json_file

__all__ = ["ClockKind", "OutputFormat", "conflicting_options", "read_payload"]


class OutputFormat(str, Enum):
    text = "text"
    json = "json"


class ClockKind(str, Enum):
    virtual = "virtual"
    real = "real"


_SHAPE = "a JSON object with programId, marketplace, dateRange{start,end} and source"


def read_payload(path: Path, what: str = "payload", shape: str = _SHAPE) -> dict[str, Any]:
    """The JSON object in ``path``; anything else is an :class:`InputError` naming the file."""
    payload = read_json_file(path, what)
    if not isinstance(payload, dict):
        raise InputError([Problem("/", f"{path}: the {what} must be {shape}, not a JSON {_json_type(payload)}",
                                  f"INVALID_{what.upper()}")], what)
    return payload


def _json_type(value: Any) -> str:
    return {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")


def conflicting_options(given: Mapping[str, bool], options: Sequence[str], why: str) -> list[Problem]:
    """A ``CONFLICTING_OPTIONS`` problem for each of ``options`` the user gave: options of the other target are
    refused, not ignored. ``why`` follows the option's name in the message.

    >>> [p.path for p in conflicting_options({"--store": True, "--seed": False}, ("--store", "--seed"), "is local")]
    ['/store']
    """
    return [Problem(f"/{option.lstrip('-')}", f"{option} {why}", "CONFLICTING_OPTIONS")
            for option in options if given.get(option)]
