"""A local TestState: run one state as AWS's TestState API does, and answer in its shape.

A request has the API's fields (``definition`` of one state, or of a whole
machine with ``stateName``; ``input``, ``inspectionLevel``, ``revealSecrets``,
``variables``, ``context``, ``mock`` and ``stateConfiguration``). The answer
has ``status`` (SUCCEEDED, FAILED, RETRIABLE or CAUGHT_ERROR), ``output``,
``error``, ``cause``, ``nextState`` and, at DEBUG and TRACE, ``inspectionData``
with the value after each step of the state's data flow. JSON values are JSON
text, as the API sends them. A request AWS would refuse raises
:class:`TestStateRejected` with AWS's code and message.

Example::

    answer = await run_test_state(TestStateRequest.from_api({
        "definition": {"Type": "Pass", "Result": {"ok": True}, "End": True},
        "input": {"orderId": 7},
        "inspectionLevel": "DEBUG",
    }))
    answer["status"], json.loads(answer["output"])   # ('SUCCEEDED', {'ok': True})

The run uses a virtual clock: a Task's Retry is reported (RETRIABLE, with the
backoff AWS would wait), never waited for.
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

from ceap_engine.asl.definition import compile_definition
from ceap_engine.asl.flow import ABSENT
from ceap_engine.asl.history import iso_timestamp
from ceap_engine.asl.interpreter import EXPRESS, Engine, Execution, Frame
from ceap_engine.asl.payload import RuntimeFailure
from ceap_engine.asl.retry import decide, find_catcher
from ceap_engine.asl.states import MapState, ParallelState, State, TaskState, Terminal
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.runtime.tasks import TaskRunners

from .mock_results import ServiceModels
from .teststate_request import (
    TESTED_STATE_NAME,
    TestStateRejected,
    TestStateRequest,
    check_mock,
    check_request,
    json_value,
)

__all__ = [
    "ServiceModels",
    "TestStateRejected",
    "TestStateRequest",
    "run_test_state",
]









# -- mock result schema validation ---------------------------------------------------














# -- the run ------------------------------------------------------------------------------


class _TestFrame(Frame):
    """A frame whose context object is the request's (or TestState's generated one)."""

    __slots__ = ("base_context",)
    #: The request's context object replaces the execution's: no shortcut to it.
    context_is_execution = False

    def context(self) -> dict[str, Any]:
        ctx = self.base_context
        if self.map_item is not None:
            ctx = dict(ctx)
            ctx["Map"] = {"Item": {"Index": self.map_item[0], "Value": self.map_item[1]}}
        return ctx






class _Answer(Exception):
    """Ends a test run with its answer (status, output, error...)."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__(answer.get("status"))
        self.answer = answer


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class _StateTest:
    def __init__(self, request: TestStateRequest, state: State, frame: _TestFrame, raw: Any,
                 mock: dict[str, Any] | None, mock_result: Any, models: ServiceModels | None) -> None:
        self.request = request
        self.state = state
        self.frame = frame
        self.raw = raw
        self.mock = mock
        self.mock_result = mock_result
        self.models = models
        self.inspect = request.inspection_level != "INFO"
        self.data: dict[str, Any] = {}
        self.config = request.state_configuration

    def record(self, key: str, value: Any) -> None:
        if self.inspect:
            self.data[key] = value

    # -- answers
    def answer(self, status: str, **fields: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("output", "error", "cause", "nextState"):
            value = fields.get(key, ABSENT)
            if value is ABSENT or (value is None and key != "output"):
                continue
            out[key] = _text(value) if key == "output" else value
        out["status"] = status
        variables = self.request.variables
        assigned = fields.get("assigned")
        if assigned:
            variables = {**(variables or {}), **assigned}
        if variables:
            self.record("variables", variables)
        if self.inspect and self.data:
            out["inspectionData"] = {
                k: (v if k in ("errorDetails", "maxConcurrency", "toleratedFailureCount", "toleratedFailurePercentage")
                    else _text(v))
                for k, v in self.data.items()
            }
        return out

    def failed(self, err: Exception) -> dict[str, Any]:
        if isinstance(err, RuntimeFailure):
            return self.answer("FAILED", error=err.error, cause=err.message)
        message = getattr(err, "message", None)
        if message is not None and getattr(err, "error", None) == "States.QueryEvaluationError":
            return self.answer("FAILED", error=err.error, cause=message)  # type: ignore[attr-defined]
        return self.answer("FAILED", error=err.error, cause=err.cause)  # type: ignore[attr-defined]

    # -- error handling (Task, Map, Parallel): what a Retry and a Catch would do
    def handle_error(self, err: Exception) -> dict[str, Any]:
        from ceap_engine.errors import StatesError

        if isinstance(err, (RuntimeFailure, Terminal)) or not isinstance(err, StatesError):
            return self.failed(err)
        state = self.state
        details: dict[str, Any] = {}
        retriers = getattr(state, "retriers", ())
        if retriers:
            count = int(self.config.get("retrierRetryCount", 0) or 0)
            decision = decide(retriers, [count] * len(retriers), err.error, self.frame.rng)
            if decision.retrier_index is not None:
                details["retryIndex"] = decision.retrier_index
            if decision.retry:
                delay = decision.delay
                details["retryBackoffIntervalSeconds"] = int(delay) if float(delay).is_integer() else delay
                self.record("errorDetails", details)
                return self.answer("RETRIABLE", error=err.error, cause=err.cause)
        clause = None
        catchers = getattr(state, "catchers", ())
        if catchers:
            plain = find_catcher(tuple(c.catcher for c in catchers), err.error)
            clause = None if plain is None else catchers[plain.index]
        if clause is None:
            if details:
                self.record("errorDetails", details)
            return self.answer("FAILED", error=err.error, cause=err.cause)
        details["catchIndex"] = clause.catcher.index
        self.record("errorDetails", details)
        output, target = state.caught(self.frame, self.raw, clause, err)  # type: ignore[attr-defined]
        return self.answer("CAUGHT_ERROR", output=output, error=err.error, cause=err.cause, nextState=target,
                           assigned=self.frame.pending_assign)

    # -- per state type
    async def run(self) -> dict[str, Any]:
        kind = self.state.type
        self.record("input", self.raw)
        try:
            return await getattr(self, f"run_{kind.lower()}")()
        except _Answer as done:
            return done.answer

    def _finish_success(self, output: Any, next_state: str | None) -> dict[str, Any]:
        return self.answer("SUCCEEDED", output=output, nextState=next_state, assigned=self.frame.pending_assign)

    async def run_pass(self) -> dict[str, Any]:
        state, frame, raw, flow = self.state, self.frame, self.raw, self.state.flow
        try:
            if state.jsonata:
                return self._finish_success(*state.finish(frame, raw, raw))
            if state.has_result:  # type: ignore[attr-defined]
                result = state.result  # type: ignore[attr-defined]
                self.record("result", result)
            else:
                effective = flow.effective_input(frame, raw)
                self.record("afterInputPath", effective)
                result = flow.arguments(frame, effective)
                self.record("afterParameters", result)
            return self._finish_success(*self._jsonpath_output(result))
        except Exception as err:  # noqa: BLE001 - any failure of the state is its answer
            return self._state_failure(err)

    def _jsonpath_output(self, result: Any) -> tuple[Any, str | None]:
        state, frame, flow = self.state, self.frame, self.state.flow
        selected = flow.select(frame, result)  # type: ignore[attr-defined]
        self.record("afterResultSelector", selected)
        if state.assign is not None:
            frame.pending_assign = flow.assign(frame, self.raw, selected, state.assign)
        placed = flow.place(self.raw, selected)  # type: ignore[attr-defined]
        self.record("afterResultPath", placed)
        return flow.filter_output(frame, placed), state.next

    def _state_failure(self, err: Exception) -> dict[str, Any]:
        from ceap_engine.errors import StatesError

        if isinstance(err, (RuntimeFailure, StatesError)):
            return self.failed(err)
        raise err

    async def run_succeed(self) -> dict[str, Any]:
        try:
            effective = self._effective()
            return self.answer("SUCCEEDED", output=self.state.flow.filter_output(self.frame, effective))
        except Exception as err:  # noqa: BLE001
            return self._state_failure(err)

    def _effective(self) -> Any:
        effective = self.state.flow.effective_input(self.frame, self.raw)
        if not self.state.jsonata:
            self.record("afterInputPath", effective)
        return effective

    async def run_fail(self) -> dict[str, Any]:
        try:
            if not self.state.jsonata:
                self.record("afterInputPath", self.state.flow.effective_input(self.frame, self.raw))
            await self.state.run(self.frame, self.raw)
        except Exception as err:  # noqa: BLE001
            return self._state_failure(err)
        raise AssertionError("a Fail state always fails")  # pragma: no cover

    async def run_choice(self) -> dict[str, Any]:
        try:
            self._effective()
            output, target = await self.state.run(self.frame, self.raw)
            return self._finish_success(output, target)
        except Exception as err:  # noqa: BLE001
            return self._state_failure(err)

    async def run_wait(self) -> dict[str, Any]:
        state = self.state
        try:
            effective = self._effective()
            state.wait_seconds(self.frame, effective)  # type: ignore[attr-defined]  # checked, not waited for
            flow = state.flow
            if state.assign is not None:
                self.frame.pending_assign = flow.assign(self.frame, self.raw, effective, state.assign)
            return self._finish_success(flow.filter_output(self.frame, effective), state.next)
        except Exception as err:  # noqa: BLE001
            return self._state_failure(err)

    async def run_task(self) -> dict[str, Any]:
        state: TaskState = self.state  # type: ignore[assignment]
        frame, raw, flow = self.frame, self.raw, state.flow
        try:
            effective = flow.effective_input(frame, raw)
            if not state.jsonata:
                self.record("afterInputPath", effective)
            parameters = flow.arguments(frame, effective)
            self.record("afterArguments" if state.jsonata else "afterParameters", parameters)
        except Exception as err:  # noqa: BLE001
            return self._state_failure(err)
        try:
            if self.mock is not None:
                result = self._mocked()
            else:
                timeout = state._seconds(frame, effective, state.timeout_seconds, state.timeout_path, "TimeoutSecondsPath")
                heartbeat = state._seconds(frame, effective, state.heartbeat_seconds, state.heartbeat_path,
                                           "HeartbeatSecondsPath")
                result = await state.invoke(frame, parameters, timeout, heartbeat)
        except Exception as err:  # noqa: BLE001
            return self.handle_error(err)
        self.record("result", result)
        return self._result_output(result)

    def _mocked(self) -> Any:
        from ceap_engine.errors import StatesError

        mock = self.mock or {}
        if "errorOutput" in mock:
            error = mock["errorOutput"] or {}
            raise StatesError(error.get("error", "States.TaskFailed"), error.get("cause"))
        return self.mock_result

    def _result_output(self, result: Any) -> dict[str, Any]:
        state, frame = self.state, self.frame
        try:
            if state.jsonata:
                return self._finish_success(*state.finish(frame, self.raw, result))
            return self._finish_success(*self._jsonpath_output(result))
        except Exception as err:  # noqa: BLE001
            return self._state_failure(err)

    async def run_parallel(self) -> dict[str, Any]:
        state: ParallelState = self.state  # type: ignore[assignment]
        try:
            state.flow.arguments(self.frame, state.flow.effective_input(self.frame, self.raw))
            result = self._mocked()
        except Exception as err:  # noqa: BLE001
            return self.handle_error(err)
        return self._result_output(result)

    async def run_map(self) -> dict[str, Any]:
        state: MapState = self.state  # type: ignore[assignment]
        frame, raw, flow = self.frame, self.raw, state.flow
        try:
            effective = flow.effective_input(frame, raw)
            if not state.jsonata:
                self.record("afterInputPath", effective)
            reader_data = self.config.get("mapItemReaderData")
            if reader_data is not None:
                items = json_value(reader_data, "mapItemReaderData")
                if not isinstance(items, list):
                    raise RuntimeFailure("The mapItemReaderData must be a JSON array of items")
            elif state.item_reader is not None:
                items = await state.item_reader.read(frame, raw, effective, flow)
            else:
                items = state.items(frame, raw, effective)
            if not state.jsonata and state.item_reader is None:
                self.record("afterItemsPath", items)
            if state.item_selector is not None:
                selected = [state.select(frame, raw, effective, i, item) for i, item in enumerate(items)]
                self.record("afterItemSelector", selected)
            else:
                selected = items
            concurrency = state.concurrency(frame, effective)
            self.record("maxConcurrency", concurrency)
            count, percentage = state.tolerance_settings(frame, effective)
            if count is not None:
                self.record("toleratedFailureCount", count)
            if percentage is not None:
                self.record("toleratedFailurePercentage", percentage)
        except Exception as err:  # noqa: BLE001
            return self._state_failure(err)
        try:
            failures = self.config.get("mapIterationFailureCount")
            if failures is not None and failures > len(selected):
                raise TestStateRejected(
                    "Map iteration failure count must be less than or equal to the number of Map iterations"
                )
            result = self._mocked()
            if failures and state.has_tolerance:
                allowed = state.tolerance(frame, effective, len(selected))
                if failures > allowed:
                    from ceap_engine.errors import StatesError

                    raise StatesError("States.ExceedToleratedFailureThreshold",
                                      "The specified tolerated failure threshold was exceeded")
        except TestStateRejected:
            raise
        except Exception as err:  # noqa: BLE001
            return self.handle_error(err)
        return self._result_output(result)






async def run_test_state(
    request: TestStateRequest,
    *,
    runners: TaskRunners | None = None,
    models: ServiceModels | None = None,
    clock: VirtualClock | None = None,
    seed: int | None = None,
    region: str = "us-east-1",
    account: str = "123456789012",
) -> dict[str, Any]:
    """Test one state; return the TestState API's answer, or raise :class:`TestStateRejected`.

    ``runners`` serve a Task without a mock (Lambda handlers registered
    locally); ``models`` check mocked results (``mock.fieldValidationMode``).
    """
    machine, name, raw_state = check_request(request)
    mock_result = check_mock(request, raw_state, models)
    compiled = compile_definition(machine)
    state = compiled.states[name]
    rng = random.Random(seed)
    engine = Engine(clock=clock or VirtualClock(), runners=runners or TaskRunners(), seed=seed, region=region,
                    account=account, role_arn=request.role_arn or "")
    machine_name = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    execution_name = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    execution = Execution(engine, compiled, request.input, name=execution_name, state_machine_name=machine_name,
                          input_text=None, execution_type=EXPRESS)
    activity = engine.clock.activity()
    with activity:
        frame = _TestFrame(execution, None, activity, 0)
        frame.state = state
        frame.entered_time = engine.clock.time()
        frame.retry_count = int(request.state_configuration.get("retrierRetryCount", 0) or 0)
        execution.history.add("ExecutionStarted", 0, {"input": request.input, "roleArn": request.role_arn})
        frame.entered_event = frame.event(state.entered_type, {"input": request.input, "name": state.name})
        if request.variables:
            frame.variables.update(request.variables)
        if request.context is not None:
            frame.base_context = request.context
        else:
            state_ctx: dict[str, Any] = {"Name": TESTED_STATE_NAME, "EnteredTime": iso_timestamp(frame.entered_time)}
            if state.has_retry_count:
                state_ctx["RetryCount"] = frame.retry_count
            frame.base_context = {
                "Execution": {"Id": execution.arn, "Input": request.input, "Name": execution_name,
                              "RoleArn": request.role_arn, "StartTime": iso_timestamp(execution.start_time)},
                "StateMachine": {"Id": execution.state_machine_arn, "Name": machine_name},
                "State": state_ctx,
            }
        test = _StateTest(request, state, frame, request.input, request.mock, mock_result, models)
        return await test.run()
