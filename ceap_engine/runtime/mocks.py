"""Mocked Task responses in AWS Step Functions Local's MockConfigFile format.

::

    {
      "StateMachines": {"Orders": {"TestCases": {"RetryPath": {"Score": "ScoreFailsTwice"}}}},
      "MockedResponses": {
        "ScoreFailsTwice": {
          "0-1": {"Throw": {"Error": "Lambda.TooManyRequestsException", "Cause": "slow down"}},
          "2": {"Return": {"StatusCode": 200, "Payload": {"ok": true}}}
        }
      }
    }

The n-th invocation of a mocked state (0-based, retries included) uses the
entry whose key ("n" or a range "a-b") covers n. ``Return`` is the task's
result exactly as written (for ``lambda:invoke`` that is the whole Invoke
response, ``Payload`` included); ``Throw`` fails the task with that Error and
Cause, so Retry and Catch apply.

Example::

    mocks = MockConfig.load(Path("MockConfigFile.json")).test_case("Orders", "RetryPath")
    result = await engine.execute(machine, input, mocks=mocks)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceap_engine.asl.states import Terminal
from ceap_engine.errors import InputError, Problem
from ceap_engine.ports import TaskContext
from ceap_engine.runtime.tasks import TaskFailed

__all__ = ["MockConfig", "MockedResponse", "TestCaseMocks"]

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


@dataclass(frozen=True)
class MockedResponse:
    """One entry: a result to return or an error to throw."""

    returns: Any = None
    throws: tuple[str, str | None] | None = None

    async def respond(self, context: TaskContext) -> Any:
        if self.throws is not None:
            raise TaskFailed(self.throws[0], self.throws[1])
        return self.returns


@dataclass(frozen=True)
class _Entries:
    name: str
    ranges: tuple[tuple[int, int, MockedResponse], ...]

    def at(self, attempt: int) -> MockedResponse | None:
        for low, high, response in self.ranges:
            if low <= attempt <= high:
                return response
        return None


class TestCaseMocks:
    """The mocks of one test case: state name -> its numbered responses."""

    __test__ = False  # not a pytest test class

    def __init__(self, state_machine: str, test_case: str, states: dict[str, _Entries]) -> None:
        self.state_machine = state_machine
        self.test_case = test_case
        self.states = states

    def covers(self, state_name: str) -> bool:
        return state_name in self.states

    def response_for(self, state_name: str, attempt: int) -> MockedResponse | None:
        entries = self.states.get(state_name)
        if entries is None:
            return None
        response = entries.at(attempt)
        if response is None:
            last = max(high for _, high, _ in entries.ranges)
            raise Terminal(
                "States.Runtime",
                f"The mocked response '{entries.name}' of state '{state_name}' (test case '{self.test_case}') has no "
                f"entry for invocation {attempt}; it covers invocations 0-{last}. Add an entry \"{attempt}\" "
                f"or widen a range such as \"{last}-{attempt}\".",
            )
        return response


class MockConfig:
    """A parsed MockConfigFile; :meth:`test_case` selects the mocks of one run."""

    def __init__(self, document: dict[str, Any]) -> None:
        problems = _problems(document)
        if problems:
            raise InputError(problems, "mock config")
        self.document = document
        self.responses = {
            name: _parse_entries(name, entries) for name, entries in document.get("MockedResponses", {}).items()
        }

    @classmethod
    def load(cls, path: Path | str) -> MockConfig:
        path = Path(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError([Problem("/", f"mock config file not found: {path}")], "mock config") from None
        except json.JSONDecodeError as exc:
            raise InputError([Problem("/", f"{path} is not valid JSON: {exc}")], "mock config") from None
        return cls(document)

    def test_case(self, state_machine: str, test_case: str) -> TestCaseMocks:
        machines = self.document.get("StateMachines", {})
        if state_machine not in machines:
            raise InputError(
                [Problem("/StateMachines", f"no state machine '{state_machine}' in the mock config "
                         f"(it has: {', '.join(machines) or 'none'}); pass --state-machine-name")],
                "mock config",
            )
        cases = machines[state_machine].get("TestCases", {})
        if test_case not in cases:
            raise InputError(
                [Problem(f"/StateMachines/{state_machine}/TestCases",
                         f"no test case '{test_case}' (it has: {', '.join(cases) or 'none'})")],
                "mock config",
            )
        states = {state: self.responses[response] for state, response in cases[test_case].items()}
        return TestCaseMocks(state_machine, test_case, states)


def _parse_entries(name: str, entries: dict[str, Any]) -> _Entries:
    ranges = []
    for key, entry in entries.items():
        m = _RANGE.match(key)
        assert m is not None  # validated
        low = int(m.group(1))
        high = int(m.group(2)) if m.group(2) else low
        if "Return" in entry:
            response = MockedResponse(returns=entry["Return"])
        else:
            throw = entry["Throw"]
            response = MockedResponse(throws=(throw["Error"], throw.get("Cause")))
        ranges.append((low, high, response))
    ranges.sort(key=lambda r: r[0])
    return _Entries(name, tuple(ranges))


def _problems(document: Any) -> list[Problem]:
    if not isinstance(document, dict):
        return [Problem("/", "a mock config is a JSON object with 'StateMachines' and 'MockedResponses'")]
    out: list[Problem] = []
    for key in document:
        if key not in ("StateMachines", "MockedResponses"):
            out.append(Problem(f"/{key}", f"unknown field '{key}' (expected StateMachines, MockedResponses)"))
    responses = document.get("MockedResponses", {})
    if not isinstance(responses, dict):
        return out + [Problem("/MockedResponses", "must be an object of named responses")]
    for name, entries in responses.items():
        at = f"/MockedResponses/{name}"
        if not isinstance(entries, dict) or not entries:
            out.append(Problem(at, "must be a non-empty object of numbered entries such as \"0\" or \"1-2\""))
            continue
        covered: list[tuple[int, int]] = []
        for key, entry in entries.items():
            where = f"{at}/{key}"
            m = _RANGE.match(key)
            if not m:
                out.append(Problem(where, f"entry key {key!r} must be an invocation number \"n\" or a range \"a-b\""))
                continue
            low, high = int(m.group(1)), int(m.group(2) or m.group(1))
            if high < low:
                out.append(Problem(where, f"range {key!r} ends before it starts"))
            if any(not (high < a or low > b) for a, b in covered):
                out.append(Problem(where, f"range {key!r} overlaps another entry"))
            covered.append((low, high))
            if not isinstance(entry, dict) or len([k for k in ("Return", "Throw") if k in entry]) != 1:
                out.append(Problem(where, "an entry has exactly one of 'Return' or 'Throw'"))
                continue
            if "Throw" in entry:
                throw = entry["Throw"]
                if not isinstance(throw, dict) or not isinstance(throw.get("Error"), str):
                    out.append(Problem(f"{where}/Throw", "'Throw' needs a string 'Error' (and an optional 'Cause')"))
    machines = document.get("StateMachines", {})
    if not isinstance(machines, dict):
        return out + [Problem("/StateMachines", "must be an object of state machines")]
    for sm, body in machines.items():
        cases = body.get("TestCases") if isinstance(body, dict) else None
        if not isinstance(cases, dict):
            out.append(Problem(f"/StateMachines/{sm}", "needs a 'TestCases' object"))
            continue
        for case, states in cases.items():
            if not isinstance(states, dict):
                out.append(Problem(f"/StateMachines/{sm}/TestCases/{case}", "must map state names to mocked response names"))
                continue
            for state, response in states.items():
                if response not in responses:
                    out.append(Problem(
                        f"/StateMachines/{sm}/TestCases/{case}/{state}",
                        f"mocked response '{response}' is not defined in MockedResponses",
                    ))
    return out
