"""Compiled states and what each does when it runs.

Each state is compiled once from its (already validated) definition. At run
time :meth:`State.run` receives the running :class:`~ceap_engine.asl.interpreter.Frame`
and the state's raw input and returns ``(output, next_state_name)``;
``next_state_name`` is ``None`` when the state ends its (sub-)machine. The
Entered/Exited events around it are written by the interpreter's loop; the
events inside (Task*, Map*, Parallel*) are written here.

A state fails by raising :class:`~ceap_engine.errors.StatesError`; a
:class:`Terminal` error is one that Retry and Catch never see.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ceap_engine.asl.retry import BackoffSchedule, Catcher, Retrier, decide, find_catcher
from ceap_engine.ports import ResourceInfo, TaskContext
from ceap_engine.runtime.tasks import TaskFailed, parse_resource

from .._json import json_size
from ..errors import StatesError
from .choice import compile_rule, parse_timestamp
from .flow import ABSENT, DataFlow, JsonPathFlow
from .jsonata_flow import is_jsonata
from .jsonpath import PathNotFound
from .map_io import ItemBatcher, ItemReader, write_results
from .payload import (
    RuntimeFailure,
    ValuePath,
    compile_dynamic,
    compile_template,
    to_json,
)

if TYPE_CHECKING:  # pragma: no cover
    from ceap_engine.asl.interpreter import Frame

    from .definition import Program

__all__ = ["State", "Terminal", "compile_state", "payload_too_large"]

PAYLOAD_LIMIT_BYTES = 262_144
#: Marks a numeric field whose value is a JSONata expression.
_JSONATA_FIELD: Any = object()
#: The longest Wait AWS accepts (2^31 - 1 seconds, about 68 years).
MAX_WAIT_SECONDS = 2**31 - 1


class Terminal(StatesError):
    """An error that fails the execution without Retry or Catch (States.Runtime,
    a state's own output over the payload limit)."""


def payload_size(value: Any) -> int:
    """Bytes of ``value`` as compact UTF-8 JSON."""
    if value is None or value is True or value is False:
        return 5
    return json_size(value)


def payload_too_large(value: Any) -> bool:
    """Is this value's JSON over Step Functions' 256 KiB payload limit?"""
    return payload_size(value) > PAYLOAD_LIMIT_BYTES


def data_limit_cause(name: str) -> str:
    return f"The state/task '{name}' returned a result with a size exceeding the maximum number of bytes service limit."


def _as_integer(value: Any) -> Any:
    """AWS reads a Map parameter from a path leniently: ``"1"`` is 1."""
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return value
    return value


def _as_number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


def _quoted(value: Any) -> str:
    """A value as AWS quotes it in Map parameter errors: ``"NoNumber"``, ``"{}"``."""
    return '"' + (value if isinstance(value, str) else to_json(value)) + '"'


def _error_object(err: StatesError) -> dict[str, Any]:
    return {"Error": err.error, "Cause": err.cause if err.cause is not None else ""}


@dataclass(frozen=True, slots=True)
class CatchClause:
    """A compiled catcher: where to go and how to shape the error output."""

    catcher: Catcher
    result_path: Any  # compiled reference path, None, or ABSENT
    output: Any = ABSENT  # JSONata Output
    assign: Any = None


class State:
    """Base of the compiled states."""

    type: str = ""
    entered_type: str = ""
    exited_type: str = ""
    writes_exit_event = True
    has_retry_count = False

    def __init__(self, name: str, raw: dict[str, Any], language: str, flow: DataFlow | None) -> None:
        self.name = name
        self.raw = raw
        self.language = language
        self.flow = flow
        self.next: str | None = raw.get("Next")
        self.end = bool(raw.get("End", False))
        self.assign = flow.compile_assign(raw["Assign"]) if (flow is not None and "Assign" in raw) else None
        self.jsonata = language == "JSONata"
        self.entered_type = f"{self.type}StateEntered"
        self.exited_type = f"{self.type}StateExited"

    async def run(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:  # pragma: no cover - abstract
        raise NotImplementedError

    def finish(self, frame: Frame, raw: Any, result: Any) -> tuple[Any, str | None]:
        """Apply the data flow's output side (and Assign) and pick the next state."""
        if self.assign is None:
            return self.flow.output(frame, raw, result), self.next
        return self.flow.output_assigning(frame, raw, result, self.assign), self.next


# -- retry / catch ----------------------------------------------------------


class Retrying(State):
    """Task, Map and Parallel: states with Retry and Catch."""

    has_retry_count = True
    #: Event written once the state gives up on a failure (after its retries).
    failed_event: str | None = None

    def __init__(self, name: str, raw: dict[str, Any], language: str, flow: DataFlow | None,
                 catch_compiler: Callable[[dict, int], CatchClause]) -> None:
        super().__init__(name, raw, language, flow)
        self.retriers = tuple(
            Retrier(
                tuple(r["ErrorEquals"]),
                BackoffSchedule(
                    r.get("IntervalSeconds", 1),
                    r.get("BackoffRate", 2.0),
                    r.get("MaxAttempts", 3),
                    r.get("MaxDelaySeconds"),
                    r.get("JitterStrategy", "NONE"),
                ),
            )
            for r in raw.get("Retry", ())
        )
        self.catchers = tuple(catch_compiler(c, i) for i, c in enumerate(raw.get("Catch", ())))
        self._catchers_plain = tuple(c.catcher for c in self.catchers)

    async def attempt(self, frame: Frame, raw: Any, effective: Any) -> tuple[Any, str | None]:
        raise NotImplementedError  # pragma: no cover

    async def run(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
        effective = self.flow.effective_input(frame, raw)
        retriers = self.retriers
        attempts = [0] * len(retriers) if retriers else None
        while True:
            try:
                return await self.attempt(frame, raw, effective)
            except Terminal:
                raise
            except StatesError as err:
                if retriers:
                    decision = decide(retriers, attempts, err.error, frame.rng)  # type: ignore[arg-type]
                    if decision.retry:
                        attempts[decision.retrier_index] += 1  # type: ignore[index]
                        frame.retry_count += 1
                        frame.invalidate_context()
                        await frame.clock.sleep(decision.delay)
                        continue
                if self.failed_event is not None:
                    frame.event(self.failed_event)
                clause = self._find_clause(err.error)
                if clause is None:
                    raise
                return self.caught(frame, raw, clause, err)

    def _find_clause(self, error: str) -> CatchClause | None:
        if not self.catchers:
            return None
        plain = find_catcher(self._catchers_plain, error)
        return None if plain is None else self.catchers[plain.index]

    def caught(self, frame: Frame, raw: Any, clause: CatchClause, err: StatesError) -> tuple[Any, str | None]:
        error_object = _error_object(err)
        if clause.assign is not None:
            frame.pending_assign = self.flow.assign_error(frame, raw, error_object, clause.assign)  # type: ignore[attr-defined]
        return self.flow.error_output(frame, raw, clause, error_object), clause.catcher.next


# -- Pass, Succeed, Fail, Choice, Wait ----------------------------------------


class PassState(State):
    type = "Pass"

    def __init__(self, name: str, raw: dict[str, Any], language: str, flow: DataFlow) -> None:
        super().__init__(name, raw, language, flow)
        self.has_result = "Result" in raw
        self.result = raw.get("Result")

    async def run(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
        flow = self.flow
        effective = flow.effective_input(frame, raw)
        result = self.result if self.has_result else flow.arguments(frame, effective)
        return self.finish(frame, raw, result)


class SucceedState(State):
    type = "Succeed"

    async def run(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
        flow = self.flow
        effective = flow.effective_input(frame, raw)
        return flow.output(frame, raw, effective), None


class FailState(State):
    type = "Fail"
    writes_exit_event = False

    def __init__(self, name: str, raw: dict[str, Any], language: str, flow: DataFlow | None) -> None:
        super().__init__(name, raw, language, flow)
        self.entered_type = "FailStateEntered"
        self.error = raw.get("Error")
        self.cause = raw.get("Cause")
        self.error_path = compile_dynamic("ErrorPath", raw["ErrorPath"]) if "ErrorPath" in raw else None
        self.cause_path = compile_dynamic("CausePath", raw["CausePath"]) if "CausePath" in raw else None

    @staticmethod
    def _string(value: Any, field: str) -> str:
        if not isinstance(value, str):
            raise RuntimeFailure(f"The {field} field must resolve to a string, got {to_json(value)}")
        return value

    async def run(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
        if self.jsonata:
            flow = self.flow
            error = flow.field(frame, "Error", raw) if "Error" in flow.fields else None  # type: ignore[attr-defined]
            cause = flow.field(frame, "Cause", raw) if "Cause" in flow.fields else None  # type: ignore[attr-defined]
            raise StatesError(error, cause)
        error = self._string(self.error_path(raw, frame), "ErrorPath") if self.error_path else self.error
        cause = self._string(self.cause_path(raw, frame), "CausePath") if self.cause_path else self.cause
        raise StatesError(error, cause)


class ChoiceState(State):
    type = "Choice"

    def __init__(self, name: str, raw: dict[str, Any], language: str, flow: DataFlow) -> None:
        super().__init__(name, raw, language, flow)
        self.default = raw.get("Default")
        # (predicate, next, the rule's own Assign, the rule's own Output)
        self.rules: list[tuple[Any, str, Any, Any]] = []
        for rule in raw["Choices"]:
            assign = flow.compile_assign(rule["Assign"]) if "Assign" in rule else None
            if self.jsonata:
                from .jsonata_flow import JsonataTemplate

                output = JsonataTemplate(rule["Output"], "Output") if "Output" in rule else None
                self.rules.append((JsonataTemplate(rule["Condition"], "Condition"), rule["Next"], assign, output))
            else:
                self.rules.append((compile_rule(rule), rule["Next"], assign, None))

    async def run(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
        flow = self.flow
        effective = flow.effective_input(frame, raw)
        if self.jsonata:
            return self._run_jsonata(frame, raw)
        for predicate, target, assign, _ in self.rules:
            if predicate(effective, frame):
                return self._leave(frame, raw, effective, target, assign)
        if self.default is None:
            raise StatesError("States.NoChoiceMatched", None)
        return self._leave(frame, raw, effective, self.default, None)

    def _leave(self, frame: Frame, raw: Any, effective: Any, target: str, assign: Any) -> tuple[Any, str | None]:
        assign = assign if assign is not None else self.assign
        if assign is not None:
            frame.pending_assign = self.flow.assign(frame, raw, effective, assign)
        frame.output_bound = self.flow.passthrough_bound(frame)  # type: ignore[attr-defined]
        return self.flow.filter_output(frame, effective), target

    def _run_jsonata(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
        from .jsonata_flow import describe_type, query_failure

        flow = self.flow
        states = flow.states(frame, raw)  # type: ignore[attr-defined]
        for condition, target, assign, output in self.rules:
            value = condition.evaluate(frame, states)
            if not isinstance(value, bool):
                raise query_failure(
                    frame, "Condition",
                    f"The JSONata expression '{condition.expression_text or condition.source}' specified for the field "
                    f"'Condition' returned an unexpected result type. Expected 'boolean', but was "
                    f"'{describe_type(value)}' for value: {to_json(value)}",
                )
            if value:
                return self._leave_jsonata(frame, raw, target, assign, output)
        if self.default is None:
            raise StatesError("States.NoChoiceMatched", None)
        return self._leave_jsonata(frame, raw, self.default, None, None)

    def _leave_jsonata(self, frame: Frame, raw: Any, target: str, assign: Any, output: Any) -> tuple[Any, str | None]:
        flow = self.flow
        assign = assign if assign is not None else self.assign
        if assign is not None:
            frame.pending_assign = flow.assign(frame, raw, raw, assign)
        if output is not None:
            return output.evaluate(frame, flow.states(frame, raw)), target  # type: ignore[attr-defined]
        return flow.filter_output(frame, raw), target


class WaitState(State):
    type = "Wait"

    def __init__(self, name: str, raw: dict[str, Any], language: str, flow: DataFlow) -> None:
        super().__init__(name, raw, language, flow)
        self.seconds = raw.get("Seconds")
        self.seconds_path = ValuePath(raw["SecondsPath"]) if "SecondsPath" in raw else None
        self.timestamp = parse_timestamp(raw["Timestamp"]) if isinstance(raw.get("Timestamp"), str) else None
        self.timestamp_path = ValuePath(raw["TimestampPath"]) if "TimestampPath" in raw else None

    def wait_seconds(self, frame: Frame, effective: Any) -> float:
        if self.jsonata:
            return self._jsonata_seconds(frame, effective)
        if self.seconds_path is not None:
            path = self.seconds_path
            try:
                value = path.resolve(effective, frame)
            except PathNotFound:
                raise RuntimeFailure(f"The SecondsPath parameter does not reference an input value: {path.text}") from None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()
            ):
                raise RuntimeFailure(
                    f"The SecondsPath parameter cannot be parsed as a long value: {path.text} == {to_json(value)}"
                )
            if value < 0:
                raise RuntimeFailure(
                    f"The SecondsPath parameter references a negative value: {path.text} == {to_json(value)}"
                )
            return float(value)
        if self.timestamp_path is not None:
            path = self.timestamp_path
            try:
                value = path.resolve(effective, frame)
            except PathNotFound:
                raise RuntimeFailure(f"The TimestampPath parameter does not reference an input value: {path.text}") from None
            when = parse_timestamp(value)
            if when is None:
                shown = value if isinstance(value, str) else to_json(value)
                raise RuntimeFailure(
                    f"The TimestampPath parameter does not reference a valid ISO-8601 extended offset date-time "
                    f"format string: {path.text} == {shown}"
                )
            return self._until(frame, when.timestamp())
        if self.timestamp is not None:
            return self._until(frame, self.timestamp.timestamp())
        return float(self.seconds or 0)

    def _jsonata_seconds(self, frame: Frame, raw: Any) -> float:
        from .jsonata_flow import query_failure

        flow = self.flow
        if "Seconds" in flow.fields:  # type: ignore[attr-defined]
            value = flow.field(frame, "Seconds", raw)  # type: ignore[attr-defined]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not value.is_integer()
            ) or value < 0 or value > MAX_WAIT_SECONDS:
                raise query_failure(
                    frame, "Seconds",
                    f"The Seconds field must be an integer between 0 and {MAX_WAIT_SECONDS}, but was: {to_json(value)}",
                    after_entered=True,
                )
            return float(value)
        value = flow.field(frame, "Timestamp", raw)  # type: ignore[attr-defined]
        when = parse_timestamp(value)
        if when is None:
            shown = value if isinstance(value, str) else to_json(value)
            raise query_failure(
                frame, "Timestamp",
                f"The Timestamp field cannot be parsed as an ISO-8601 extended offset date-time format string: {shown}",
                after_entered=True,
            )
        return self._until(frame, when.timestamp())

    @staticmethod
    def _until(frame: Frame, epoch: float) -> float:
        delay = epoch - frame.clock.time()
        if delay > MAX_WAIT_SECONDS:
            raise RuntimeFailure("Wait state delay is too long.")
        return max(0.0, delay)

    async def run(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
        flow = self.flow
        effective = flow.effective_input(frame, raw)
        seconds = self.wait_seconds(frame, effective)
        if seconds > 0:
            await frame.clock.sleep(seconds)
        if self.assign is not None:
            frame.pending_assign = flow.assign(frame, raw, effective, self.assign)
        frame.output_bound = flow.passthrough_bound(frame)  # type: ignore[attr-defined]
        return flow.filter_output(frame, effective), self.next  # type: ignore[attr-defined]


# -- Task ---------------------------------------------------------------------


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
    """Cancel the current task when a clock timer fires (asyncio.timeout on our clock)."""

    __slots__ = ("_handle", "_task", "expired", "kind")

    def __init__(self) -> None:
        self._handle = None
        self._task: asyncio.Task | None = None
        self.expired = False
        self.kind = ""

    def arm(self, frame: Frame, seconds: float | None, kind: str) -> None:
        if seconds is None:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._task = asyncio.current_task()
        self._handle = frame.clock.call_later(seconds, lambda: self._fire(kind))

    def _fire(self, kind: str) -> None:
        if not self.expired and self._task is not None and not self._task.done():
            self.expired = True
            self.kind = kind
            self._task.cancel()

    def disarm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


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
        from .jsonata_flow import query_failure

        value = self.flow.field(frame, field, raw)  # type: ignore[attr-defined]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()
        ) or not 0 < value <= 99999999:
            raise query_failure(
                frame, field, f"The {field} field must be a positive integer, but was: {to_json(value)}", after_entered=True
            )
        return int(value)

    async def attempt(self, frame: Frame, raw: Any, effective: Any) -> tuple[Any, str | None]:
        parameters = self.flow.arguments(frame, effective)
        timeout = self._seconds(frame, effective, self.timeout_seconds, self.timeout_path, "TimeoutSecondsPath")
        heartbeat = self._seconds(frame, effective, self.heartbeat_seconds, self.heartbeat_path, "HeartbeatSecondsPath")
        result = await self.invoke(frame, parameters, timeout, heartbeat)
        return self.finish(frame, raw, result)

    async def invoke(self, frame: Frame, parameters: Any, timeout: Any, heartbeat: Any) -> Any:
        info = self.info
        rt = self._rt
        if self.is_lambda_arn:
            details: dict[str, Any] = {"input": parameters, "resource": info.arn}
            if timeout is not None:
                details["timeoutInSeconds"] = timeout
            if heartbeat is not None:
                details["heartbeatInSeconds"] = heartbeat
            frame.event("LambdaFunctionScheduled", details)
            if frame.parent is not None:
                await asyncio.sleep(0)  # concurrent iterations interleave as on AWS
            frame.event("LambdaFunctionStarted")
        else:
            details = {"parameters": parameters, "region": frame.execution.region, **rt}
            if timeout is not None:
                details["timeoutInSeconds"] = timeout
            if heartbeat is not None:
                details["heartbeatInSeconds"] = heartbeat
            frame.event("TaskScheduled", details)
            if frame.parent is not None:
                await asyncio.sleep(0)  # concurrent iterations interleave as on AWS
            frame.event("TaskStarted", rt)

        execution = frame.execution
        heartbeat_timer = _Timeout() if heartbeat is not None else None

        context = TaskContext(
            resource=info,
            state_name=self.name,
            execution_arn=execution.arn,
            execution_name=execution.name,
            state_machine_arn=execution.state_machine_arn,
            clock=frame.clock,
            rng=frame.rng,
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
            try:
                # Step the runner once before arming any timer: a runner that ends
                # without suspending took no time, so no timeout can apply to it.
                suspended_on = coro.send(None)
            except StopIteration as done:
                result = done.value
            else:
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
            frame.event("LambdaFunctionSucceeded", {"output": result})
        else:
            if self.is_sync:
                frame.event("TaskSubmitted", {"output": result, **rt})
            frame.event("TaskSucceeded", {"output": result, **rt})
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


# -- Parallel and Map ----------------------------------------------------------


class ParallelState(Retrying):
    type = "Parallel"
    failed_event = "ParallelStateFailed"

    def __init__(self, name: str, raw: dict[str, Any], language: str, flow: DataFlow,
                 catch_compiler: Callable[[dict, int], CatchClause], branches: list[Program]) -> None:
        super().__init__(name, raw, language, flow, catch_compiler)
        self.branches = branches

    async def attempt(self, frame: Frame, raw: Any, effective: Any) -> tuple[Any, str | None]:
        branch_input = self.flow.arguments(frame, effective)
        frame.event("ParallelStateStarted")
        results = await frame.run_children(
            [(branch, branch_input, None) for branch in self.branches], max_concurrency=0
        )
        # AWS chains the Exited event to the same event as ParallelStateSucceeded.
        before = frame.last_event
        frame.event("ParallelStateSucceeded")
        frame.last_event = before
        return self.finish(frame, raw, results)


class MapState(Retrying):
    """Inline and Distributed Map: items from the input (or an ItemReader), an
    ItemSelector and ItemBatcher per item, one child run per item."""

    type = "Map"
    failed_event = "MapStateFailed"

    def __init__(self, name: str, raw: dict[str, Any], language: str, flow: DataFlow,
                 catch_compiler: Callable[[dict, int], CatchClause], processor: Program) -> None:
        super().__init__(name, raw, language, flow, catch_compiler)
        self.processor = processor
        config = (raw.get("ItemProcessor") or raw.get("Iterator") or {}).get("ProcessorConfig") or {}
        self.distributed = config.get("Mode") == "DISTRIBUTED"
        self.label = raw.get("Label")
        self.items_path = ValuePath(raw["ItemsPath"]) if "ItemsPath" in raw else None
        selector = raw.get("ItemSelector", raw.get("Parameters", ABSENT))
        if self.jsonata:
            self.item_selector: Any = flow.fields.get("ItemSelector")  # type: ignore[attr-defined]
        else:
            self.item_selector = None if selector is ABSENT else compile_template(selector, "ItemSelector")
        self.item_reader = ItemReader(raw["ItemReader"], language) if "ItemReader" in raw else None
        self.item_batcher = ItemBatcher(raw["ItemBatcher"], language) if "ItemBatcher" in raw else None
        self.result_writer = raw.get("ResultWriter")
        self.max_concurrency = raw.get("MaxConcurrency", 0)
        self.max_concurrency_path = ValuePath(raw["MaxConcurrencyPath"]) if "MaxConcurrencyPath" in raw else None
        self.tolerated_count = raw.get("ToleratedFailureCount")
        self.tolerated_count_path = (
            ValuePath(raw["ToleratedFailureCountPath"]) if "ToleratedFailureCountPath" in raw else None
        )
        self.tolerated_percentage = raw.get("ToleratedFailurePercentage")
        self.tolerated_percentage_path = (
            ValuePath(raw["ToleratedFailurePercentagePath"]) if "ToleratedFailurePercentagePath" in raw else None
        )
        self.has_tolerance = any(
            k in raw for k in ("ToleratedFailureCount", "ToleratedFailureCountPath",
                               "ToleratedFailurePercentage", "ToleratedFailurePercentagePath")
        )

    # -- the Map state's own parameters, each from a literal, a path or an expression
    def _jsonata_number(self, frame: Frame, raw: Any, key: str, integer: bool) -> Any:
        from .jsonata_flow import query_failure

        flow = self.flow
        if key not in flow.fields:  # type: ignore[attr-defined]
            return None
        value = flow.field(frame, key, raw)  # type: ignore[attr-defined]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not float(value).is_integer()):
            kind = "integer" if integer else "number"
            raise query_failure(
                frame, key,
                f"The {key} field must evaluate to a non-negative {kind}, but was: {to_json(value)}",
            )
        return int(value) if integer else value

    def concurrency(self, frame: Frame, effective: Any) -> int:
        if self.jsonata:
            value = self._jsonata_number(frame, effective, "MaxConcurrency", True)
            return value or 0
        path = self.max_concurrency_path
        if path is None:
            return int(self.max_concurrency or 0)
        value = _as_integer(path.require(effective, frame))
        if isinstance(value, bool) or not isinstance(value, int):
            raise RuntimeFailure(
                f"The MaxConcurrencyPath field refers to value {_quoted(value)} which is not a valid integer: {path.text}"
            )
        if value < 0:
            raise RuntimeFailure(f"The MaxConcurrencyPath field refers to a negative value: {path.text}")
        return value

    def tolerance(self, frame: Frame, effective: Any, total: int) -> int:
        """How many failed iterations the Map tolerates (AWS: count or percentage, whichever allows more)."""
        count, percentage = self.tolerance_settings(frame, effective)
        allowed = 0
        if count is not None:
            allowed = max(allowed, count)
        if percentage is not None:
            allowed = max(allowed, math.floor(total * percentage / 100))
        return allowed

    def tolerance_settings(self, frame: Frame, effective: Any) -> tuple[int | None, float | None]:
        if self.jsonata:
            count = self._jsonata_number(frame, effective, "ToleratedFailureCount", True)
            percentage = self._jsonata_number(frame, effective, "ToleratedFailurePercentage", False)
        else:
            count = self.tolerated_count
            if self.tolerated_count_path is not None:
                path = self.tolerated_count_path
                count = _as_integer(path.require(effective, frame))
                if isinstance(count, bool) or not isinstance(count, int):
                    raise RuntimeFailure(
                        f"The ToleratedFailureCountPath field refers to value {_quoted(count)} which is not a valid integer: {path.text}"
                    )
            percentage = self.tolerated_percentage
            if self.tolerated_percentage_path is not None:
                path = self.tolerated_percentage_path
                percentage = _as_number(path.require(effective, frame))
                if isinstance(percentage, bool) or not isinstance(percentage, (int, float)):
                    raise RuntimeFailure(
                        f"The ToleratedFailurePercentagePath field refers to value {_quoted(percentage)} which is not a valid float: {path.text}"
                    )
        if count is not None and count < 0:
            raise RuntimeFailure("ToleratedFailureCount cannot be negative.")
        if percentage is not None and not 0 <= percentage <= 100:
            raise RuntimeFailure("ToleratedFailurePercentage must be between 0 and 100.")
        return count, percentage

    # -- items
    def items(self, frame: Frame, raw: Any, effective: Any) -> list[Any]:
        """The items to iterate over (before any ItemReader, ItemSelector or ItemBatcher)."""
        if self.jsonata:
            from .jsonata_flow import describe_type, query_failure

            flow = self.flow
            if "Items" in flow.fields:  # type: ignore[attr-defined]
                template = flow.fields["Items"]  # type: ignore[attr-defined]
                items = template.evaluate(frame, flow.states(frame, raw))  # type: ignore[attr-defined]
                if not isinstance(items, list):
                    shown = template.expression_text
                    raise query_failure(
                        frame, "Items",
                        f"The JSONata expression '{shown}' specified for the field 'Items' returned an unexpected "
                        f"result type. Expected 'array', but was '{describe_type(items)}' for value: {to_json(items)}"
                        if shown is not None else
                        f"The field 'Items' must be an array, but was '{describe_type(items)}' for value: {to_json(items)}",
                    )
                return items
            if not isinstance(raw, list):
                raise query_failure(frame, None, f"Map state input must be an array but was: {to_json(raw)}")
            return raw
        if self.items_path is None:
            items = effective
        else:
            items = self.items_path.require(effective, frame)
        if not isinstance(items, list):
            # AWS names the path without the context object's extra "$" ("$$.x" -> "$.x").
            text = self.items_path.text if self.items_path is not None else "$"
            shown = text[1:] if text.startswith("$$") else text
            raise RuntimeFailure(f'Reference path "{shown}" must point to array.')
        return items

    def select(self, frame: Frame, raw: Any, effective: Any, index: int, item: Any) -> Any:
        """One item's input to its iteration (the ItemSelector, with ``$$.Map.Item``)."""
        selector = self.item_selector
        if selector is None:
            return item
        frame.map_item = (index, item)
        frame.invalidate_context()
        try:
            if self.jsonata:
                return selector.evaluate(frame, self.flow.states(frame, raw))  # type: ignore[attr-defined]
            return selector.evaluate(effective, frame)
        finally:
            frame.map_item = None
            frame.invalidate_context()

    async def attempt(self, frame: Frame, raw: Any, effective: Any) -> tuple[Any, str | None]:
        if self.item_reader is not None:
            items = await self.item_reader.read(frame, raw, effective, self.flow)
        else:
            items = self.items(frame, raw, effective)
        inputs = [self.select(frame, raw, effective, index, item) for index, item in enumerate(items)]
        if self.item_batcher is not None:
            inputs = self.item_batcher.batches(frame, raw, effective, self.flow, inputs)
        children = [(self.processor, value, index) for index, value in enumerate(inputs)]
        concurrency = self.concurrency(frame, effective)
        frame.event("MapStateStarted", {"length": len(children)})
        tolerated = self.tolerance(frame, effective, len(children))
        if self.distributed:
            results = await self._run_distributed(frame, children, concurrency, tolerated)
        else:
            results = await frame.run_children(
                children, max_concurrency=concurrency, map_name=self.name, tolerated_failures=tolerated,
            )
        if self.result_writer is not None:
            results = await write_results(frame, self, raw, effective, results)
        # AWS chains the Exited event to the same event as MapStateSucceeded.
        before = frame.last_event
        frame.event("MapStateSucceeded")
        frame.last_event = before
        return self.finish(frame, raw, results)

    async def _run_distributed(self, frame: Frame, children: list, concurrency: int, tolerated: int) -> list[Any]:
        execution = frame.execution
        run_arn = (
            f"{execution.state_machine_arn.replace(':stateMachine:', ':mapRun:')}/{self.label or self.name}:"
            f"{uuid.UUID(int=frame.rng.getrandbits(128), version=4)}"
        )
        started = frame.event("MapRunStarted", {"mapRunArn": run_arn})
        try:
            results = await frame.run_children(
                children, max_concurrency=concurrency, tolerated_failures=tolerated, record_events=False,
                threshold_error=True,
            )
        except StatesError:
            frame.last_event = started
            frame.event("MapRunFailed")
            raise
        frame.last_event = started
        frame.event("MapRunSucceeded")
        return results


# -- compilation ---------------------------------------------------------------


def compile_state(
    name: str,
    raw: dict[str, Any],
    language: str,
    compile_program: Callable[[dict[str, Any], str], Program],
) -> State:
    """Build the runtime object of one validated state."""
    kind = raw["Type"]
    if language == "JSONata":
        from .jsonata_flow import JsonataFlow, compile_jsonata_catch

        flow: DataFlow = JsonataFlow(raw, kind)
        catch_compiler = compile_jsonata_catch
    else:
        flow = JsonPathFlow(raw)
        catch_compiler = _compile_jsonpath_catch
    if kind == "Pass":
        return PassState(name, raw, language, flow)
    if kind == "Succeed":
        return SucceedState(name, raw, language, flow)
    if kind == "Fail":
        return FailState(name, raw, language, flow)
    if kind == "Choice":
        return ChoiceState(name, raw, language, flow)
    if kind == "Wait":
        return WaitState(name, raw, language, flow)
    if kind == "Task":
        return TaskState(name, raw, language, flow, catch_compiler)
    if kind == "Parallel":
        return ParallelState(name, raw, language, flow, catch_compiler,
                             [compile_program(b, language) for b in raw["Branches"]])
    if kind == "Map":
        processor = raw.get("ItemProcessor") or raw.get("Iterator")
        return MapState(name, raw, language, flow, catch_compiler, compile_program(processor, language))
    raise ValueError(f"unknown state type {kind!r}")  # pragma: no cover - validated before


def _compile_jsonpath_catch(raw: dict[str, Any], index: int) -> CatchClause:
    from .jsonpath import compile_reference_path

    if "ResultPath" in raw:
        rp = raw["ResultPath"]
        result_path = None if rp is None else compile_reference_path(rp)
    else:
        result_path = ABSENT
    assign = compile_template(raw["Assign"], "Assign") if "Assign" in raw else None
    return CatchClause(Catcher(tuple(raw["ErrorEquals"]), raw["Next"], index), result_path, ABSENT, assign)

