"""``--report`` on ``ceap asl run`` and ``ceap run``: a self-contained page for any definition; bad
report arguments exit 2 before anything runs."""

import json

from ceap_engine.observe.dot import dom_id
from ceap_engine.observe.report import AttemptStopwatch

from .browser import Elements
from .test_graph import NESTED


def test_asl_run_report_of_any_definition(run_ceap, tmp_path):
    definition = tmp_path / "nested.json"
    definition.write_text(json.dumps(NESTED))
    page = tmp_path / "out" / "report.html"
    proc = run_ceap("asl", "run", str(definition), "--input", json.dumps({"n": 1, "s": "x", "b": False}), "--report", str(page))
    assert proc.returncode == 0, proc.stderr
    dom = Elements(page.read_text())
    nodes = {a["id"]: a["class"] for a in dom.with_class("state")}
    assert set(nodes) == {dom_id(k) for k in ("Decide", "Fan", "Fan/items/Work", "Both", "Both/branch1/Left",
                                              "Both/branch2/Right", "Nope", "Done")}
    assert "outcome-succeeded" in nodes[dom_id("Both/branch1/Left")]  # the 5 s Wait branch ran
    assert "outcome-not_reached" in nodes[dom_id("Fan")] and "outcome-not_reached" in nodes[dom_id("Nope")]
    assert dom.text_by_id["execution-status"] == "SUCCEEDED"
    header = dom.text_by_id.get("meta") or page.read_text()
    assert "execution clock 5.000 s" in header and "wall clock 0." in header  # the virtual clock skipped the 5 s Wait
    assert "<script src" not in page.read_text() and "<link" not in page.read_text()


def test_asl_run_report_of_a_failed_execution_names_error_and_cause(run_ceap, tmp_path):
    definition = tmp_path / "nested.json"
    definition.write_text(json.dumps(NESTED))
    page = tmp_path / "report.html"
    proc = run_ceap("asl", "run", str(definition), "--input", json.dumps({"n": 1, "s": "y"}), "--report", str(page))
    assert proc.returncode == 1
    dom = Elements(page.read_text())
    assert dom.text_by_id["execution-status"] == "FAILED"
    assert dom.text_by_id["error"] == "No" and dom.text_by_id["cause"] == "no"
    assert "outcome-failed" in {a["id"]: a["class"] for a in dom.with_class("state")}[dom_id("Nope")]


def test_report_must_be_html_and_nothing_runs_otherwise(run_ceap, tmp_path):
    proc = run_ceap("run", "--local", "examples/payload.json", "--store", str(tmp_path / "store"),
                    "--report", str(tmp_path / "r.pdf"), "--format", "json")
    assert proc.returncode == 2
    assert "name it FILE.html" in json.loads(proc.stdout)["details"][0]["message"]
    assert not (tmp_path / "store").exists() and not (tmp_path / "r.pdf").exists()


def test_report_without_graphviz_exits_2_before_running(run_ceap, tmp_path):
    definition = tmp_path / "d.json"
    definition.write_text(json.dumps({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}))
    proc = run_ceap("asl", "run", str(definition), "--report", str(tmp_path / "r.html"), env={"PATH": str(tmp_path)})
    assert proc.returncode == 2
    assert "apt-get install graphviz" in " ".join(proc.stderr.split())
    assert not (tmp_path / "r.html").exists()


def test_stopwatch_measures_each_attempt_on_the_wall():
    ticks = iter([10.0, 10.5, 20.0, 23.0])
    stopwatch = AttemptStopwatch(timer=lambda: next(ticks))

    class P:
        def __init__(self, status, attempt):
            self.stage, self.status, self.attempt = "Score", status, attempt

    for p in (P("started", 1), P("failed", 1), P("started", 2), P("succeeded", 2)):
        stopwatch(p)
    assert stopwatch.seconds == {("Score", 1): 0.5, ("Score", 2): 3.0}


def test_report_of_a_deployed_run_is_refused(run_ceap, tmp_path):
    proc = run_ceap("run", "examples/payload.json", "--target", "aws", "-n", "x", "--report", str(tmp_path / "r.html"),
                    "--format", "json")
    assert proc.returncode == 2
    assert "--report draws a local run" in json.loads(proc.stdout)["details"][0]["message"]
