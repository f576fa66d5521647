"""The states that do their work in one step: Pass, Succeed, Fail, Choice and Wait.

Example::

    state = compile_state("P", {"Type": "Pass", "Result": 1, "End": True}, "JSONPath", compile_program)
"""

from __future__ import annotations

from typing import Any

from ...errors import StatesError
from ..choice import compile_rule, parse_timestamp
from ..flow import DataFlow
from ..frame import Frame
from ..jsonata_flow import JsonataTemplate, describe_type, query_failure
from ..jsonpath import PathNotFound
from ..payload import RuntimeFailure, ValuePath, compile_dynamic, payload_size, to_json
from .base import State

__all__ = ["ChoiceState", "FailState", "MAX_WAIT_SECONDS", "PassState", "SucceedState", "WaitState"]

#: The longest Wait AWS accepts (2^31 - 1 seconds, about 68 years).
MAX_WAIT_SECONDS = 2**31 - 1


class PassState(State):
    type = "Pass"
    sync = True

    def __init__(self, name: str, raw: dict[str, Any], language: str, flow: DataFlow) -> None:
        super().__init__(name, raw, language, flow)
        self.has_result = "Result" in raw
        self.result = raw.get("Result")
        # A static Result's size, so the output's size bound costs no serialisation.
        self.result_size = payload_size(self.result) if self.has_result else -1
        if not self.has_result and self.assign is None and getattr(flow, "identity", False):
            self.step = self._pass_on  # type: ignore[method-assign]

    def _pass_on(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
        """:meth:`step` of a Pass with no Result, Assign, Parameters or path field: the input goes on as it is."""
        frame.output_bound = frame.size_bound  # what DataFlow.output bounds it by
        return raw, self.next

    def step(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
        flow = self.flow
        effective = flow.effective_input(frame, raw)
        if self.has_result:
            frame.result_size = self.result_size
            return self.finish(frame, raw, self.result)
        return self.finish(frame, raw, flow.arguments(frame, effective))


class SucceedState(State):
    type = "Succeed"
    sync = True

    def step(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
        flow = self.flow
        effective = flow.effective_input(frame, raw)
        return flow.output(frame, raw, effective), None


class FailState(State):
    type = "Fail"
    writes_exit_event = False
    sync = True

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

    def step(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
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
    sync = True

    def __init__(self, name: str, raw: dict[str, Any], language: str, flow: DataFlow) -> None:
        super().__init__(name, raw, language, flow)
        self.default = raw.get("Default")
        # (predicate, next, the rule's own Assign, the rule's own Output)
        self.rules: list[tuple[Any, str, Any, Any]] = []
        for rule in raw["Choices"]:
            assign = flow.compile_assign(rule["Assign"]) if "Assign" in rule else None
            if self.jsonata:
                output = JsonataTemplate(rule["Output"], "Output") if "Output" in rule else None
                self.rules.append((JsonataTemplate(rule["Condition"], "Condition"), rule["Next"], assign, output))
            else:
                self.rules.append((compile_rule(rule), rule["Next"], assign, None))

    def step(self, frame: Frame, raw: Any) -> tuple[Any, str | None]:
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

