"""Data flow through a state: how input becomes arguments and a result becomes output.

JSONPath mode, in AWS's order::

    raw input -> InputPath -> Parameters -> (task) -> ResultSelector -> ResultPath -> OutputPath

JSONata mode (:mod:`ceap_engine.asl.jsonata_flow`) replaces the five fields with
``Arguments`` and ``Output``. Both implement :class:`DataFlow`, so a state's
behaviour does not depend on its query language.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .frame import Frame
from .jsonpath import PathNotFound, compile_reference_path, set_path
from .payload import RuntimeFailure, Template, ValuePath, compile_template, payload_size, to_json
from .retry import Catcher

__all__ = ["ABSENT", "CatchClause", "DataFlow", "JsonPathFlow"]


class _Absent:
    __repr__ = lambda self: "ABSENT"  # noqa: E731


#: A field that is not in the definition (distinct from a field set to null).
ABSENT: Any = _Absent()


@dataclass(frozen=True, slots=True)
class CatchClause:
    """A compiled catcher: where to go and how to shape the error output."""

    catcher: Catcher
    result_path: Any  # compiled reference path, None, or ABSENT
    output: Any = ABSENT  # JSONata Output
    assign: Any = None


class DataFlow:
    """The query-language-specific parts of a state's processing."""

    def effective_input(self, frame: Frame, raw: Any) -> Any:
        """The input the state works on (JSONPath: after InputPath)."""
        raise NotImplementedError

    def arguments(self, frame: Frame, effective: Any) -> Any:
        """What is sent to the task / used as result (Parameters or Arguments)."""
        raise NotImplementedError

    def output(self, frame: Frame, raw: Any, result: Any) -> Any:
        """The state's output from its raw input and its result."""
        raise NotImplementedError

    def output_assigning(self, frame: Frame, raw: Any, result: Any, assign: Any) -> Any:
        """:meth:`output`, with the variables a compiled ``Assign`` sets put in ``frame.pending_assign``."""
        raise NotImplementedError

    def error_output(self, frame: Frame, raw: Any, catcher: Any, error_object: dict) -> Any:
        """A caught error's output (Catch ResultPath / Output)."""
        raise NotImplementedError

    def compile_assign(self, source: Any) -> Any:
        """Compile an ``Assign`` object (of the state, a Choice rule or a catcher)."""
        raise NotImplementedError

    def assign(self, frame: Frame, raw: Any, result: Any, assign: Any) -> dict[str, Any]:
        """The variables a compiled ``Assign`` sets, from the state's input and result."""
        raise NotImplementedError

    def assign_error(self, frame: Frame, raw: Any, error_object: dict, assign: Any) -> dict[str, Any]:
        """The variables a catcher's compiled ``Assign`` sets, from the error output."""
        raise NotImplementedError

    def filter_output(self, frame: Frame, effective: Any) -> Any:
        """The output of a state without a result (Choice, Wait, Succeed)."""
        raise NotImplementedError

    def passthrough_bound(self, frame: Frame) -> int:
        """An upper bound of the size of :meth:`filter_output`'s value; -1 if unknown."""
        return -1


def _path_or_absent(state: dict, key: str) -> ValuePath | None | Any:
    if key not in state:
        return ABSENT
    value = state[key]
    if value is None:
        return None
    return ValuePath(value)


