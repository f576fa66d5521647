"""What every replay of recorded AWS answers shares: the start instant, and value matching with masks.

The recordings mask what differs on every run (ARNs, request ids, timestamps) with tokens such
as ``<uuid:1>`` or the masked field's name; :func:`values_match` treats those as wildcards.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["REPLAY_START", "MASK_TOKEN", "maybe_json", "short", "text_match", "values_match"]


#: Start of the virtual clock for replays (any fixed instant keeps runs repeatable).
REPLAY_START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


_WHOLE_VALUE_MASKS = {
    "snf_role_arn", "date", "timestamp", "datetime", "start-time", "entered-time", "RandomNumberGenerated",
    "X-Amzn-Trace-Id", "map_run_arn", "start-date", "x-amzn-RequestId", "RequestId", "Date",
    "executionSucceededEventDetails.output",
}


MASK_TOKEN = re.compile(r"<[^<>]{1,80}>")


#: A value a test masked with the name of the field it replaced (``stateExitedEventDetails.output``).
_FIELD_MASK = re.compile(r"[a-z][A-Za-z]+EventDetails\.[a-z][A-Za-z]*")


def _mask_regex(expected: str) -> re.Pattern[str] | None:
    if not MASK_TOKEN.search(expected):
        return None
    parts = MASK_TOKEN.split(expected)
    return re.compile(".*?".join(re.escape(p) for p in parts) + r"\Z", re.DOTALL)


def values_match(expected: Any, actual: Any) -> bool:
    """JSON equality where mask tokens in ``expected`` are wildcards."""
    if isinstance(expected, str):
        if expected in _WHOLE_VALUE_MASKS or _FIELD_MASK.fullmatch(expected):
            return True
        if isinstance(actual, str):
            if expected == actual:
                return True
            rx = _mask_regex(expected)
            return rx is not None and rx.match(actual) is not None
        if MASK_TOKEN.fullmatch(expected):
            return True
        # A recorded JSON text may have been parsed on one side only.
        return False
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual if isinstance(expected, bool) and isinstance(actual, bool) else False
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return expected == actual
    if isinstance(expected, dict):
        return isinstance(actual, dict) and expected.keys() == actual.keys() and all(
            values_match(v, actual[k]) for k, v in expected.items()
        )
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(
            values_match(e, a) for e, a in zip(expected, actual, strict=True)
        )
    return expected == actual


def maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (json.JSONDecodeError, ValueError):
            return value
    return value


def text_match(expected: Any, actual: Any) -> bool:
    """Compare a recorded field that may be JSON text on either side."""
    if values_match(expected, actual):
        return True
    return values_match(maybe_json(expected), maybe_json(actual))


def short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."
