"""Limits on a definition as a whole: its size (AWS's quota) and its nesting depth (ours).

Example::

    assert definition_limits({"StartAt": "A", "States": {}}) == []
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import Problem

__all__ = ["MAX_DEFINITION_BYTES", "MAX_DEFINITION_DEPTH", "definition_limits", "too_deep"]


#: AWS refuses a definition over 1 MiB (the state machine definition quota).
MAX_DEFINITION_BYTES = 1_048_576
#: How deeply a definition's JSON may nest (ours: validation and compilation
#: recurse per level; 256 levels hold some 60 nested Parallel or Map states).
MAX_DEFINITION_DEPTH = 256


def too_deep() -> Problem:
    """The problem of a definition nested deeper than MAX_DEFINITION_DEPTH."""
    return Problem(
        "/", f"The definition nests deeper than {MAX_DEFINITION_DEPTH} levels of JSON (objects and arrays); "
        "flatten nested Parallel/Map states or Choice rules", "DEFINITION_TOO_DEEP",
    )


def definition_limits(definition: Any, size: int = -1) -> list[Problem]:
    """The size and depth limits of a definition (``size``: bytes of its text, -1 to measure it).

    >>> [p.code for p in definition_limits({"States": [[[]]]})]
    []
    """
    # Iterative, so that a hostile depth cannot exhaust the Python stack here.
    stack = [(definition, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEFINITION_DEPTH:
            return [too_deep()]
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, (dict, list)))
    if size < 0:
        try:
            size = len(json.dumps(definition, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        except (TypeError, ValueError):
            return []  # not JSON data: the checker says what is wrong
    if size > MAX_DEFINITION_BYTES:
        return [Problem(
            "/", f"The definition is {size} bytes; Step Functions accepts at most {MAX_DEFINITION_BYTES} bytes "
            "(move large static data to S3 or the execution input)", "DEFINITION_TOO_LARGE",
        )]
    return []
