"""The harness end to end in smoke mode (tiny counts): every scenario in its own process, the JSON shape."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cli import main
from benchmarks.measure import REQUIRED_KEYS
from benchmarks.scenarios import plan

REPO = Path(__file__).resolve().parents[2]


def test_a_smoke_run_writes_the_document_of_the_issue_and_the_page(tmp_path):
    out, page = tmp_path / "results.json", tmp_path / "benchmarks.md"
    # The Glue job (Spark) has its own tests; here the engine's scenarios only.
    names = ",".join(s.name for s in plan("smoke", glue_job=False))
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--only", names, "--json", str(out), "--markdown", str(page)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    document = json.loads(out.read_text())
    assert list(document) == ["machine", "versions", "results", "ratios"]
    assert set(document["ratios"]) == {"ceap_vs_bound", "ceap_vs_moto_5pass"}
    assert all(isinstance(value, float) for value in document["ratios"].values())
    assert [row["name"] for row in document["results"]] == names.split(",")
    for row in document["results"]:
        assert list(row)[: len(REQUIRED_KEYS)] == list(REQUIRED_KEYS), row
        assert "error" not in row["details"], row
        assert all(row[key] is not None for key in REQUIRED_KEYS), row
    e2e = next(row for row in document["results"] if row["name"].startswith("e2e-"))
    assert set(e2e["details"]["stages"]) == {"ETL", "Filter", "Score", "Store", "Reactive"}
    assert document["versions"]["moto"] and document["machine"]["cpus"] >= 1
    assert "`python -m benchmarks --smoke" in page.read_text() and "bound" in done.stdout


def test_list_shows_the_scenarios_of_the_mode(capsys):
    assert main(["--quick", "--list", "--only", "bound,retry-heavy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["bound", "retry-heavy"]


def test_quick_and_smoke_leave_the_glue_job_out_unless_it_is_named():
    from benchmarks.cli import _select

    with_glue = plan("quick", glue_job=True)
    assert "glue-job" not in [s.name for s in _select(with_glue, [], "quick")]
    assert "glue-job" in [s.name for s in _select(with_glue, [], "full")]
    assert [s.name for s in _select(with_glue, ["bound,glue-job"], "quick")] == ["bound", "glue-job"]


def test_an_unknown_scenario_is_refused_with_the_known_ones():
    with pytest.raises(SystemExit, match="unknown scenario.*nope.*choose from.*bound"):
        main(["--only", "nope"])


def test_a_child_asked_for_an_unknown_scenario_says_so(capsys):
    assert main(["--run-scenario", "nope", "--smoke"]) == 2
    assert "unknown scenario 'nope'" in capsys.readouterr().err
