"""The Task state: invoking a runner, with its timeout and heartbeat timers.

A runner is stepped once before any timer is armed (:class:`_Resume` awaits
the rest), so a runner that never suspends costs no timer at all.

Example::

    result = await task_state.invoke(frame, {"x": 1}, timeout=30, heartbeat=None)
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from ceap_engine.ports import ResourceInfo, TaskContext
from ceap_engine.runtime.clock import RealClock, WallBackstop
from ceap_engine.runtime.tasks import TaskFailed, parse_resource

from ...errors import StatesError
from ..flow import CatchClause, DataFlow
from ..frame import Frame
from ..history import EventShape
from ..jsonata_flow import is_jsonata, query_failure
from ..payload import PAYLOAD_LIMIT_BYTES, RuntimeFailure, ValuePath, data_limit_cause, payload_size, to_json
from .base import Retrying, Terminal

__all__ = ["TaskState"]

#: Marks a numeric field whose value is a JSONata expression.
_JSONATA_FIELD: Any = object()
#: A runner that ended on its first step.
_DONE: Any = object()


async def _as_coroutine(awaitable: Any) -> Any:
    """A runner may return any awaitable (or, if it is a plain function, its result)."""
    if inspect.isawaitable(awaitable):
        return await awaitable
    return awaitable


async def _coroutine_type() -> None:  # pragma: no cover - only its type is used
    pass


_probe = _coroutine_type()
_COROUTINE = type(_probe)
_probe.close()


class _Resume:
    """Await the rest of a coroutine that was already stepped once (see TaskState.invoke).

    This is what ``await coro`` does after its first step: every value the
    coroutine yields goes to the task driving us, every value or exception
    sent back (a cancellation too) goes into the coroutine.
    """

    __slots__ = ("coro", "first")

    def __init__(self, coro: Any, first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Any:
        coro, value = self.coro, self.first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - every thrown-in exception goes to the coroutine
                try:
                    value = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    value = coro.send(sent)
                except StopIteration as done:
                    return done.value


class _Timeout:
    """Cancel the current task when a clock timer fires (asyncio.timeout on our clock).

    Under a virtual clock a timer armed for the same delay on wall time backs
    it up: a runner that hangs keeps its activity busy, so virtual time - and
    the clock's timer - would never move.
    """

    __slots__ = ("_handles", "_task", "expired", "kind")

    def __init__(self) -> None:
        self._handles: tuple[Any, ...] = ()
        self._task: asyncio.Task | None = None
        self.expired = False
        self.kind = ""

    def arm(self, frame: Frame, seconds: float | None, kind: str) -> None:
        if seconds is None:
            return
        self.disarm()
        self._task = asyncio.current_task()
        fire = lambda: self._fire(kind)  # noqa: E731
        if isinstance(frame.clock, RealClock):
            # Real time: the timer itself is the wall-time one, restartable like a backstop, so a local call
            # that waited for a free core counts its TimeoutSeconds from its start (restart_wall_backstops).
            self._handles = (WallBackstop(frame.clock, seconds, fire, restartable=True),)
            return
        handle = frame.clock.call_later(seconds, fire)
        if frame.execution.wall_limits:
            self._handles = (handle, WallBackstop(frame.clock, seconds, fire, restartable=True))
        else:
            self._handles = (handle,)

    def _fire(self, kind: str) -> None:
        if not self.expired and self._task is not None and not self._task.done():
            self.expired = True
            self.kind = kind
            self._task.cancel()

    def disarm(self) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles = ()


class TaskState(Retrying):
    type = "Task"

    def __init__(self, name: str, raw: dict[str, Any], language: str, flow: DataFlow,
                 catch_compiler: Callable[[dict, int], CatchClause]) -> None:
        super().__init__(name, raw, language, flow, catch_compiler)
        info = parse_resource(raw["Resource"])
        assert info is not None  # validated
        self.info: ResourceInfo = info
        self.timeout_seconds = raw.get("TimeoutSeconds")
        self.timeout_path = ValuePath(raw["TimeoutSecondsPath"]) if "TimeoutSecondsPath" in raw else None
        self.heartbeat_seconds = raw.get("HeartbeatSeconds")
        self.heartbeat_path = ValuePath(raw["HeartbeatSecondsPath"]) if "HeartbeatSecondsPath" in raw else None
        if self.jsonata:
            # A JSONata expression is evaluated per attempt (see _jsonata_seconds).
            if is_jsonata(self.timeout_seconds):
                self.timeout_seconds = _JSONATA_FIELD
            if is_jsonata(self.heartbeat_seconds):
                self.heartbeat_seconds = _JSONATA_FIELD
        self.is_lambda_arn = info.kind == "lambda"
        self.is_sync = info.pattern.startswith("sync")
        self._rt = {"resource": info.resource, "resourceType": info.resource_type}
        #: Timeouts known before any attempt: the Scheduled event's shape is then the same every time.
        self.static_timeouts = (
            self.timeout_path is None and self.heartbeat_path is None
            and self.timeout_seconds is not _JSONATA_FIELD and self.heartbeat_seconds is not _JSONATA_FIELD
        )
        self._scheduled_shapes: dict[str, EventShape] = {}  # region -> shape (static timeouts only)
        self._succeeded_shape = EventShape("output") if self.is_lambda_arn else EventShape("output", after=self._rt)

    def _scheduled(self, frame: Frame, parameters: Any, timeout: Any, heartbeat: Any) -> None:
        """The LambdaFunctionScheduled or TaskScheduled event."""
        region = frame.execution.region
        shape = self._scheduled_shapes.get(region) if self.static_timeouts else None
        if shape is None:
            if self.is_lambda_arn:
                key, after = "input", {"resource": self.info.arn}
            else:
                key, after = "parameters", {"region": region, **self._rt}
            if timeout is not None:
                after["timeoutInSeconds"] = timeout
            if heartbeat is not None:
                after["heartbeatInSeconds"] = heartbeat
            shape = EventShape(key, after=after)
            if self.static_timeouts:
                self._scheduled_shapes[region] = shape
        frame.event("LambdaFunctionScheduled" if self.is_lambda_arn else "TaskScheduled", parameters, shape)

    def _seconds(self, frame: Frame, effective: Any, static: Any, path: ValuePath | None, field: str) -> Any:
        if static is _JSONATA_FIELD:
            return self._jsonata_seconds(frame, effective, field[:-4])
        if path is None:
            return static
        value = path.require(effective, frame)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise RuntimeFailure(f"The {field} value at '{path.text}' must be a positive integer, got {to_json(value)}")
        return value

    def _jsonata_seconds(self, frame: Frame, raw: Any, field: str) -> int:
        value = self.flow.field(frame, field, raw)  # type: ignore[attr-defined]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()
        ) or not 0 < value <= 99999999:
            raise query_failure(
                frame, field, f"The {field} field must be a positive integer, but was: {to_json(value)}", after_entered=True
            )
        return int(value)

    def _timeouts(self, frame: Frame, effective: Any) -> tuple[Any, Any]:
        if self.static_timeouts:
            return self.timeout_seconds, self.heartbeat_seconds
        return (self._seconds(frame, effective, self.timeout_seconds, self.timeout_path, "TimeoutSecondsPath"),
                self._seconds(frame, effective, self.heartbeat_seconds, self.heartbeat_path, "HeartbeatSecondsPath"))

    async def run(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
        # Retrying.run with its attempt() written inline: one coroutine less on every Task.
        flow = self.flow
        effective = flow.effective_input(frame, raw)
        attempts: list[int] | None = None
        while True:
            try:
                parameters = flow.arguments(frame, effective)
                timeout, heartbeat = self._timeouts(frame, effective)
                return self.finish(frame, raw, await self.invoke(frame, parameters, timeout, heartbeat))
            except Terminal:
                raise
            except StatesError as err:
                attempts, delay = self.retry_delay(frame, err, attempts)
                if delay is None:
                    return self.give_up(frame, raw, err)
                await frame.clock.sleep(delay)

    async def invoke(self, frame: Frame, parameters: Any, timeout: Any, heartbeat: Any) -> Any:
        info = self.info
        rt = self._rt
        self._scheduled(frame, parameters, timeout, heartbeat)
        if frame.parent is not None:
            await asyncio.sleep(0)  # concurrent iterations interleave as on AWS
        if self.is_lambda_arn:
            frame.event("LambdaFunctionStarted")
        else:
            frame.event("TaskStarted", rt)

        execution = frame.execution
        heartbeat_timer = _Timeout() if heartbeat is not None else None

        context = TaskContext(
            resource=info,
            state_name=self.name,
            execution_arn=execution.arn,
            execution_name=execution.name,
            state_machine_arn=execution.state_machine_arn,
            clock=execution.clock,
            rng=execution.rng,
            region=execution.region,
            account=execution.account,
            timeout_seconds=timeout,
            heartbeat_seconds=heartbeat,
            retry_count=frame.retry_count,
            _heartbeat=(lambda: heartbeat_timer.arm(frame, heartbeat, "States.HeartbeatTimeout"))
            if heartbeat_timer is not None else None,
        )
        mocked = execution.mocked_response(self.name)
        timer = None
        try:
            if mocked is not None:
                coro = mocked.respond(context)
            else:
                coro = execution.runners.runner_for(info)(info, parameters, context)
            if type(coro) is not _COROUTINE:
                coro = _as_coroutine(coro)
            if timeout is None and heartbeat_timer is None:
                result = await coro  # no timer to arm
            else:
                try:
                    # Step the runner once before arming any timer: a runner that ends
                    # without suspending took no time, so no timeout can apply to it.
                    suspended_on = coro.send(None)
                except StopIteration as done:
                    result = done.value
                    suspended_on = _DONE
                if suspended_on is not _DONE:
                    if timeout is not None:
                        timer = _Timeout()
                        timer.arm(frame, timeout, "States.Timeout")
                    if heartbeat_timer is not None:
                        heartbeat_timer.arm(frame, heartbeat, "States.HeartbeatTimeout")
                    try:
                        result = await _Resume(coro, suspended_on)
                    finally:
                        if timer is not None:
                            timer.disarm()
                        if heartbeat_timer is not None:
                            heartbeat_timer.disarm()
        except asyncio.CancelledError:
            expired = (timer if timer is not None and timer.expired
                       else heartbeat_timer if heartbeat_timer is not None and heartbeat_timer.expired else None)
            if expired is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            if self.is_lambda_arn:
                frame.event("LambdaFunctionTimedOut", {"error": expired.kind})
            else:
                frame.event("TaskTimedOut", {"error": expired.kind, **rt})
            raise StatesError(expired.kind, None) from None
        except StatesError as err:
            self._failed(frame, err.error, err.cause)
            raise
        except Exception as exc:  # noqa: BLE001 - a runner's own bug still fails the task, visibly
            err = TaskFailed(type(exc).__name__, str(exc))
            self._failed(frame, err.error, err.cause)
            raise err from exc

        size = payload_size(result)
        frame.result_size = size
        if size > PAYLOAD_LIMIT_BYTES:
            name = info.arn if self.is_lambda_arn else info.resource_type
            err = TaskFailed("States.DataLimitExceeded", data_limit_cause(name))
            self._failed(frame, err.error, err.cause)
            raise err
        if self.is_lambda_arn:
            frame.event("LambdaFunctionSucceeded", result, self._succeeded_shape)
        else:
            if self.is_sync:
                frame.event("TaskSubmitted", result, self._succeeded_shape)
            frame.event("TaskSucceeded", result, self._succeeded_shape)
        return result

    def _failed(self, frame: Frame, error: str, cause: str | None) -> None:
        details: dict[str, Any] = {}
        if cause is not None:
            details["cause"] = cause
        details["error"] = error
        if self.is_lambda_arn:
            frame.event("LambdaFunctionFailed", details)
        else:
            details.update(self._rt)
            frame.event("TaskFailed", details)

