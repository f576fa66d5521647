"""The recorded AWS corpus, replayed: the issue's targets and every case's result.

The corpus (``data/``, Apache-2.0, see ``data/NOTICE``) is run once per test
session. Every case passes at every level except the known divergences listed
with their reasons in ``known_divergences.json`` (and in docs/conformance.md);
a known divergence that starts to pass fails its test too, so the list stays
true.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from ceap_engine.conformance.replay import (
    ERROR_HANDLING,
    LEVELS,
    ConformanceReport,
    load_cases,
    load_test_state_cases,
    run_conformance,
)
from ceap_engine.conformance.teststate import ServiceModels

DATA = Path(__file__).parent / "data"
KNOWN = json.loads((Path(__file__).parent / "known_divergences.json").read_text(encoding="utf-8"))
CASES = load_cases(DATA)
TEST_STATE_CASES = load_test_state_cases(DATA)


@pytest.fixture(scope="module")
def report() -> ConformanceReport:
    started = time.perf_counter()
    result = asyncio.run(run_conformance(DATA, models=ServiceModels.from_botocore()))
    result.seconds = time.perf_counter() - started  # type: ignore[attr-defined]
    return result


@pytest.fixture(scope="module")
def by_id(report: ConformanceReport) -> dict:
    return {r.case.id: r for r in report.cases}


def test_corpus_is_complete():
    assert len(CASES) == 509 and len(TEST_STATE_CASES) == 200
    assert (DATA / "NOTICE").is_file() and (DATA / "README.md").is_file()


def test_replay_of_the_whole_corpus_is_fast(report):
    assert report.seconds < 30  # type: ignore[attr-defined]


def test_only_day_dependent_cases_are_not_applicable(report):
    assert report.not_applicable, "the corpus has Wait cases that depend on the day they were recorded"
    for case, reason in report.not_applicable:
        assert "Wait" in case.features and reason
        assert "<timestamp>" in json.dumps(case.input)


@pytest.mark.parametrize("level", ["outcome", "event_types"])
def test_at_least_95_percent_of_applicable_cases_at_levels_1_and_2(report, level):
    counts = report.to_json()["levels"][level]
    assert counts["applicable"] == len(CASES) - len(report.not_applicable)
    assert counts["passed"] / counts["applicable"] >= 0.95


def test_every_error_handling_case_passes_at_levels_1_and_2(report):
    counts = report.to_json()["categories"][ERROR_HANDLING]
    assert counts["outcome"]["applicable"] > 30
    for level in ("outcome", "event_types"):
        assert counts[level]["passed"] == counts[level]["applicable"], level


def test_at_least_90_percent_of_test_state_cases(report):
    counts = report.to_json()["test_state"]
    assert counts["applicable"] == 200 and counts["passed"] / counts["applicable"] >= 0.90


def test_json_report_has_the_documented_shape(report):
    data = report.to_json()
    assert set(data) == {"levels", "categories", "not_applicable", "failures", "test_state"}
    assert set(data["levels"]) == set(LEVELS)
    for levels in data["categories"].values():
        assert all(set(levels[lvl]) == {"passed", "applicable"} for lvl in LEVELS)
    for failure in data["failures"]:
        assert set(failure) == {"id", "level", "diff"} and failure["diff"]
    assert all(set(item) == {"id", "reason"} for item in data["not_applicable"])


@pytest.mark.parametrize("case", [c for c in CASES if c.needs_recorded_day is None], ids=lambda c: c.id.split("v2/", 1)[-1])
def test_case(case, by_id):
    result = by_id[case.id]
    divergent = KNOWN["cases"].get(case.id, {}).get("levels", [])
    for level in LEVELS:
        if level in divergent:
            assert not result.levels[level], (
                f"{level} now matches AWS: remove it from known_divergences.json and docs/conformance.md"
            )
        else:
            assert result.levels[level], f"{level}: {result.diffs.get(level)}"


@pytest.mark.parametrize("case", TEST_STATE_CASES, ids=lambda c: c.path.stem)
def test_test_state_case(case, report):
    result = next(r for r in report.test_state if r.case.id == case.id)
    known = KNOWN["test_state"].get(case.id)
    if known is None:
        assert result.passed, result.diff
    elif not known.get("depends_on_environment"):
        assert not result.passed, "now matches AWS: remove it from known_divergences.json and docs/conformance.md"


def test_every_known_divergence_is_documented():
    doc = (Path(__file__).parents[2] / "docs" / "conformance.md").read_text(encoding="utf-8")
    for case_id in list(KNOWN["cases"]) + list(KNOWN["test_state"]):
        test_name = next(part for part in case_id.split("::")[1:] if part.startswith("test_"))
        function, _, parameters = test_name.partition("[")
        assert function in doc and parameters.rstrip("]") in doc, f"{test_name} is missing from docs/conformance.md"
