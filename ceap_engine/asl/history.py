"""Execution history shaped like Step Functions' GetExecutionHistory.

Events are recorded cheaply while an execution runs (the previous event's
id, a timestamp, the type and the details holding Python values - often one
payload and a shared :class:`EventShape` that completes it) and rendered on
demand into AWS's shape: ``{"timestamp", "type", "id", "previousEventId",
"<detailsKey>": {...}}`` where ``input``, ``output``, ``parameters`` and
assigned variables are JSON text, exactly as AWS returns them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from ceap_engine._json import compact_json

__all__ = ["Event", "EventShape", "ExecutionHistory", "RawJson", "STRIDE", "details_key", "iso_timestamp"]

#: Step Functions' payload limit for state input/output and task results (256 KiB).
PAYLOAD_LIMIT_BYTES = 262_144


class RawJson:
    """JSON text kept as the caller wrote it (an execution's input)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _json_text(value: Any) -> str:
    if isinstance(value, RawJson):
        return value.text
    return compact_json(value)


_JSON_FIELDS = ("input", "output", "parameters")
_TRUNCATION = {"input": "inputDetails", "output": "outputDetails"}

_details_keys: dict[str, str] = {}


def details_key(event_type: str) -> str:
    """The details field AWS uses for an event type.

    >>> details_key("TaskStateEntered"), details_key("MapIterationStarted")
    ('stateEnteredEventDetails', 'mapIterationStartedEventDetails')
    """
    key = _details_keys.get(event_type)
    if key is None:
        if event_type.endswith("StateEntered"):
            key = "stateEnteredEventDetails"
        elif event_type.endswith("StateExited"):
            key = "stateExitedEventDetails"
        else:
            key = event_type[0].lower() + event_type[1:] + "EventDetails"
        _details_keys[event_type] = key
    return key


_last_iso: tuple[float | None, str] = (None, "")


def iso_timestamp(epoch_seconds: float) -> str:
    """ISO 8601 with milliseconds and a Z, as Step Functions prints times.

    >>> iso_timestamp(0)
    '1970-01-01T00:00:00.000Z'
    """
    # Every state's context object carries its EnteredTime; under a virtual
    # clock many states share one instant, so remember the last one formatted.
    global _last_iso
    last = _last_iso
    if last[0] == epoch_seconds:
        return last[1]
    # isoformat truncates to milliseconds as AWS does, at half the cost of strftime.
    text = datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="milliseconds")[:23] + "Z"
    _last_iso = (epoch_seconds, text)
    return text


