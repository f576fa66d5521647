"""What happened to each state of one execution, read from its history.

:func:`trace_execution` takes a history in GetExecutionHistory's shape (the
``events`` of ``ceap asl run --format json``, of ``ceap executions history``,
or of AWS itself) and returns an :class:`ExecutionTrace`: every state visit
with its task attempts and the retry waits between them, and one outcome per
state name - ``succeeded``, ``retried`` (failed, retried, then succeeded),
``caught`` (its error went to a Catch), ``failed`` (the execution ended there),
``running`` or ``not_reached``. Pure: no I/O, no clock.

Example::

    trace = trace_execution(result.history.to_aws())
    trace.outcomes["Score"], trace.status   # ('caught', 'FAILED')
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Attempt", "ExecutionTrace", "StateVisit", "event_time", "trace_execution"]

_ATTEMPT_START = ("TaskScheduled", "LambdaFunctionScheduled", "ActivityScheduled", "MapStateStarted", "ParallelStateStarted")
_ATTEMPT_OK = ("TaskSucceeded", "LambdaFunctionSucceeded", "ActivitySucceeded", "MapStateSucceeded", "ParallelStateSucceeded")
_EXECUTION_END = {"ExecutionSucceeded": "SUCCEEDED", "ExecutionFailed": "FAILED", "ExecutionTimedOut": "TIMED_OUT",
                  "ExecutionAborted": "ABORTED"}
#: Worst first: a state visited several times (a Map's iterations) shows its worst outcome.
_SEVERITY = ("failed", "caught", "running", "retried", "succeeded")


def _is_attempt_failure(event_type: str) -> bool:
    return (event_type.endswith(("Failed", "TimedOut")) and not event_type.startswith("Execution")
            and event_type not in ("MapIterationFailed", "MapRunFailed"))


def event_time(event: Mapping[str, Any], default: float = 0.0) -> float:
    """An event's timestamp as epoch seconds (AWS gives ISO 8601 text or a datetime; ``default`` if none).

    >>> event_time({"timestamp": "1970-01-01T00:01:00.000Z"})
    60.0
    """
    ts = event.get("timestamp")
    if ts is None:
        return default
    if isinstance(ts, int | float):
        return float(ts)
    if isinstance(ts, datetime):
        return ts.timestamp()
    return datetime.fromisoformat(str(ts).replace("Z", "+00:00")).timestamp()


def _details(event: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in event.items():
        if key.endswith("EventDetails") and isinstance(value, dict):
            return value
    return {}


@dataclass
class Attempt:
    """One try of a Task (or Map/Parallel) state: from scheduled to succeeded or failed."""

    number: int
    started: float
    ended: float | None = None
    status: str = "running"  # succeeded, failed or running
    error: str | None = None
    cause: str | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


@dataclass
class StateVisit:
    """One entry into a state, to its exit (or the end of the execution)."""

    name: str
    type: str
    entered: float
    entered_event: int
    exited: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    outcome: str = "running"

    @property
    def retry_waits(self) -> list[tuple[float, float]]:
        """(from, to) of each wait between a failed attempt and the next one."""
        return [(a.ended, b.started) for a, b in zip(self.attempts, self.attempts[1:], strict=False)
                if a.ended is not None]


@dataclass
class ExecutionTrace:
    """The states of one execution, in the order they were entered."""

    status: str
    started: float | None
    stopped: float | None
    visits: list[StateVisit]
    outcomes: dict[str, str]
    error: str | None = None
    cause: str | None = None
    output: Any = None
    #: (from, to) state names of every transition taken; a retried state has (name, name).
    transitions: set[tuple[str, str]] = field(default_factory=set)

    @property
    def failed_states(self) -> list[str]:
        return [name for name, outcome in self.outcomes.items() if outcome == "failed"]


def trace_execution(events: Sequence[Mapping[str, Any]]) -> ExecutionTrace:
    """The trace of a history in GetExecutionHistory's shape (oldest event first).

    >>> events = [
    ...     {"id": 1, "previousEventId": 0, "type": "ExecutionStarted", "timestamp": 0},
    ...     {"id": 2, "previousEventId": 1, "type": "PassStateEntered", "timestamp": 0, "stateEnteredEventDetails": {"name": "A"}},
    ...     {"id": 3, "previousEventId": 2, "type": "PassStateExited", "timestamp": 1, "stateExitedEventDetails": {"name": "A"}},
    ...     {"id": 4, "previousEventId": 3, "type": "ExecutionSucceeded", "timestamp": 1}]
    >>> trace_execution(events).outcomes
    {'A': 'succeeded'}
    """
    visits: list[StateVisit] = []
    owner: dict[int, StateVisit | None] = {}  # event id -> the visit it belongs to
    open_groups: list[StateVisit] = []  # Map/Parallel visits not exited yet, innermost last
    exited_by: dict[int, str] = {}  # id of a StateExited event -> the state's name
    transitions: set[tuple[str, str]] = set()
    status, started, stopped, error, cause, output = "RUNNING", None, None, None, None, None
    at = 0.0
    for index, event in enumerate(events):
        kind = str(event.get("type", ""))
        at = event_time(event, at)
        details = _details(event)
        # Recorded histories may mask ids; a synthetic one keeps the event apart from the rest.
        event_id = event.get("id") if isinstance(event.get("id"), int) else -(index + 1)
        previous_id = event.get("previousEventId") if isinstance(event.get("previousEventId"), int) else None
        if previous_id in owner:
            previous = owner[previous_id]
        else:  # a history without previous ids (some recorded ones): the state entered last
            previous = next((v for v in reversed(visits) if v.exited is None), None)
        if kind == "ExecutionStarted":
            started = at
            owner[event_id] = None
            continue
        if kind in _EXECUTION_END:
            status, stopped = _EXECUTION_END[kind], at
            error, cause = details.get("error"), details.get("cause")
            if kind == "ExecutionSucceeded":
                output = _json(details.get("output"))
            continue
        if kind.endswith("StateEntered"):
            visit = StateVisit(str(details.get("name")), kind[: -len("StateEntered")], at, event_id)
            if previous_id in exited_by:
                transitions.add((exited_by[previous_id], visit.name))
            elif previous is not None and previous.type in ("Map", "Parallel"):
                transitions.add((previous.name, visit.name))  # into a branch or an item
            visits.append(visit)
            owner[event_id] = visit
            if visit.type in ("Map", "Parallel"):
                open_groups.append(visit)
            continue
        if kind.endswith("StateExited"):
            name = details.get("name")
            visit = previous if previous is not None and previous.name == name else _last_open(visits, name)
            if visit is not None:
                visit.exited = at
                if visit in open_groups:
                    open_groups.remove(visit)
            owner[event_id] = None
            exited_by[event_id] = str(name)
            continue
        if kind.startswith(("Map", "Parallel")) and open_groups:
            visit = next((v for v in reversed(open_groups) if kind.startswith(v.type)), previous)
        else:
            visit = previous
        owner[event_id] = visit
        if visit is None:
            continue
        if kind in _ATTEMPT_START:
            visit.attempts.append(Attempt(len(visit.attempts) + 1, at))
        elif kind in _ATTEMPT_OK and visit.attempts:
            visit.attempts[-1].ended, visit.attempts[-1].status = at, "succeeded"
        elif _is_attempt_failure(kind):
            if not visit.attempts or visit.attempts[-1].status != "running":
                visit.attempts.append(Attempt(len(visit.attempts) + 1, at))  # failed before it started
            last = visit.attempts[-1]
            last.ended, last.status = at, "failed"
            last.error, last.cause = details.get("error"), details.get("cause")
    finished = status != "RUNNING"
    outcomes: dict[str, str] = {}
    for visit in visits:
        if len(visit.attempts) > 1:
            transitions.add((visit.name, visit.name))
        visit.outcome = _outcome(visit, finished)
        known = outcomes.get(visit.name)
        if known is None or _SEVERITY.index(visit.outcome) < _SEVERITY.index(known):
            outcomes[visit.name] = visit.outcome
    return ExecutionTrace(status, started, stopped, visits, outcomes, error, cause, output, transitions)


def _last_open(visits: list[StateVisit], name: Any) -> StateVisit | None:
    for visit in reversed(visits):
        if visit.name == name and visit.exited is None:
            return visit
    return None


def _outcome(visit: StateVisit, finished: bool) -> str:
    failures = [a for a in visit.attempts if a.status == "failed"]
    if visit.exited is None:
        if visit.type == "Fail" or finished:
            return "failed"
        return "running"
    if visit.attempts and visit.attempts[-1].status == "failed":
        return "caught"
    return "retried" if failures else "succeeded"


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text
