"""Each stage's counts, as a CEAP execution reports them, and the chain from lines read to actions.

The one place that reads stage counts for a picture of a run: the final
output's ``$.stages`` summary of a CEAP workflow (``{stage: {outputKey,
counts}}``), or - for an execution that failed before its summary - the last
state output that carried ``$.stages``. When the stage output format changes
(manifests with counts), this function is the one to change.

Example::

    counts = stage_counts(trace_execution(events).output, events)
    chain = count_chain(counts)   # [("lines read", 1079), ("records", 1068), ...]
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["count_chain", "stage_counts"]


def stage_counts(output: Any, events: Sequence[Mapping[str, Any]] = ()) -> dict[str, dict[str, Any]]:
    """``{stage: counts}`` from an execution's output, else from the last state output holding ``stages``.

    >>> stage_counts({"stages": {"ETL": {"outputKey": "k", "counts": {"processedCount": 3}}}})
    {'ETL': {'processedCount': 3}}
    """
    stages = output.get("stages") if isinstance(output, Mapping) else None
    if not isinstance(stages, Mapping):
        stages = {}
        for event in events:
            if not str(event.get("type", "")).endswith("StateExited"):
                continue
            text = (event.get("stateExitedEventDetails") or {}).get("output")
            try:
                document = json.loads(text) if isinstance(text, str) else None
            except ValueError:
                continue
            if isinstance(document, Mapping) and isinstance(document.get("stages"), Mapping):
                stages = document["stages"]
    out: dict[str, dict[str, Any]] = {}
    for name, info in stages.items():
        if isinstance(info, Mapping):
            counts = info.get("counts")
            out[str(name)] = dict(counts) if isinstance(counts, Mapping) else {}
    return out


#: (stage, count key, what it counts), in pipeline order.
_CHAIN = (
    ("ETL", "processedCount", "lines read"),
    ("ETL", "transformedCount", "records"),
    ("Filter", "inputCount", "into Filter"),
    ("Filter", "passedCount", "passed the filters"),
    ("Score", "scoredCount", "scored"),
    ("Store", "storedCount", "stored"),
    ("Reactive", "actionCount", "actions"),
)
#: Where records leave the chain between two steps (stage, key, why).
_LEAVES = {
    "records": ("ETL", "errorCount", "malformed"),
    "passed the filters": ("Filter", "rejectedCount", "rejected"),
    "stored": ("Store", "failedCount", "write failures"),
}


def count_chain(counts: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The reconciliation chain: each step's count and what left the chain before it.

    >>> count_chain({"ETL": {"processedCount": 5, "transformedCount": 4, "errorCount": 1}})[1]
    {'step': 'records', 'stage': 'ETL', 'count': 4, 'left': 1, 'why': 'malformed', 'unexplained': 0}
    """
    chain: list[dict[str, Any]] = []
    previous: int | None = None
    for stage, key, step in _CHAIN:
        value = (counts.get(stage) or {}).get(key)
        if not isinstance(value, int):
            continue
        left, why = 0, ""
        if step in _LEAVES:
            leave_stage, leave_key, why = _LEAVES[step]
            left = (counts.get(leave_stage) or {}).get(leave_key) or 0
        # Actions are per candidate and channel, not a subset of records: no balance to check.
        unexplained = 0 if previous is None or step == "actions" else previous - left - value
        chain.append({"step": step, "stage": stage, "count": value, "left": left, "why": why,
                      "unexplained": unexplained})
        previous = value
    return chain
