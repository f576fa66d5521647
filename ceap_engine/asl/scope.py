"""A frame of a running execution: the top level, a Parallel branch or a Map iteration.

The interpreter (:mod:`ceap_engine.asl.interpreter`) gives each thread of an execution one
:class:`Frame`: the scope of its variables, its context object (``$$``), its place in the
history and the size bounds of the current state's payloads. States and the data flow see
it through the :class:`ceap_engine.asl.frame.Frame` Protocol.

Example::

    frame = Frame(execution, None, execution.activity, 0)
    frame.child(activity, detached=False).lookup_variable("x")  # the parent's x
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from ceap_engine.asl.history import STRIDE, EventShape, iso_timestamp
from ceap_engine.asl.jsonpath import PathNotFound
from ceap_engine.ports import Activity, Clock

if TYPE_CHECKING:  # pragma: no cover - for the annotations only
    from ceap_engine.asl.frame import ExecutionView as Execution

__all__ = ["Frame"]

_UNDEFINED = object()


class Frame:
    """One thread of an execution: the top level, a Parallel branch or a Map iteration."""

    #: ``$$.Execution`` and ``$$.StateMachine`` are the execution's own (paths may read them directly).
    context_is_execution = True

    __slots__ = (
        "_ctx",
        "activity",
        "entered_event",
        "entered_time",
        "execution",
        "last_event",
        "map_item",
        "output_bound",
        "parent",
        "pending_assign",
        "result_size",
        "retry_count",
        "size_bound",
        "state",
        "variables",
    )

    def __init__(self, execution: Execution, parent: Frame | None, activity: Activity, last_event: int) -> None:
        self.execution = execution
        self.parent = parent
        self.activity = activity
        self.last_event = last_event
        self.variables: dict[str, Any] = {}
        self.state: Any = None
        self.entered_event = 0
        self.entered_time = 0.0
        self.retry_count = 0
        self.map_item: tuple[int, Any] | None = None
        self.pending_assign: dict[str, Any] | None = None
        self._ctx: dict[str, Any] | None = None
        # Upper bounds, in bytes, of JSON sizes (-1: unknown), so that the payload
        # limit is checked without serialising every state's output.
        self.size_bound = -1  # the current state's input
        self.output_bound = -1  # the current state's output, when the state could tell
        self.result_size = -1  # the current Task attempt's result, exactly

    # -- services ---------------------------------------------------------
    @property
    def clock(self) -> Clock:
        return self.execution.clock

    @property
    def rng(self) -> random.Random:
        return self.execution.rng

    def event(self, event_type: str, details: Any = None, shape: EventShape | None = None) -> int:
        """Record an event of this frame (it follows the frame's previous one).

        With a ``shape``, ``details`` is the one payload the shape completes into the details.
        """
        history = self.execution.history
        log = history.log
        if len(log) >= history.room and not history.make_room():
            self.execution.history_overflow()
        log += (self.last_event, history._time(), event_type, details, shape)
        self.last_event = event_id = history.dropped + len(log) // STRIDE
        return event_id

    # -- context object and variables ------------------------------------------
    def invalidate_context(self) -> None:
        self._ctx = None

    def context(self) -> dict[str, Any]:
        ctx = self._ctx
        if ctx is None:
            ex = self.execution
            state: dict[str, Any] = {"Name": self.state.name if self.state else None, "EnteredTime": iso_timestamp(self.entered_time)}
            if self.state is not None and self.state.has_retry_count:
                state["RetryCount"] = self.retry_count
            ctx = {
                "Execution": ex.context_execution,
                "StateMachine": ex.context_state_machine,
                "State": state,
            }
            if self.map_item is not None:
                ctx["Map"] = {"Item": {"Index": self.map_item[0], "Value": self.map_item[1]}}
            self._ctx = ctx
        return ctx

    def variable(self, name: str) -> Any:
        """A variable's value from this scope or an enclosing one; :class:`PathNotFound` if undefined."""
        value = self.lookup_variable(name, _UNDEFINED)
        if value is _UNDEFINED:
            raise PathNotFound(f"${name}", f"Variable '{name}' is not defined")
        return value

    def lookup_variable(self, name: str, default: Any = None) -> Any:
        """A variable's value from this scope or an enclosing one, else ``default``."""
        frame: Frame | None = self
        while frame is not None:
            variables = frame.variables
            if name in variables:
                return variables[name]
            frame = frame.parent
        return default

    def child(self, activity: Activity, *, detached: bool) -> Frame:
        """A frame for a Parallel branch or Map iteration started from this one.

        A Distributed Map's child workflows are executions of their own
        (``detached``): they cannot read the variables of the scopes around the
        Map, and their events start a history of their own.
        """
        if detached:
            return Frame(self.execution, None, activity, 0)
        return Frame(self.execution, self, activity, self.last_event)
