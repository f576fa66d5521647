"""``ceap graph``: files of each format, for shipped workflows and any definition; errors exit 2."""

import json

import pytest

from .conftest import json_out

DEFINITION = {"StartAt": "A", "States": {"A": {"Type": "Wait", "Seconds": 1, "Next": "B"}, "B": {"Type": "Succeed"}}}


@pytest.mark.parametrize("workflow", ["realtime", "batch"])
def test_svg_of_a_shipped_workflow(run_ceap, tmp_path, workflow):
    out = tmp_path / "g.svg"
    proc = run_ceap("graph", "--workflow", workflow, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    svg = out.read_text()
    assert "<svg" in svg and "Score" in svg and ("HeavyETL" in svg) == (workflow == "batch")
    assert f"wrote {out}" in proc.stdout


def test_png_and_html_of_any_definition(run_ceap, tmp_path):
    definition = tmp_path / "machine.json"
    definition.write_text(json.dumps(DEFINITION))
    proc = run_ceap("graph", str(definition), "-o", str(tmp_path / "g.png"), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json_out(proc) == {"schemaVersion": 1, "command": "graph", "ok": True, "output": str(tmp_path / "g.png"),
                              "states": 2, "transitions": 1, "dot": None}
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    assert run_ceap("graph", str(definition), "-o", str(tmp_path / "g.html")).returncode == 0
    page = (tmp_path / "g.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and 'id="state-A"' in page and "<script src" not in page


def test_without_output_prints_dot_text(run_ceap):
    proc = run_ceap("graph", "--workflow", "realtime")
    assert proc.returncode == 0
    assert proc.stdout.startswith("digraph workflow {") and '"ETL.Manifest" -> "Filter"' in proc.stdout


@pytest.mark.parametrize("args, message", [
    ((), "give a DEFINITION.json file or --workflow"),
    (("x.json", "--workflow", "batch"), "one of them"),
    (("--workflow", "batch", "-o", "g.gif"), "must end in .svg, .png, .html, .dot"),
    (("missing.json",), "definition file not found"),
])
def test_bad_arguments_exit_2_and_write_nothing(run_ceap, tmp_path, args, message):
    proc = run_ceap("graph", *[str(tmp_path / a) if a.endswith((".json", ".gif")) else a for a in args])
    assert proc.returncode == 2
    assert message in " ".join(proc.stderr.split())
    assert list(tmp_path.iterdir()) == []


def test_invalid_definition_exits_2_with_its_problems(run_ceap, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}}))
    proc = run_ceap("graph", str(bad), "-o", str(tmp_path / "g.svg"), "--format", "json")
    assert proc.returncode == 2
    assert any("Nowhere" in d["message"] for d in json_out(proc)["details"])
    assert not (tmp_path / "g.svg").exists()


def test_graphviz_missing_exits_2_saying_what_to_install(run_ceap, tmp_path):
    proc = run_ceap("graph", "--workflow", "realtime", "-o", str(tmp_path / "g.svg"), env={"PATH": str(tmp_path)})
    assert proc.returncode == 2
    assert "apt-get install graphviz" in " ".join(proc.stderr.split())
    assert not (tmp_path / "g.svg").exists()
