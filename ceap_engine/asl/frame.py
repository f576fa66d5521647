"""What the states and the data flow need of a running execution.

The state loop (:mod:`ceap_engine.asl.interpreter`) implements these
Protocols; states, data flow, Choice rules and Map I/O depend only on them,
so nothing in ``asl/`` imports the interpreter. :class:`Program` - a compiled
(sub-)machine - lives here too: the interpreter runs it, Parallel and Map hold
sub-programs, and the definition compiler builds it.

Example::

    def greet(frame: Frame) -> str:
        return f"{frame.state.name} of {frame.execution.name}"
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ceap_engine.ports import Activity, Clock, ObjectStore

__all__ = ["CompiledState", "ExecutionView", "Frame", "Program"]


class CompiledState(Protocol):
    """A state as the state loop sees it (see :mod:`ceap_engine.asl.states`)."""

    name: str
    type: str
    entered_type: str
    exited_type: str
    writes_exit_event: bool
    has_retry_count: bool
    entered_shape: Any  # EventShape of the Entered event (its payload: the input)
    exited_shape: Any  # EventShape of the Exited event (its payload: the output)
    #: True when :meth:`step` does the state's work without awaiting (the loop then calls it directly).
    sync: bool

    def step(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
        """:meth:`run` for a ``sync`` state, without a coroutine."""
        ...

    async def run(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
        """Run on ``raw`` input; return ``(output, next state name or None at the end)``."""
        ...


@dataclass
class Program:
    """A compiled (sub-)machine: the top level, a Parallel branch or a Map processor."""

    start_at: str
    states: dict[str, CompiledState]
    language: str


class ExecutionView(Protocol):
    """The execution a frame belongs to: identity, services and the history."""

    name: str
    arn: str
    state_machine_arn: str
    region: str
    account: str
    type: str
    clock: Clock
    rng: random.Random
    runners: Any  # ceap_engine.runtime.tasks.TaskRunners
    object_store: ObjectStore | None
    map_runs: Any  # ceap_engine.asl.map_run.MapRuns | None
    history: Any  # ceap_engine.asl.history.ExecutionHistory
    context_execution: dict[str, Any]
    context_state_machine: dict[str, Any]
    #: Whether limits also apply on wall time (the clock is not the real one).
    wall_limits: bool

    def mocked_response(self, state_name: str) -> Any: ...

    async def run_program(self, program: Program, value: Any, frame: Frame) -> Any: ...

    async def run_detached(self, program: Program, value: Any, frame: Frame) -> Any: ...


class Frame(Protocol):
    """One thread of an execution: the top level, a Parallel branch or a Map iteration."""

    execution: ExecutionView
    parent: Frame | None
    activity: Activity
    state: Any
    variables: dict[str, Any]
    last_event: int
    entered_event: int
    entered_time: float
    retry_count: int
    map_item: tuple[int, Any] | None
    pending_assign: dict[str, Any] | None
    size_bound: int
    output_bound: int
    result_size: int
    context_is_execution: bool

    @property
    def clock(self) -> Clock: ...

    @property
    def rng(self) -> random.Random: ...

    def event(self, event_type: str, details: Any = None, shape: Any = None) -> int:
        """Record an event of this frame (it follows the frame's previous one); with an
        :class:`~ceap_engine.asl.history.EventShape`, ``details`` is the payload it completes."""
        ...

    def context(self) -> dict[str, Any]:
        """The context object ``$$``."""
        ...

    def invalidate_context(self) -> None: ...

    def variable(self, name: str) -> Any:
        """A variable's value; raises PathNotFound when undefined."""
        ...

    def lookup_variable(self, name: str, default: Any = None) -> Any: ...

    def child(self, activity: Activity, *, detached: bool) -> Frame:
        """A frame for a Parallel branch or Map iteration started from this one."""
        ...


#: What run_children takes: (sub-program, its input, Map index or None).
Children = Sequence[tuple[Program, Any, "int | None"]]
