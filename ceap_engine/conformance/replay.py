"""Replay executions and TestState calls recorded on real AWS Step Functions and compare.

A corpus case (see ``tests/conformance/data/README.md``) holds a definition,
an input, the Lambda handlers it calls (as source text) and what AWS
returned: status, output or error/cause, and the full history. :func:`run_case`
runs it on this interpreter; :func:`compare` checks three levels, each on its own:

1. ``outcome`` - status, then output (SUCCEEDED) or error and cause (FAILED);
2. ``event_types`` - the sequence of event types;
3. ``event_details`` - ids, previous ids and every details object.

A TestState case (``test_state/``) is a request and AWS's answer;
:func:`replay_test_state` runs it on :mod:`ceap_engine.conformance.teststate`.
:func:`run_conformance` does both for a corpus folder and returns the
:class:`ConformanceReport` that ``ceap asl conformance`` prints.

Mask tokens in the recording (``<uuid:1>``, ``<ArnPart_0idx>``, ``date``...) are
wildcards.

Example::

    report = asyncio.run(run_conformance("tests/conformance/data"))
    report.to_json()["levels"]["outcome"]   # {"passed": ..., "applicable": ...}
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import json
import linecache
import time as _real_time
import types
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ceap_engine.asl.definition import load_definition
from ceap_engine.asl.interpreter import Engine, ExecutionResult
from ceap_engine.conformance.recorded import MASK_TOKEN, REPLAY_START, short, text_match, values_match
from ceap_engine.conformance.teststate_cases import (
    TestStateCase,
    TestStateReport,
    compare_test_state,
    load_test_state_cases,
    replay_test_state,
)
from ceap_engine.errors import CeapError
from ceap_engine.runtime.clock import VirtualClock, _current_activity
from ceap_engine.runtime.tasks import LambdaFunctions, TaskRunners

__all__ = [
    "Case",
    "CaseReport",
    "ConformanceReport",
    "TestStateCase",
    "TestStateReport",
    "compare",
    "compare_test_state",
    "load_cases",
    "load_test_state_cases",
    "replay",
    "replay_test_state",
    "run_case",
    "run_conformance",
    "values_match",
]

LEVELS = ("outcome", "event_types", "event_details")


@dataclass
class Case:
    id: str
    category: str
    path: Path
    definition: dict[str, Any]
    input: Any
    expected: dict[str, Any]
    features: list[str]
    lambdas: list[dict[str, Any]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def error_handling(self) -> bool:
        return "Retry" in self.features or "Catch" in self.features

    @property
    def needs_recorded_day(self) -> str | None:
        """Why the case depends on the day it was recorded, or None.

        Such a case waits until a timestamp the test computed from the clock
        when it was recorded; the recording keeps only the mask token
        (``<timestamp>``), so the wait cannot be replayed.
        """
        if not _reads_timestamp(self.definition):
            return None
        if _has_mask_token(self.input):
            return ("Wait until a timestamp computed from the day the case was recorded; "
                    "the recorded input holds only the mask token, so the wait cannot be replayed")
        return None


def _reads_timestamp(machine: Any) -> bool:
    for state in (machine.get("States") or {}).values() if isinstance(machine, dict) else ():
        if not isinstance(state, dict):
            continue
        if state.get("Type") == "Wait" and ("Timestamp" in state or "TimestampPath" in state):
            return True
        for branch in state.get("Branches") or []:
            if _reads_timestamp(branch):
                return True
        for key in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(key), dict) and _reads_timestamp(state[key]):
                return True
    return False


def _has_mask_token(value: Any) -> bool:
    if isinstance(value, str):
        return MASK_TOKEN.fullmatch(value) is not None
    if isinstance(value, dict):
        return any(_has_mask_token(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_mask_token(v) for v in value)
    return False


def load_cases(root: Path | str) -> list[Case]:
    """Every case under ``root/cases`` (sorted by category and name)."""
    root = Path(root)
    cases_dir = root / "cases" if (root / "cases").is_dir() else root
    if not cases_dir.is_dir():
        raise CeapError(f"no corpus at {root}: expected a folder with cases/<category>/<case>.json")
    cases = []
    for path in sorted(cases_dir.glob("*/*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        cases.append(Case(
            id=raw["id"],
            category=raw.get("category", path.parent.name),
            path=path,
            definition=raw["definition"],
            input=raw.get("input", {}),
            expected=raw["expected"],
            features=raw.get("features", []),
            lambdas=raw.get("lambdas") or [],
            raw=raw,
        ))
    return cases


# -- Lambda test doubles ---------------------------------------------------------


class _VirtualTimeModule(types.ModuleType):
    """``time`` for recorded handlers: ``time.sleep`` waits on the virtual clock."""

    def __init__(self, sleep: Any) -> None:
        super().__init__("time")
        self.__dict__.update({k: getattr(_real_time, k) for k in dir(_real_time) if not k.startswith("__")})
        self.sleep = sleep


class _HandlerRuntime:
    """Runs recorded handler source in worker threads; their sleeps are virtual."""

    def __init__(self, clock: VirtualClock, loop: asyncio.AbstractEventLoop) -> None:
        self.clock = clock
        self.loop = loop
        self.pending: set[concurrent.futures.Future] = set()

    def sleep_from_thread(self, seconds: float) -> None:
        activity = _current_activity.get()

        async def sleep() -> None:
            _current_activity.set(activity)
            await self.clock.sleep(seconds)

        future = asyncio.run_coroutine_threadsafe(sleep(), self.loop)
        self.pending.add(future)
        try:
            future.result()
        finally:
            self.pending.discard(future)

    def load(self, source: str) -> Any:
        namespace: dict[str, Any] = {"__name__": "handler"}
        filename = "/var/task/handler.py"
        # Tracebacks quote the handler's lines, as the Lambda runtime's do.
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - recorded test doubles
        if "time" in namespace:
            namespace["time"] = _VirtualTimeModule(self.sleep_from_thread)
        handler = namespace["handler"]
        runtime = self

        async def run(event: Any, context: Any) -> Any:
            ctx = contextvars.copy_context()
            future = runtime.loop.run_in_executor(None, ctx.run, handler, event, context)
            try:
                return await future
            except asyncio.CancelledError:
                for pending in list(runtime.pending):
                    pending.cancel()
                raise

        return run


# -- running -------------------------------------------------------------------


async def run_case(case: Case, *, seed: int = 0) -> ExecutionResult:
    """Run one case on a fresh engine with a virtual clock."""
    clock = VirtualClock(start=REPLAY_START)
    runners = TaskRunners()
    functions = runners.register_lambda(LambdaFunctions(region="us-east-1", account="111111111111"))
    runtime = _HandlerRuntime(clock, asyncio.get_running_loop())
    for spec in case.lambdas:
        functions.register(spec["function_name"], runtime.load(spec["handler_source"]))
    engine = Engine(clock=clock, runners=runners, seed=seed, region="us-east-1", account="111111111111",
                    role_arn="snf_role_arn")
    machine = load_definition(case.definition)
    return await engine.execute(machine, case.input, state_machine_name="StateMachine", check_resources=False)


# -- comparing -----------------------------------------------------------------










@dataclass
class CaseReport:
    case: Case
    status: str | None
    levels: dict[str, bool]
    diffs: dict[str, str]
    error: str | None = None




def _outcome(case: Case, result: ExecutionResult) -> str | None:
    exp = case.expected
    if result.status != exp["status"]:
        return f"status {result.status} (error={result.error!r}, cause={short(result.cause)}) != expected {exp['status']}"
    if exp["status"] == "SUCCEEDED":
        if not text_match(exp.get("output"), result.output):
            return f"output {short(result.output)} != expected {short(exp.get('output'))}"
        return None
    if not values_match(exp.get("error"), result.error):
        return f"error {result.error!r} != expected {exp.get('error')!r}"
    expected_cause = exp.get("cause")
    if expected_cause is not None or result.cause is not None:
        if not text_match(expected_cause, result.cause):
            return f"cause {short(result.cause)} != expected {short(expected_cause)}"
    return None


def _aligned(expected: list[dict], actual: list[dict]) -> list[dict]:
    """Our events that the recording kept.

    The recording drops some events of Parallel branches (their ids are
    masked as ``[0]`` or missing): keep only ours whose position matches a
    recorded numeric id, plus as many unnumbered ones as were recorded.
    """
    numbered = [e["id"] for e in expected if isinstance(e.get("id"), int)]
    if not numbered or numbered == list(range(1, len(expected) + 1)):
        return actual
    keep_ids = set(numbered)
    out = []
    for e in actual:
        if e["id"] in keep_ids:
            out.append(e)
    # Unnumbered recorded events: match by type, in order, among the rest.
    rest = [e for e in actual if e["id"] not in keep_ids]
    wanted = [e["type"] for e in expected if not isinstance(e.get("id"), int)]
    picked: list[dict] = []
    for t in wanted:
        for i, e in enumerate(rest):
            if e["type"] == t:
                picked.append(rest.pop(i))
                break
    merged = sorted(out + picked, key=lambda e: e["id"])
    return merged


def _event_types(case: Case, events: list[dict]) -> str | None:
    expected = case.expected["events"]
    ours = _aligned(expected, events)
    exp_types = [e["type"] for e in expected]
    got = [e["type"] for e in ours]
    if _has_unordered(expected):
        if sorted(exp_types) == sorted(got):
            return None
    elif exp_types == got:
        return None
    for i, (a, b) in enumerate(zip(exp_types, got, strict=False)):
        if a != b:
            return f"event {i + 1}: {b} != expected {a} (expected {len(exp_types)} events, got {len(got)})"
    return f"expected {len(exp_types)} events, got {len(got)}: ...{got[len(exp_types):][:3] or exp_types[len(got):][:3]}"


def _has_unordered(expected: list[dict]) -> bool:
    return any(not isinstance(e.get("id"), int) for e in expected)


def _details_of(event: dict) -> dict:
    return {k: v for k, v in event.items() if k not in ("type", "id", "previousEventId", "timestamp")}


def _event_details(case: Case, events: list[dict]) -> str | None:
    expected = case.expected["events"]
    ours = _aligned(expected, events)
    if len(ours) != len(expected):
        return f"expected {len(expected)} events, got {len(ours)}"
    unordered = _has_unordered(expected)
    for exp, got in zip(expected, ours, strict=True):
        if isinstance(exp.get("id"), int) and not unordered:
            if exp["id"] != got["id"] or exp["previousEventId"] != got["previousEventId"]:
                return (f"event {exp['id']} {exp['type']}: id/previous {got['id']}/{got['previousEventId']} "
                        f"!= expected {exp['id']}/{exp['previousEventId']}")
        if unordered and not isinstance(exp.get("id"), int):
            continue
        ed, gd = _details_of(exp), _details_of(got)
        if ed.keys() != gd.keys():
            return f"event {exp.get('id')} {exp['type']}: detail keys {sorted(gd)} != expected {sorted(ed)}"
        for key, value in ed.items():
            if not isinstance(value, dict):
                if not text_match(value, gd[key]):
                    return f"event {exp.get('id')} {exp['type']}: {key} {short(gd[key])} != expected {short(value)}"
                continue
            if value.keys() != gd[key].keys():
                return f"event {exp.get('id')} {exp['type']}: {key} fields {sorted(gd[key])} != expected {sorted(value)}"
            for k, v in value.items():
                if k == "assignedVariables" and isinstance(v, dict) and isinstance(gd[key][k], dict):
                    # Each variable's value is JSON text; the recording parsed the ones that were objects.
                    ours = gd[key][k]
                    if v.keys() != ours.keys() or not all(text_match(v[n], ours[n]) for n in v):
                        return f"event {exp.get('id')} {exp['type']}: {key}.{k} {short(ours)} != expected {short(v)}"
                    continue
                if not text_match(v, gd[key][k]):
                    return f"event {exp.get('id')} {exp['type']}: {key}.{k} {short(gd[key][k])} != expected {short(v)}"
    return None


def compare(case: Case, result: ExecutionResult) -> CaseReport:
    events = result.history.to_aws() if result.history is not None else []
    diffs = {}
    for level, check in (("outcome", lambda: _outcome(case, result)),
                         ("event_types", lambda: _event_types(case, events)),
                         ("event_details", lambda: _event_details(case, events))):
        diff = check()
        if diff is not None:
            diffs[level] = diff
    return CaseReport(case, result.status, {lvl: lvl not in diffs for lvl in LEVELS}, diffs)


async def replay(cases: Iterable[Case], *, timeout: float = 20.0) -> list[CaseReport]:
    """Run and compare cases one after another; a crash or hang is a failure of all levels."""
    reports = []
    for case in cases:
        try:
            result = await asyncio.wait_for(run_case(case), timeout)
        except Exception as exc:  # noqa: BLE001 - any crash is a reported failure, not an abort of the run
            msg = f"{type(exc).__name__}: {exc}"
            reports.append(CaseReport(case, None, dict.fromkeys(LEVELS, False), dict.fromkeys(LEVELS, msg), msg))
            continue
        reports.append(compare(case, result))
    return reports


# -- TestState cases ---------------------------------------------------------------














# -- the report ------------------------------------------------------------------------

#: The category that gathers every case tagged Retry or Catch (the error-handling target).
ERROR_HANDLING = "error handling"


@dataclass
class ConformanceReport:
    """Results of a corpus run; :meth:`to_json` is ``ceap asl conformance --format json``."""

    cases: list[CaseReport]
    not_applicable: list[tuple[Case, str]]
    test_state: list[TestStateReport]

    def _levels(self, reports: Iterable[CaseReport]) -> dict[str, dict[str, int]]:
        reports = list(reports)
        return {lvl: {"passed": sum(r.levels[lvl] for r in reports), "applicable": len(reports)} for lvl in LEVELS}

    def categories(self) -> dict[str, list[CaseReport]]:
        groups: dict[str, list[CaseReport]] = {}
        for r in self.cases:
            groups.setdefault(r.case.category, []).append(r)
        groups = dict(sorted(groups.items()))
        groups[ERROR_HANDLING] = [r for r in self.cases if r.case.error_handling]
        return groups

    def to_json(self) -> dict[str, Any]:
        failures = [
            {"id": r.case.id, "level": lvl, "diff": r.diffs[lvl]}
            for r in self.cases for lvl in LEVELS if not r.levels[lvl]
        ]
        return {
            "levels": self._levels(self.cases),
            "categories": {name: self._levels(group) for name, group in self.categories().items()},
            "not_applicable": [{"id": case.id, "reason": reason} for case, reason in self.not_applicable],
            "failures": failures,
            "test_state": {
                "passed": sum(r.passed for r in self.test_state),
                "applicable": len(self.test_state),
                "failures": [{"id": r.case.id, "diff": r.diff} for r in self.test_state if not r.passed],
            },
        }

    def to_text(self) -> str:
        """A table per category and in total, then the cases that are not applicable and the failures."""
        data = self.to_json()
        lines = [f"{'category':<24}{'outcome':>12}{'event types':>14}{'event details':>16}"]

        def row(name: str, levels: dict[str, dict[str, int]]) -> str:
            cells = [f"{levels[lvl]['passed']}/{levels[lvl]['applicable']}" for lvl in LEVELS]
            return f"{name:<24}{cells[0]:>12}{cells[1]:>14}{cells[2]:>16}"

        for name, levels in data["categories"].items():
            lines.append(row(name, levels))
        lines.append(row("total", data["levels"]))
        ts = data["test_state"]
        lines.append(f"{'TestState':<24}{ts['passed']}/{ts['applicable']:<}")
        if data["not_applicable"]:
            lines.append("")
            lines.append(f"not applicable ({len(data['not_applicable'])}):")
            lines.extend(f"  {item['id']}: {item['reason']}" for item in data["not_applicable"])
        if data["failures"] or ts["failures"]:
            lines.append("")
            lines.append("failures:")
            lines.extend(f"  [{item['level']}] {item['id']}: {item['diff']}" for item in data["failures"])
            lines.extend(f"  [test_state] {item['id']}: {item['diff']}" for item in ts["failures"])
        return "\n".join(lines)


async def run_conformance(root: Path | str, *, models: Any = None, timeout: float = 20.0) -> ConformanceReport:
    """Replay every case of a corpus (``cases/`` and ``test_state/``) and compare with AWS.

    Example::

        report = asyncio.run(run_conformance("tests/conformance/data"))
        report.to_json()["levels"]["outcome"]   # {"passed": ..., "applicable": ...}
    """
    cases = load_cases(root)
    applicable = [c for c in cases if c.needs_recorded_day is None]
    not_applicable = [(c, c.needs_recorded_day) for c in cases if c.needs_recorded_day is not None]
    reports = await replay(applicable, timeout=timeout)
    test_state = await replay_test_state(load_test_state_cases(root), models=models)
    return ConformanceReport(reports, not_applicable, test_state)  # type: ignore[arg-type]
