"""Parse and validate an ASL definition; compile it into runnable states.

:func:`~ceap_engine.asl.validation.validate_definition` collects *every*
problem with its JSON pointer; :func:`load_definition` raises
:class:`~ceap_engine.errors.DefinitionError` with all of them or returns a
compiled :class:`StateMachine`.

Example::

    sm = load_definition({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": True}}})
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from typing import Any

from ceap_engine.ports import ResourceInfo
from ceap_engine.runtime.tasks import parse_resource

from ..errors import DefinitionError, Problem
from .frame import Program
from .states import compile_state
from .validation import validate_definition

__all__ = ["Program", "StateMachine", "compile_definition", "load_definition", "validate_definition"]


@dataclass
class StateMachine(Program):
    """A validated, compiled definition, ready for any number of executions."""

    definition: dict[str, Any] = field(default_factory=dict)
    timeout_seconds: int | None = None

    @functools.cached_property
    def task_infos(self) -> tuple[tuple[str, str, ResourceInfo | None], ...]:
        """Every Task resource, parsed once: (JSON pointer, resource, info)."""
        return tuple((where, resource, parse_resource(resource)) for where, resource in self.task_resources())

    @functools.cached_property
    def express_problems(self) -> tuple[Problem, ...]:
        """Why this machine cannot run as an EXPRESS workflow (integration patterns it lacks)."""
        return tuple(
            Problem(
                where,
                f"Express workflows do not support the '.{info.pattern}' integration pattern ({resource}); "
                "use a Standard workflow (--type standard)",
                "SCHEMA_VALIDATION_FAILED",
            )
            for where, resource, info in self.task_infos
            if info is not None and info.pattern in ("sync", "sync:2", "waitForTaskToken")
        )

    def task_resources(self) -> list[tuple[str, str]]:
        """Every Task resource, with the JSON pointer of its state."""
        out: list[tuple[str, str]] = []

        def walk(machine: dict[str, Any], at: str) -> None:
            for name, state in machine.get("States", {}).items():
                here = f"{at}/States/{name}"
                if state.get("Type") == "Task":
                    out.append((here + "/Resource", state.get("Resource")))
                for i, branch in enumerate(state.get("Branches") or []):
                    walk(branch, f"{here}/Branches/{i}")
                for key in ("ItemProcessor", "Iterator"):
                    if isinstance(state.get(key), dict):
                        walk(state[key], f"{here}/{key}")

        walk(self.definition, "")
        return out

    @property
    def json(self) -> str:
        return json.dumps(self.definition, indent=2)


def _compile_program(machine: dict[str, Any], parent_language: str) -> Program:
    language = machine.get("QueryLanguage", parent_language)
    states = {
        name: compile_state(name, raw, raw.get("QueryLanguage", language), _compile_program)
        for name, raw in machine["States"].items()
    }
    return Program(machine["StartAt"], states, language)


def compile_definition(definition: dict[str, Any]) -> StateMachine:
    """Compile a definition the caller has validated (``validate_definition``) into a StateMachine."""
    program = _compile_program(definition, "JSONPath")
    return StateMachine(program.start_at, program.states, program.language, definition, definition.get("TimeoutSeconds"))


def load_definition(definition: Any) -> StateMachine:
    """Validate and compile a definition (dict or JSON text); raise DefinitionError with every problem."""
    if isinstance(definition, (str, bytes)):
        try:
            definition = json.loads(definition)
        except json.JSONDecodeError as exc:
            raise DefinitionError([Problem("/", f"The definition is not valid JSON: {exc}", "INVALID_JSON_DESCRIPTION")]) from None
        except RecursionError:
            raise DefinitionError(validate_definition(definition)) from None
    problems = validate_definition(definition)
    if problems:
        raise DefinitionError(problems)
    program = _compile_program(definition, "JSONPath")
    return StateMachine(program.start_at, program.states, program.language, definition, definition.get("TimeoutSeconds"))
