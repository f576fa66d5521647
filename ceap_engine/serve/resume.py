"""Where a journaled Standard execution goes on after a restart: a pure plan from its history.

The plan is a definition derived from the original one that starts at the top-level state
that was in flight (its ``StateEntered`` is the last top-level event), with that state's
recorded input and the top-level variables assigned so far:

- the in-flight state runs again from its entry: **at least once** (a Task that had
  started runs again; stages are idempotent);
- a Wait in flight waits only for what is left of it (``Seconds``/``SecondsPath``/
  ``TimestampPath`` become the original deadline); a JSONata ``Seconds`` expression
  waits again in full;
- the machine's ``TimeoutSeconds`` counts from the original start;
- variables come back through a first Pass state whose ``Assign`` restores them.

The new run's first events (``ExecutionStarted``, the restoring Pass, the re-entered state)
are folded into the journal's own (see :meth:`ResumePlan.renumber`), so the history stays
one continuous list: ids go on from the last journaled one.

Example::

    plan = plan_resume(definition, journal.events(arn), now=time.time())
    if plan is not None:
        engine.start(load_definition(plan.definition), plan.input, name=name, ...)
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ceap_engine.asl.choice import parse_timestamp
from ceap_engine.asl.jsonpath import compile_path

__all__ = ["RESTORE_STATE", "ResumePlan", "plan_resume"]

RESTORE_STATE = "ceap:resume-variables"
_TERMINAL = {"ExecutionSucceeded", "ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"}
_NESTING = ("Parallel", "Map")


@dataclass(frozen=True)
class ResumePlan:
    """A derived definition and input that continue an execution from its journal."""

    definition: dict[str, Any]
    input: Any
    state: str
    #: Events of the new run that stand for journaled ones (ExecutionStarted, restore Pass, re-entry).
    folded: int
    #: The journaled StateEntered of the in-flight state, and the last journaled id.
    entered_id: int
    last_id: int

    def renumber(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The new run's ``event`` as it continues the journal; ``None`` for a folded one."""
        if event["id"] <= self.folded:
            return None
        out = dict(event)
        out["id"] = self._map(event["id"])
        out["previousEventId"] = self._map(event["previousEventId"]) if event["previousEventId"] else 0
        return out

    def _map(self, new_id: int) -> int:
        return self.entered_id if new_id <= self.folded else self.last_id + new_id - self.folded


def plan_resume(definition: dict[str, Any], events: list[dict[str, Any]], *, now: float,
                wait_scale: float = 1.0) -> ResumePlan | None:
    """The plan to finish the execution whose journaled ``events`` these are; ``None`` if it ended."""
    if not events or events[-1]["type"] in _TERMINAL:
        return None
    top = definition["States"]
    variables: dict[str, Any] = {}
    entered: dict[str, Any] | None = None
    depth = 0
    for event in events:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            if depth == 0:
                entered = event
            if kind[: -len("StateEntered")] in _NESTING:
                depth += 1
        elif depth and kind.startswith(_NESTING) and kind.endswith(("StateExited", "StateFailed", "StateAborted")):
            depth -= 1
            if depth == 0 and kind.endswith("StateExited"):
                _assign(variables, event)
        elif depth == 0 and kind.endswith("StateExited"):
            _assign(variables, event)
    if entered is None:
        raise ValueError("the journal holds no state entry to resume from")
    name = entered["stateEnteredEventDetails"]["name"]
    if name not in top:
        raise ValueError(f"the journaled state {name!r} is not a top-level state of the definition")
    value = json.loads(entered["stateEnteredEventDetails"].get("input") or "null")
    derived = copy.deepcopy(definition)
    state = derived["States"][name]
    language = state.get("QueryLanguage", derived.get("QueryLanguage", "JSONPath"))
    if state.get("Type") == "Wait":
        _resume_wait(state, value, entered["timestamp"], now, wait_scale)
    started = events[0]["timestamp"]
    if isinstance(derived.get("TimeoutSeconds"), int):
        derived["TimeoutSeconds"] = max(1, math.ceil(derived["TimeoutSeconds"] - (now - started) / wait_scale))
    folded = 2
    if variables:
        derived["States"] = {RESTORE_STATE: _restore_state(variables, name, language), **derived["States"]}
        derived["StartAt"] = RESTORE_STATE
        value = {"v": variables, "i": value}
        folded = 4
    else:
        derived["StartAt"] = name
    return ResumePlan(derived, value, name, folded, entered["id"], events[-1]["id"])


def _assign(variables: dict[str, Any], exited: dict[str, Any]) -> None:
    assigned = (exited.get("stateExitedEventDetails") or {}).get("assignedVariables") or {}
    for var, text in assigned.items():
        variables[var] = json.loads(text)


def _restore_state(variables: dict[str, Any], next_state: str, language: str) -> dict[str, Any]:
    if language == "JSONata":
        return {"Type": "Pass", "Assign": {k: f"{{% $states.input.v.{k} %}}" for k in variables},
                "Output": "{% $states.input.i %}", "Next": next_state}
    return {"Type": "Pass", "Assign": {f"{k}.$": f"$.v.{k}" for k in variables}, "OutputPath": "$.i",
            "Next": next_state}


def _resume_wait(state: dict[str, Any], value: Any, entered_at: float, now: float, scale: float) -> None:
    """Turn the Wait into its original deadline (what is left of it), when that can be known here."""
    deadline: float | None = None
    try:
        effective = compile_path(state["InputPath"]).get(value) if isinstance(state.get("InputPath"), str) else value
        if isinstance(state.get("Seconds"), (int, float)) and not isinstance(state.get("Seconds"), bool):
            deadline = entered_at + state["Seconds"] * scale
        elif isinstance(state.get("SecondsPath"), str):
            deadline = entered_at + float(compile_path(state["SecondsPath"]).get(effective)) * scale
        elif isinstance(state.get("TimestampPath"), str):
            parsed = parse_timestamp(compile_path(state["TimestampPath"]).get(effective))
            deadline = parsed.timestamp() if parsed is not None else None
    except Exception:  # noqa: BLE001 - anything not computable here waits again, as documented
        deadline = None
    if deadline is None:
        return
    for key in ("Seconds", "SecondsPath", "TimestampPath"):
        state.pop(key, None)
    if scale == 1.0:
        state["Timestamp"] = datetime.fromtimestamp(deadline, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    else:  # a scaled clock scales the wait again: give it the unscaled remainder
        state["Seconds"] = max(0, math.ceil((deadline - now) / scale))