class JsonPathFlow(DataFlow):
    """InputPath, Parameters, ResultSelector, ResultPath, OutputPath."""

    __slots__ = ("_places_only", "identity", "input_path", "output_path", "parameters", "result_path", "result_selector")

    def __init__(self, state: dict[str, Any], parameters_field: str = "Parameters") -> None:
        self.input_path = _path_or_absent(state, "InputPath")
        self.output_path = _path_or_absent(state, "OutputPath")
        params = state.get(parameters_field, ABSENT)
        self.parameters: Template | None = None if params is ABSENT else compile_template(params, parameters_field)
        sel = state.get("ResultSelector", ABSENT)
        self.result_selector: Template | None = None if sel is ABSENT else compile_template(sel, "ResultSelector")
        if "ResultPath" in state:
            rp = state["ResultPath"]
            self.result_path = None if rp is None else compile_reference_path(rp)
        else:
            self.result_path = ABSENT  # default "$": the result replaces the input
        self._places_only = self.result_selector is None and self.output_path is ABSENT
        #: No path field and no Parameters: a state's output is its input or its result as it is.
        self.identity = (self._places_only and self.input_path is ABSENT and self.parameters is None
                         and self.result_path is ABSENT)

    # -- input side -------------------------------------------------------
    def effective_input(self, frame: Frame, raw: Any) -> Any:
        ip = self.input_path
        if ip is ABSENT:
            return raw
        if ip is None:
            return {}
        try:
            return ip.resolve(raw, frame)
        except PathNotFound as exc:
            raise RuntimeFailure(_missing_text(ip, exc)) from None

    def arguments(self, frame: Frame, effective: Any) -> Any:
        if self.parameters is None:
            return effective
        return self.parameters.evaluate(effective, frame)

    # -- output side ------------------------------------------------------
    def select(self, frame: Frame, result: Any) -> Any:
        if self.result_selector is None:
            return result
        return self.result_selector.evaluate(result, frame)

    def place(self, raw: Any, result: Any) -> Any:
        rp = self.result_path
        if rp is ABSENT:
            return result
        if rp is None:
            return raw
        return set_path(raw, rp, result)

    def filter_output(self, frame: Frame, value: Any) -> Any:
        op = self.output_path
        if op is ABSENT:
            return value
        if op is None:
            return {}
        try:
            return op.resolve(value, frame)
        except PathNotFound as exc:
            raise RuntimeFailure(_missing_text(op, exc)) from None

    def output(self, frame: Frame, raw: Any, result: Any) -> Any:
        if self._places_only:
            # No ResultSelector and no OutputPath (most states): ResultPath alone, and its bound.
            rp = self.result_path
            if rp is ABSENT:
                if frame.result_size >= 0:
                    frame.output_bound = frame.result_size
                elif result is raw:  # the input passed on as it is (a Pass without Result or Parameters)
                    frame.output_bound = frame.size_bound
                else:
                    frame.output_bound = payload_size(result)
                return result
            if rp is None:
                frame.output_bound = frame.size_bound
                return raw
            output = set_path(raw, rp, result)
            if frame.size_bound < 0:
                frame.output_bound = -1
            else:
                size = frame.result_size if frame.result_size >= 0 else payload_size(result)
                frame.output_bound = frame.size_bound + size + 6 * len(rp.text) + 16
            return output
        selected = self.select(frame, result)
        output = self.filter_output(frame, self.place(raw, selected))
        frame.output_bound = self._output_bound(frame, selected, result)
        return output

    def output_assigning(self, frame: Frame, raw: Any, result: Any, assign: Template) -> Any:
        # Assign reads the result after ResultSelector and before ResultPath, as AWS orders them.
        selected = self.select(frame, result)
        frame.pending_assign = assign.evaluate(selected, frame)
        output = self.filter_output(frame, self.place(raw, selected))
        frame.output_bound = self._output_bound(frame, selected, result)
        return output

    # -- size bounds ---------------------------------------------------------
    # Every state's output is checked against the 256 KiB limit. Serialising it
    # each time would cost more than the rest of the state; instead a cheap
    # upper bound of its size is derived from the input's and the result's, and
    # only an output whose bound passes the limit is measured exactly.

    def _output_bound(self, frame: Frame, selected: Any, result: Any) -> int:
        rp = self.result_path
        if rp is None:
            bound = frame.size_bound
        else:
            selected_size = -1
            if frame.result_size >= 0:
                if selected is result:
                    selected_size = frame.result_size
                elif self.result_selector is not None:
                    selected_size = self.result_selector.size_bound(frame.result_size)
            if selected_size < 0:
                selected_size = payload_size(selected)
            if rp is ABSENT:
                bound = selected_size
            elif frame.size_bound < 0:
                return -1
            else:
                # The new keys along the path, quoted and escaped at worst, plus braces.
                bound = frame.size_bound + selected_size + 6 * len(rp.text) + 16
        return self._filtered_bound(bound, self.output_path)

    @staticmethod
    def _filtered_bound(bound: int, path: Any) -> int:
        """The bound after InputPath/OutputPath: a definite path into the value selects a part of it."""
        if path is ABSENT:
            return bound
        if path is None:
            return 2
        return bound if path.kind == "input" and path.path.is_definite else -1

    def passthrough_bound(self, frame: Frame) -> int:
        """Bound of ``OutputPath(InputPath(raw))`` (Choice, Wait)."""
        if frame.size_bound < 0:
            return -1
        bound = self._filtered_bound(frame.size_bound, self.input_path)
        return self._filtered_bound(bound, self.output_path) if bound >= 0 else -1

    def compile_assign(self, source: Any) -> Template:
        return compile_template(source, "Assign")

    def assign(self, frame: Frame, raw: Any, result: Any, assign: Template) -> dict[str, Any]:
        # JSONPath Assign: "$" is the state's result (the effective input for
        # states without one); "$$" the context object; "$name" a variable.
        return assign.evaluate(result, frame)

    def assign_error(self, frame: Frame, raw: Any, error_object: dict, assign: Template) -> dict[str, Any]:
        return assign.evaluate(error_object, frame)

    def error_output(self, frame: Frame, raw: Any, catcher: Any, error_object: dict) -> Any:
        rp = catcher.result_path
        if rp is ABSENT:
            return error_object
        if rp is None:
            return raw
        return set_path(raw, rp, error_object)


def _missing_text(vp: ValuePath, error: PathNotFound) -> str:
    return error.invalid_path_cause(vp.text)


def describe(value: Any) -> str:
    return to_json(value)
