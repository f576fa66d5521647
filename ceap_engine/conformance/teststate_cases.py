"""Replay of TestState calls recorded on AWS: each request on the local TestState, compared with AWS's answer."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ceap_engine.conformance.recorded import REPLAY_START, maybe_json, short, values_match
from ceap_engine.conformance.teststate import TestStateRejected, TestStateRequest, run_test_state
from ceap_engine.runtime.clock import VirtualClock

__all__ = ["TestStateCase", "TestStateReport", "compare_test_state", "load_test_state_cases", "replay_test_state"]


@dataclass
class TestStateCase:
    """A recorded TestState API call: the request as sent and AWS's answer (or refusal)."""

    __test__ = False  # not a pytest test class

    id: str
    path: Path
    request: dict[str, Any]
    expected: dict[str, Any]
    features: list[str] = field(default_factory=list)


@dataclass
class TestStateReport:
    __test__ = False  # not a pytest test class

    case: TestStateCase
    passed: bool
    diff: str | None = None


def load_test_state_cases(root: Path | str) -> list[TestStateCase]:
    """Every case under ``root/test_state`` (sorted by file name)."""
    folder = Path(root) / "test_state"
    if not folder.is_dir():
        return []
    cases = []
    for path in sorted(folder.glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        cases.append(TestStateCase(raw["id"], path, raw["request"], raw["expected"], raw.get("features", [])))
    return cases


_ANSWER_TEXT_FIELDS = ("output",)


_INSPECTION_TEXT_FIELDS = ("input", "afterInputPath", "afterParameters", "result", "afterResultSelector",
                           "afterResultPath", "afterArguments", "afterItemsPath", "afterItemSelector", "variables")


def compare_test_state(expected: dict[str, Any], answer: dict[str, Any]) -> str | None:
    """None when our answer matches AWS's recorded one (JSON text compared as values, masks as wildcards)."""
    if "exception" in expected:
        exp = expected["exception"]
        got = answer.get("exception")
        if got is None:
            return f"expected {exp['code']}: {short(exp['message'])}, got status {answer.get('status')}"
        if got["code"] != exp["code"] or not values_match(exp["message"], got["message"]):
            return f"exception {got['code']}: {short(got['message'])} != expected {exp['code']}: {short(exp['message'])}"
        return None
    if "exception" in answer:
        got = answer["exception"]
        return f"refused with {got['code']}: {short(got['message'])}; expected status {expected.get('status')}"
    if expected.keys() != answer.keys():
        return f"fields {sorted(answer)} != expected {sorted(expected)}"
    for key, value in expected.items():
        ours = answer[key]
        if key == "inspectionData":
            if value.keys() != ours.keys():
                return f"inspectionData fields {sorted(ours)} != expected {sorted(value)}"
            for k, v in value.items():
                got = maybe_json(ours[k]) if k in _INSPECTION_TEXT_FIELDS else ours[k]
                if not values_match(v, got):
                    return f"inspectionData.{k} {short(got)} != expected {short(v)}"
            continue
        got = maybe_json(ours) if key in _ANSWER_TEXT_FIELDS else ours
        if not values_match(value, got):
            return f"{key} {short(got)} != expected {short(value)}"
    return None


async def replay_test_state(cases: Iterable[TestStateCase], *, models: Any = None) -> list[TestStateReport]:
    """Run each recorded request on the local TestState and compare with AWS's answer."""
    reports = []
    for case in cases:
        try:
            try:
                request = TestStateRequest.from_api(case.request)
                answer = await run_test_state(request, models=models, clock=VirtualClock(start=REPLAY_START), seed=0,
                                              account="111111111111")
            except TestStateRejected as rejected:
                answer = rejected.to_json()
        except Exception as exc:  # noqa: BLE001 - a crash is a reported failure, not an abort of the run
            reports.append(TestStateReport(case, False, f"{type(exc).__name__}: {exc}"))
            continue
        diff = compare_test_state(case.expected, answer)
        reports.append(TestStateReport(case, diff is None, diff))
    return reports
