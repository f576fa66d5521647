"""Compiled states of every kind; :func:`compile_state` builds one from its definition.

Example::

    state = compile_state("P", {"Type": "Pass", "End": True}, "JSONPath", compile_program)
    output, next_name = await state.run(frame, {"a": 1})
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..flow import ABSENT, CatchClause, DataFlow, JsonPathFlow
from ..frame import Program
from ..jsonata_flow import JsonataFlow, compile_jsonata_catch
from ..jsonpath import compile_reference_path
from ..payload import compile_template
from ..retry import Catcher
from .base import Retrying, State, Terminal
from .fanout import MapState, ParallelState
from .simple import ChoiceState, FailState, PassState, SucceedState, WaitState
from .task import TaskState

__all__ = [
    "ChoiceState", "FailState", "MapState", "ParallelState", "PassState", "Retrying", "State",
    "SucceedState", "TaskState", "Terminal", "WaitState", "compile_state",
]


def compile_state(
    name: str,
    raw: dict[str, Any],
    language: str,
    compile_program: Callable[[dict[str, Any], str], Program],
) -> State:
    """Build the runtime object of one validated state."""
    kind = raw["Type"]
    if language == "JSONata":
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
    if "ResultPath" in raw:
        rp = raw["ResultPath"]
        result_path = None if rp is None else compile_reference_path(rp)
    else:
        result_path = ABSENT
    assign = compile_template(raw["Assign"], "Assign") if "Assign" in raw else None
    return CatchClause(Catcher(tuple(raw["ErrorEquals"]), raw["Next"], index), result_path, ABSENT, assign)