class EventShape:
    """How an event's details are built from one payload value, when they are read.

    Most events carry one JSON value (a state's input or output, a task's
    parameters or result) beside fields that are the same for every event of a
    state; recording the value and a shared shape instead of a details dict
    keeps the state loop's allocations (and the garbage collector's work) down.

    >>> EventShape("input", after={"name": "P"}).details({"a": 1})
    {'input': {'a': 1}, 'name': 'P'}
    """

    __slots__ = ("_after", "_before", "key")

    def __init__(self, key: str, *, before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> None:
        self.key = key
        self._before = tuple((before or {}).items())
        self._after = tuple((after or {}).items())

    def details(self, payload: Any) -> dict[str, Any]:
        out = dict(self._before)
        out[self.key] = payload
        out.update(self._after)
        return out


class Event:
    __slots__ = ("details", "id", "previous_event_id", "timestamp", "type")

    def __init__(self, id: int, previous_event_id: int, timestamp: float, type: str, details: dict | None) -> None:
        self.id = id
        self.previous_event_id = previous_event_id
        self.timestamp = timestamp
        self.type = type
        self.details = details

    def to_aws(self, timestamp_format: str = "iso") -> dict[str, Any]:
        """This event as GetExecutionHistory returns it (timestamps ISO 8601 or epoch seconds)."""
        out: dict[str, Any] = {
            "timestamp": iso_timestamp(self.timestamp) if timestamp_format == "iso" else self.timestamp,
            "type": self.type,
            "id": self.id,
            "previousEventId": self.previous_event_id,
        }
        if self.details is not None:
            rendered: dict[str, Any] = {}
            for k, v in self.details.items():
                if k in _JSON_FIELDS:
                    rendered[k] = _json_text(v)
                    trunc = _TRUNCATION.get(k)
                    if trunc:
                        rendered[trunc] = {"truncated": False}
                elif k == "assignedVariables":
                    rendered[k] = {name: _json_text(val) for name, val in v.items()}
                    rendered["assignedVariablesDetails"] = {"truncated": False}
                else:
                    rendered[k] = v
            out[details_key(self.type)] = rendered
        return out

    def __repr__(self) -> str:
        return f"Event({self.id}, prev={self.previous_event_id}, {self.type})"


#: Slots per event in :attr:`ExecutionHistory.log`: previous id, timestamp, type, details or payload, shape.
STRIDE = 5


class ExecutionHistory:
    """The events of one execution, in order; ``len()`` is the count of events kept.

    Events are kept in one flat list while the execution runs (recording is on
    the path of every state; no object per event) and become :class:`Event`
    objects when read. An event's id is its position: ``dropped + index + 1``.

    ``limit`` bounds the events of a Standard execution (25,000 on AWS): once
    ``limit - 1`` are recorded, only the closing event (:meth:`close`) still
    fits. ``keep`` instead bounds an Express
    execution's memory: AWS keeps no Express history, so once ``2 * keep``
    events are held the oldest half is dropped (ids go on counting).

    >>> h = ExecutionHistory(clock=type("C", (), {"time": lambda self: 0.0})(), keep=2)
    >>> [h.add("PassStateEntered", 0) for _ in range(5)], len(h), h.dropped
    ([1, 2, 3, 4, 5], 3, 2)
    """

    __slots__ = ("_events", "_time", "dropped", "keep", "log", "room")

    def __init__(self, clock: Any, *, limit: int | None = None, keep: int | None = None) -> None:
        self._time = clock.time  # bound once: add() runs for every event of every execution
        #: ``previous_event_id, timestamp, type, details, shape`` per event, flat (:data:`STRIDE`
        #: slots each); with a :class:`EventShape`, ``details`` is the payload the shape completes.
        self.log: list[Any] = []
        self._events: list[Event] = []
        #: Events dropped from the front (Express executions only).
        self.dropped = 0
        self.keep = keep
        #: Slots of :attr:`log` filled before :meth:`make_room` must run.
        events = (limit - 1) if limit is not None else (2 * keep if keep is not None else 1 << 58)
        self.room = STRIDE * events

    def add(self, event_type: str, previous_event_id: int, details: Any = None, shape: EventShape | None = None) -> int:
        """Record an event; past a Standard limit nothing more is recorded (the last id is returned)."""
        log = self.log
        if len(log) >= self.room and not self.make_room():
            return self.dropped + len(log) // STRIDE
        log += (previous_event_id, self._time(), event_type, details, shape)
        return self.dropped + len(log) // STRIDE

    def make_room(self) -> bool:
        """Drop the oldest half of an Express history; False when a Standard history is full."""
        if self.keep is None:
            return False
        log = self.log
        cut = len(log) // STRIDE - self.keep
        del log[:cut * STRIDE]
        self.dropped += cut
        self._events = []
        return True

    def close(self, event_type: str, previous_event_id: int, details: Any = None, shape: EventShape | None = None) -> int:
        """Record the execution's closing event, which always fits."""
        log = self.log
        if len(log) >= self.room:
            self.make_room()
        log += (previous_event_id, self._time(), event_type, details, shape)
        return self.dropped + len(log) // STRIDE

    @property
    def events(self) -> list[Event]:
        """The events so far, as :class:`Event` objects."""
        events, log = self._events, self.log
        have, total = len(events), len(log) // STRIDE
        if have < total:
            first_id = self.dropped + 1
            for i in range(have, total):
                previous, timestamp, kind, details, shape = log[i * STRIDE:(i + 1) * STRIDE]
                if shape is not None:
                    details = shape.details(details)
                events.append(Event(first_id + i, previous, timestamp, kind, details))
        return events

    def __len__(self) -> int:
        return len(self.log) // STRIDE

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def types(self) -> list[str]:
        return self.log[2::STRIDE]

    def to_aws(self, timestamp_format: str = "iso") -> list[dict[str, Any]]:
        return [e.to_aws(timestamp_format) for e in self.events]
