"""``ceap asl conformance DIR``: the report's counts and shape, on a small corpus built for the test."""

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from ceap_engine.cli.app import app

DATA = Path(__file__).parent / "data"
PASS_CASE = DATA / "cases" / "base" / "test_query_context_object_values.json"
CATCH_CASE = DATA / "cases" / "scenarios" / "test_map_state_catch.json"
WAIT_CASE = DATA / "cases" / "base" / "test_wait_timestamppath_Z.json"
TEST_STATE_CASE = DATA / "test_state" / "scenarios__base_inspection_level_debug__BASE_PASS_STATE__test_case_response.json"


def small_corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    for source in (PASS_CASE, CATCH_CASE, WAIT_CASE):
        target = root / "cases" / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    # A copy of the Catch case whose recorded output was changed: it must fail at level 1 only.
    tampered = json.loads(CATCH_CASE.read_text())
    tampered["id"] += "-tampered"
    tampered["expected"]["output"] = {"not": "what AWS returned"}
    (root / "cases" / "scenarios" / "tampered.json").write_text(json.dumps(tampered))
    (root / "test_state").mkdir()
    shutil.copy(TEST_STATE_CASE, root / "test_state" / TEST_STATE_CASE.name)
    return root


def test_json_report_counts_levels_independently(tmp_path):
    outcome = CliRunner().invoke(app, ["asl", "conformance", str(small_corpus(tmp_path)), "--format", "json"])
    assert outcome.exit_code == 0, outcome.output
    report = json.loads(outcome.output)
    assert report["levels"]["outcome"] == {"passed": 2, "applicable": 3}
    assert report["levels"]["event_types"] == {"passed": 3, "applicable": 3}
    assert report["categories"]["error handling"]["outcome"] == {"passed": 1, "applicable": 2}
    assert report["categories"]["base"]["event_details"] == {"passed": 1, "applicable": 1}
    assert [(f["id"].endswith("-tampered"), f["level"]) for f in report["failures"]] == [(True, "outcome")]
    assert "output" in report["failures"][0]["diff"]
    assert [item["id"] for item in report["not_applicable"]] == [json.loads(WAIT_CASE.read_text())["id"]]
    assert report["test_state"] == {"passed": 1, "applicable": 1, "failures": []}


def test_text_report_has_a_row_per_category_and_the_total(tmp_path):
    outcome = CliRunner().invoke(app, ["asl", "conformance", str(small_corpus(tmp_path))])
    assert outcome.exit_code == 0, outcome.output
    rows = {line.split()[0]: line.split()[1:] for line in outcome.output.splitlines() if line.strip()}
    assert rows["total"] == ["2/3", "3/3", "3/3"] and rows["TestState"] == ["1/1"]


def test_a_folder_without_a_corpus_is_a_usage_error(tmp_path):
    outcome = CliRunner().invoke(app, ["asl", "conformance", str(tmp_path)])
    assert outcome.exit_code == 2
