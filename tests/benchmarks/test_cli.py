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


#: Run by the test of their own below, which checks their rows.
END_TO_END_KINDS = ("e2e", "stage-speed")


def test_a_smoke_run_writes_the_document_of_the_issue_and_the_page(tmp_path):
    out, page = tmp_path / "results.json", tmp_path / "benchmarks.md"
    # The Glue job (Spark) has its own tests; here the engine's scenarios only.
    names = ",".join(s.name for s in plan("smoke", glue_job=False) if s.kind not in END_TO_END_KINDS)
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
    assert document["versions"]["moto"] and document["machine"]["cpus"] >= 1
    assert "`python -m benchmarks --smoke" in page.read_text() and "bound" in done.stdout


def test_a_smoke_run_puts_the_floor_beside_ceap_on_the_same_file_and_each_stage_on_one_core(tmp_path):
    out, page = tmp_path / "results.json", tmp_path / "benchmarks.md"
    names = [s.name for s in plan("smoke", glue_job=False) if s.kind in END_TO_END_KINDS]
    assert names == ["e2e-1k", "stage-speed"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--smoke", "--only", ",".join(names), "--json", str(out),
         "--markdown", str(page)],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    document = json.loads(out.read_text())
    rows = {row["name"]: row for row in document["results"]}
    assert list(rows) == ["e2e-1k", "floor-1k", "stage-speed"]
    for row in rows.values():
        assert "error" not in row["details"], row
        assert all(row[key] is not None for key in REQUIRED_KEYS), row
    ceap, floor = rows["e2e-1k"], rows["floor-1k"]
    for row in (ceap, floor):
        assert row["peak_rss_mib"] > 0 and row["details"]["process_wall_s"] > 0
        assert row["details"]["rss_samples"] >= 1 and row["details"]["processes"] >= 1
    # Both did the same work on the same file.
    assert ceap["details"]["counts"]["stored"] == floor["details"]["counts"]["stored"] > 0
    assert ceap["details"]["counts"]["actions"] == floor["details"]["counts"]["actions"] > 0
    assert set(ceap["details"]["stages"]) == {"ETL", "Filter", "Score", "Store", "Reactive"}
    assert all(stage["records_per_s"] > 0 for stage in ceap["details"]["stages"].values())
    assert document["ratios"]["ceap_vs_floor_wall_1k"] > 0 and document["ratios"]["ceap_vs_floor_rss_1k"] > 0
    speed = rows["stage-speed"]["details"]
    assert set(speed["stages"]) == {"ETL", "Filter", "Score", "Store", "Reactive", "Store (SQLite)", "Reactive (SQLite)"}
    assert speed["stages"]["Store (SQLite)"]["records"] == speed["stages"]["Store"]["records"] > 0
    assert speed["min_records_per_s"] > 0 and speed["slowest_stage"] in speed["stages"]
    # Each stage's row is its fastest of the rounds (each on new stores), the median beside it.
    assert speed["rounds"] == 3 and f"runs {speed['rounds']} times" in speed["driver"]
    assert all(s["records_per_s"] >= s["median_records_per_s"] > 0 for s in speed["stages"].values())

    assert "ceap/floor wall" in done.stdout and "stage-speed (one core" in done.stdout
    text = page.read_text()
    assert "## End to end: ceap and the floor" in text and "## Each stage on one core" in text


def test_list_shows_the_scenarios_of_the_mode(capsys):
    assert main(["--quick", "--list", "--only", "bound,retry-heavy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["bound", "retry-heavy"]


def test_only_serve_selects_the_serve_section_alone_and_no_serve_leaves_it_out(capsys):
    assert main(["--quick", "--list", "--only", "serve"]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == ["serve"]
    assert main(["--quick", "--list", "--only", "bound,serve"]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == ["bound", "serve"]
    assert main(["--quick", "--list", "--only", "bound"]) == 0
    assert "serve" not in [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert main(["--quick", "--list", "--no-serve"]) == 0
    assert "serve" not in [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]


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
