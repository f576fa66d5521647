"""The ASL interpreter: executions and the state loop (their frames: :mod:`ceap_engine.asl.scope`).

One asyncio task per execution; a Parallel branch or a Map iteration is a child
task with a frame of its own. Nothing here sleeps except through the
execution's :class:`~ceap_engine.ports.Clock`, so under a
:class:`~ceap_engine.runtime.clock.VirtualClock` retries, waits and timeouts cost no
wall time.

Example::

    engine = Engine(clock=VirtualClock())
    result = await engine.execute(load_definition(definition), {"orderId": 7})
    result.status, result.output, result.history.types()
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from ceap_engine.asl.definition import StateMachine
from ceap_engine.asl.flow import ABSENT
from ceap_engine.asl.frame import Program
from ceap_engine.asl.history import STRIDE, EventShape, ExecutionHistory, RawJson, iso_timestamp
from ceap_engine.asl.scope import Frame
from ceap_engine.asl.map_run import MapRuns
from ceap_engine.asl.payload import PAYLOAD_LIMIT_BYTES, RuntimeFailure, data_limit_cause, payload_size
from ceap_engine.asl.result import ExecutionResult, validate_execution_name
from ceap_engine.asl.states import Terminal
from ceap_engine.errors import InputError, Problem, StatesError
from ceap_engine.ports import Clock, ObjectStore
from ceap_engine.runtime.clock import Activity, RealClock, VirtualClock, WallBackstop
from ceap_engine.runtime.tasks import TaskRunners, random_uuid

__all__ = [
    "Engine",
    "Execution",
    "ExecutionResult",
    "Frame",
    "STANDARD",
    "EXPRESS",
    "validate_execution_name",
]

STANDARD = "STANDARD"
EXPRESS = "EXPRESS"
EXPRESS_MAX_SECONDS = 300
#: A Standard execution runs at most one year (AWS quota), whatever its Waits ask.
STANDARD_MAX_SECONDS = 365 * 24 * 3600
STANDARD_MAX_EVENTS = 25_000
#: Express executions keep no history on AWS; locally the newest events are
#: kept, at most twice this many, so a long Express run holds bounded memory.
EXPRESS_KEPT_EVENTS = 25_000
#: States run between two yields to the event loop, so that signals (Ctrl-C),
#: wall-time limits and other executions get their turn during a tight loop.
YIELD_EVERY_STATES = 512
INPUT_LIMIT_BYTES = 262_144

_OUTPUT_SHAPE = EventShape("output")


class Execution:
    """One run of a state machine. Create it with :meth:`Engine.start`."""

    #: Slots, not a dict: an execution has more attributes than an instance's shared-key dict holds,
    #: so each one built a dict and resized it as it grew (every StartSyncExecution makes one).
    __slots__ = ("_context_execution", "_context_state_machine", "_deadline", "_input_text", "_loop",
                 "_mock_counters", "_task", "_timed_out", "_timer", "account", "activity", "arn", "cause", "clock",
                 "engine", "error", "history", "input", "input_size", "machine", "map_runs", "mocks", "name", "object_store",
                 "output", "region", "rng", "role_arn", "runners", "start_time", "state_machine_arn",
                 "state_machine_name", "status", "stop_time", "task", "transitions", "type", "wall_limits")

    def __init__(
        self,
        engine: Engine,
        machine: StateMachine,
        input: Any,
        *,
        name: str,
        state_machine_name: str,
        input_text: str | None,
        execution_type: str,
        mocks: Any = None,
    ) -> None:
        self.engine = engine
        self.machine = machine
        self.input = input
        self.name = name
        self.state_machine_name = state_machine_name
        self.type = execution_type
        self.clock = engine.clock
        self.rng = engine.rng
        self.runners = engine.runners
        self.region = engine.region
        self.account = engine.account
        self.role_arn = engine.role_arn
        self.object_store = engine.object_store
        self.map_runs = engine.map_runs
        self.state_machine_arn = f"arn:aws:states:{self.region}:{self.account}:stateMachine:{state_machine_name}"
        kind = "express" if execution_type == EXPRESS else "execution"
        self.arn = f"arn:aws:states:{self.region}:{self.account}:{kind}:{state_machine_name}:{name}"
        if execution_type == STANDARD:
            self.history = ExecutionHistory(self.clock, limit=STANDARD_MAX_EVENTS)
        else:
            self.history = ExecutionHistory(self.clock, keep=EXPRESS_KEPT_EVENTS)
        #: Under a clock other than the real one, limits also apply on wall time:
        #: a busy loop or a hung task makes no virtual progress but must still end.
        self.wall_limits = not isinstance(self.clock, RealClock)
        self.transitions = 0
        self.start_time = self.clock.time()
        self.stop_time: float | None = None
        self.status = "RUNNING"
        self.output: Any = None
        self.error: str | None = None
        self.cause: str | None = None
        self.mocks = mocks
        self._mock_counters: dict[str, int] | None = None
        self._input_text = input_text
        self._context_execution: dict[str, Any] | None = None
        self._context_state_machine: dict[str, Any] | None = None
        self.task: asyncio.Task | None = None
        self.input_size = -1  # bytes of the input as JSON, once known
        self.activity: Activity | None = None
        self._task: asyncio.Task | None = None  # the task running run()
        self._timed_out = False
        #: Under the real clock, the timeout's loop time until the execution first waits (see _arm).
        self._deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- the context object's parts of the execution (built when first read) -----------
    @property
    def context_execution(self) -> dict[str, Any]:
        """``$$.Execution``."""
        ctx = self._context_execution
        if ctx is None:
            ctx = self._context_execution = {
                "Id": self.arn,
                "Input": self.input,
                "StartTime": iso_timestamp(self.start_time),
                "Name": self.name,
                "RoleArn": self.role_arn,
                "RedriveCount": 0,
            }
        return ctx

    @property
    def context_state_machine(self) -> dict[str, Any]:
        """``$$.StateMachine``."""
        ctx = self._context_state_machine
        if ctx is None:
            ctx = self._context_state_machine = {"Id": self.state_machine_arn, "Name": self.state_machine_name}
        return ctx

    # -- mocked responses ----------------------------------------------------
    def mocked_response(self, state_name: str) -> Any:
        if self.mocks is None:
            return None
        counters = self._mock_counters
        if counters is None:
            counters = self._mock_counters = {}
        attempt = counters.get(state_name, 0)
        response = self.mocks.response_for(state_name, attempt)
        if response is not None:
            counters[state_name] = attempt + 1
        return response

    def history_overflow(self) -> None:
        """A Standard execution has no room left for events: it fails (the closing event still fits)."""
        raise Terminal(
            "States.Runtime",
            f"The execution reached the maximum number of history events ({STANDARD_MAX_EVENTS}).",
        )

    # -- the state loop ----------------------------------------------------------
    async def run_program(self, program: Program, value: Any, frame: Frame) -> Any:
        """Run a (sub-)machine from its StartAt to its end; return its output."""
        states = program.states
        name: str | None = program.start_at
        now = self.clock.time
        history = self.history
        log, room = history.log, history.room
        while True:
            self.transitions += 1
            if not self.transitions % YIELD_EVERY_STATES:
                if self._deadline is not None:
                    self._arm()
                await asyncio.sleep(0)
            state = states[name]  # type: ignore[index]
            frame.state = state
            frame.retry_count = 0
            frame._ctx = None
            frame.pending_assign = None
            frame.output_bound = -1
            frame.result_size = -1
            # The Entered event, as Frame.event records it, with the one clock read it shares.
            if len(log) >= room and not history.make_room():
                self.history_overflow()
            frame.entered_time = entered_at = now()
            log += (frame.last_event, entered_at, state.entered_type, value, state.entered_shape)
            frame.entered_event = frame.last_event = entered = history.dropped + len(log) // STRIDE
            try:
                if state.sync:
                    value, name = state.step(frame, value)
                else:
                    if self._deadline is not None:
                        self._arm()
                    value, name = await state.run(frame, value)
            except RuntimeFailure as rf:
                raise Terminal(
                    rf.error,
                    f"An error occurred while executing the state '{state.name}' (entered at the event id #{entered}). {rf.message}",
                ) from None
            bound = frame.output_bound
            if bound < 0 or bound > PAYLOAD_LIMIT_BYTES:
                bound = payload_size(value)
                if bound > PAYLOAD_LIMIT_BYTES:
                    raise Terminal("States.DataLimitExceeded", data_limit_cause(state.name))
            frame.size_bound = bound
            assigned = frame.pending_assign
            if state.writes_exit_event:
                if assigned:
                    frame.event(state.exited_type, {"name": state.name, "output": value, "assignedVariables": assigned})
                else:  # Frame.event, inline
                    if len(log) >= room and not history.make_room():
                        self.history_overflow()
                    log += (frame.last_event, now(), state.exited_type, value, state.exited_shape)
                    frame.last_event = history.dropped + len(log) // STRIDE
            if assigned:
                frame.variables.update(assigned)
            if name is None:
                return value

    async def run_detached(self, program: Program, value: Any, frame: Frame) -> Any:
        """A Distributed Map child: its events live in a child execution, not in this history."""
        detached = _DetachedExecution(self, ExecutionHistory(self.clock, limit=STANDARD_MAX_EVENTS))
        frame.execution = detached
        return await detached.run_program(program, value, frame)

    async def run(self) -> ExecutionResult:
        activity = self.activity or self.clock.activity()
        self.activity = activity
        with activity:
            input_event = RawJson(self._input_text) if self._input_text is not None else self.input
            self.history.add("ExecutionStarted", 0, input_event, self.engine.started_shape())
            frame = Frame(self, None, activity, 0)
            frame.size_bound = self.input_size
            timeout = self.machine.timeout_seconds
            cap = EXPRESS_MAX_SECONDS if self.type == EXPRESS else STANDARD_MAX_SECONDS
            limit = min(timeout or cap, cap)
            # One look-up of the loop at most: in Python 3.11 each get_running_loop() is a getpid()
            # system call (a caller that has the running loop at hand gives it to Engine.prepare).
            loop = self._loop if self._loop is not None else asyncio.get_running_loop()
            self._task = asyncio.current_task(loop)
            clock = self.clock
            timer: Any = None
            if isinstance(clock, VirtualClock):
                timer = clock.call_later_once_waiting(activity, limit, self._on_timeout)
            elif type(clock) is RealClock:
                # The timer goes on the loop when the execution first waits (_arm): one that runs to
                # its end without ever giving the loop a turn could not be timed out anyway (the
                # timer's callback runs only then), and it costs no timer at all.
                self._loop = loop
                self._deadline = loop.time() + limit
            else:
                timer = clock.call_later(limit, self._on_timeout)
            # The same limit on wall time (a Standard run's year only when asked for).
            wall_limit = limit if (timeout or self.type == EXPRESS) else None
            wall_timer = WallBackstop(clock, wall_limit, self._on_timeout) if self.wall_limits and wall_limit else None
            try:
                output = await self.run_program(self.machine, self.input, frame)
            except asyncio.CancelledError:
                if self._timed_out:
                    if self._task is not None:
                        self._task.uncancel()
                    self._finish("TIMED_OUT", frame, error="States.Timeout", cause=None)
                else:
                    self._finish("ABORTED", frame)
                    raise
            except StatesError as err:
                self._finish("FAILED", frame, error=err.error, cause=err.cause)
            else:
                self._finish("SUCCEEDED", frame, output=output)
            finally:
                self._deadline = None
                if timer is None:
                    timer = self._timer
                if timer is not None:
                    timer.cancel()
                if wall_timer is not None:
                    wall_timer.cancel()
        return self.result()

    def _arm(self) -> None:
        """Put the timeout (due at ``_deadline``, loop time) on the loop: the execution is about to wait."""
        self._timer = self._loop.call_at(self._deadline, self._on_timeout)  # type: ignore[union-attr, arg-type]
        self._deadline = None

    def _on_timeout(self) -> None:
        if not self._timed_out:
            self._timed_out = True
            if self._task is not None:
                self._task.cancel()

    def _finish(self, status: str, frame: Frame, *, output: Any = ABSENT, error: str | None = None,
                cause: str | None = None) -> None:
        self.status = status
        self.stop_time = self.clock.time()
        history = self.history
        if status == "SUCCEEDED":
            self.output = output
            history.close("ExecutionSucceeded", frame.last_event, output, _OUTPUT_SHAPE)
            return
        details: dict[str, Any] = {}
        if cause is not None:
            details["cause"] = cause
        if error is not None:
            details["error"] = error
        self.error, self.cause = error, cause
        if status == "FAILED":
            history.close("ExecutionFailed", frame.last_event, details)
        elif status == "TIMED_OUT":
            history.close("ExecutionTimedOut", frame.last_event, details)
        else:
            history.close("ExecutionAborted", frame.last_event, None)

    def result(self) -> ExecutionResult:
        return ExecutionResult(
            execution_arn=self.arn,
            name=self.name,
            state_machine_arn=self.state_machine_arn,
            status=self.status,
            start_time=self.start_time,
            stop_time=self.stop_time,
            input=self.input,
            output=self.output,
            error=self.error,
            cause=self.cause,
            history=self.history,
        )

    def stop(self) -> None:
        """Abort this execution (ExecutionAborted); what ran so far stays in the history."""
        if self.task is not None and not self.task.done():
            self.task.cancel()


class _DetachedExecution(Execution):
    """A view of an execution that records into another history (Distributed Map children)."""

    __slots__ = ()

    def __init__(self, parent: Execution, history: ExecutionHistory) -> None:  # noqa: D107
        for name in Execution.__slots__:
            setattr(self, name, getattr(parent, name))
        self.history = history


@dataclass
class Engine:
    """Starts executions of compiled state machines with shared services.

    ``clock``: :class:`RealClock` or :class:`VirtualClock`; ``runners``: Task
    resource -> runner; ``seed``: makes jitter, ``States.MathRandom``,
    ``States.UUID`` and generated names repeatable.
    """

    clock: Clock = field(default_factory=RealClock)
    runners: TaskRunners = field(default_factory=TaskRunners)
    seed: int | None = None
    region: str = "us-east-1"
    account: str = "123456789012"
    role_arn: str = "arn:aws:iam::123456789012:role/ceap-local"
    #: Where Distributed Map ItemReader/ResultWriter read and write (the local S3).
    object_store: ObjectStore | None = None
    #: Where Distributed Map runs are reported (an endpoint's DescribeMapRun/UpdateMapRun), if anywhere.
    map_runs: MapRuns | None = None
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._checked: dict[int, tuple[StateMachine, int]] = {}
        self._started_shape: tuple[str, EventShape] | None = None

    def check_resources(self, machine: StateMachine) -> None:
        """Raise :class:`InputError` naming every Task resource no runner serves.

        A machine that passed is remembered until a runner is registered again,
        so starting many executions of it costs one check.
        """
        checked = self._checked.get(id(machine))
        if checked is not None and checked[0] is machine and checked[1] == self.runners.version:
            return
        problems = []
        for where, resource, info in machine.task_infos:
            if info is not None and not self.runners.supports(info):
                problems.append(Problem(
                    where,
                    f"No task runner for resource '{resource}' ({info.key}); registered: "
                    f"{', '.join(self.runners.keys) or 'none'}. Register one with TaskRunners.register('{info.key}', runner) "
                    "or run with a mock config that covers this state.",
                    "UNSUPPORTED_RESOURCE",
                ))
        if problems:
            raise InputError(problems, "state machine resources")
        self._checked[id(machine)] = (machine, self.runners.version)

    def new_name(self) -> str:
        return random_uuid(self.rng)

    def started_shape(self) -> EventShape:
        """The ExecutionStarted event's shape (its payload: the input)."""
        shape = self._started_shape
        if shape is None or shape[0] != self.role_arn:
            shape = self._started_shape = (self.role_arn, EventShape("input", after={"roleArn": self.role_arn}))
        return shape[1]

    def start(
        self,
        machine: StateMachine,
        input: Any = None,
        *,
        name: str | None = None,
        state_machine_name: str = "StateMachine",
        execution_type: str = STANDARD,
        input_text: str | None = None,
        mocks: Any = None,
        check_resources: bool = True,
    ) -> Execution:
        """Start an execution now; await ``execution.task`` (or :meth:`execute`) for its result."""
        execution = self.prepare(machine, input, name=name, state_machine_name=state_machine_name,
                                 execution_type=execution_type, input_text=input_text, mocks=mocks,
                                 check_resources=check_resources)
        execution.task = asyncio.ensure_future(execution.run())
        return execution

    def prepare(
        self,
        machine: StateMachine,
        input: Any = None,
        *,
        name: str | None = None,
        state_machine_name: str = "StateMachine",
        execution_type: str = STANDARD,
        input_text: str | None = None,
        mocks: Any = None,
        check_resources: bool = True,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Execution:
        """:meth:`start` without a task: ``await execution.run()`` runs it in the caller's task.

        For an execution nothing else awaits or stops (a StartSyncExecution nothing journals):
        no task to create and no hop through the event loop to its end. Its ``task`` is None;
        cancelling the caller's task aborts it. ``loop``: the loop ``run()`` will run on, if the
        caller has it at hand (else ``run()`` looks it up).
        """
        if execution_type not in (STANDARD, EXPRESS):
            raise InputError([Problem("/type", f"Unknown execution type {execution_type!r}: use STANDARD or EXPRESS")])
        if input is None and input_text is None:
            input = {}
        if input_text is not None:
            size = len(input_text) if input_text.isascii() else len(input_text.encode("utf-8"))
        else:
            size = payload_size(input)
        if size > INPUT_LIMIT_BYTES:
            raise InputError([Problem("/input", f"The execution input is {size} bytes; Step Functions accepts at most {INPUT_LIMIT_BYTES} bytes")])
        validate_execution_name(name) if name is not None else None
        if execution_type == EXPRESS:
            _reject_express_patterns(machine)
        if check_resources:
            self._check_resources_unless_mocked(machine, mocks)
        execution = Execution(
            self,
            machine,
            input,
            name=name or self.new_name(),
            state_machine_name=state_machine_name,
            input_text=input_text,
            execution_type=execution_type,
            mocks=mocks,
        )
        execution.input_size = size
        execution.activity = self.clock.activity()
        execution._loop = loop
        return execution

    def _check_resources_unless_mocked(self, machine: StateMachine, mocks: Any) -> None:
        if mocks is None:
            self.check_resources(machine)
            return
        problems = []
        for where, resource, info in machine.task_infos:
            state_name = where.rsplit("/", 2)[-2]
            if info is not None and not self.runners.supports(info) and not mocks.covers(state_name):
                problems.append(Problem(where, f"No task runner or mocked response for resource '{resource}'", "UNSUPPORTED_RESOURCE"))
        if problems:
            raise InputError(problems, "state machine resources")

    async def execute(self, machine: StateMachine, input: Any = None, **kwargs: Any) -> ExecutionResult:
        """Start an execution and wait for its result."""
        execution = self.start(machine, input, **kwargs)
        return await execution.task  # type: ignore[misc]


def _reject_express_patterns(machine: StateMachine) -> None:
    if machine.express_problems:
        raise InputError(list(machine.express_problems), "state machine for an EXPRESS workflow")
