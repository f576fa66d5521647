"""Execution history shaped like Step Functions' GetExecutionHistory.

Events are recorded cheaply while an execution runs (an id, the previous
event's id, a timestamp, the type and a details dict holding Python values)
and rendered on demand into AWS's shape: ``{"timestamp", "type", "id",
"previousEventId", "<detailsKey>": {...}}`` where ``input``, ``output``,
``parameters`` and assigned variables are JSON text, exactly as AWS returns
them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from ceap_engine._json import compact_json

__all__ = ["Event", "ExecutionHistory", "RawJson", "details_key", "iso_timestamp"]

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


class ExecutionHistory:
    """The events of one execution, in order; ``len()`` is the count of events kept.

    Events are kept as plain rows while the execution runs (recording is on
    the path of every state) and become :class:`Event` objects when read.

    ``limit`` bounds the events of a Standard execution (25,000 on AWS): once
    ``limit - 1`` are recorded, :meth:`full` is true and only the closing
    event (:meth:`close`) still fits. ``keep`` instead bounds an Express
    execution's memory: AWS keeps no Express history, so once ``2 * keep``
    rows are held the oldest half is dropped (ids go on counting).

    >>> h = ExecutionHistory(clock=type("C", (), {"time": lambda self: 0.0})(), keep=2)
    >>> [h.add("PassStateEntered", 0) for _ in range(5)], len(h), h.dropped
    ([1, 2, 3, 4, 5], 3, 2)
    """

    __slots__ = ("_events", "_time", "dropped", "keep", "room", "rows")

    def __init__(self, clock: Any, *, limit: int | None = None, keep: int | None = None) -> None:
        self._time = clock.time  # bound once: add() runs for every event of every execution
        #: ``(id, previous_event_id, timestamp, type, details)`` per event.
        self.rows: list[tuple[int, int, float, str, dict | None]] = []
        self._events: list[Event] = []
        #: Events dropped from the front (Express executions only).
        self.dropped = 0
        self.keep = keep
        #: Rows held before :meth:`make_room` must run.
        self.room = (limit - 1) if limit is not None else (2 * keep if keep is not None else 1 << 62)

    def add(self, event_type: str, previous_event_id: int, details: dict | None = None) -> int:
        """Record an event; past a Standard limit nothing more is recorded (the last id is returned)."""
        rows = self.rows
        if len(rows) >= self.room and not self.make_room():
            return self.dropped + len(rows)
        event_id = self.dropped + len(rows) + 1
        rows.append((event_id, previous_event_id, self._time(), event_type, details))
        return event_id

    def make_room(self) -> bool:
        """Drop the oldest half of an Express history; False when a Standard history is full."""
        if self.keep is None:
            return False
        rows = self.rows
        cut = len(rows) - self.keep
        del rows[:cut]
        self.dropped += cut
        self._events = []
        return True

    def close(self, event_type: str, previous_event_id: int, details: dict | None = None) -> int:
        """Record the execution's closing event, which always fits."""
        rows = self.rows
        if len(rows) >= self.room:
            self.make_room()
        event_id = self.dropped + len(rows) + 1
        rows.append((event_id, previous_event_id, self._time(), event_type, details))
        return event_id

    @property
    def events(self) -> list[Event]:
        """The events so far, as :class:`Event` objects."""
        events, rows = self._events, self.rows
        if len(events) < len(rows):
            events.extend(Event(*row) for row in rows[len(events):])
        return events

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def types(self) -> list[str]:
        return [row[3] for row in self.rows]

    def to_aws(self, timestamp_format: str = "iso") -> list[dict[str, Any]]:
        return [e.to_aws(timestamp_format) for e in self.events]
