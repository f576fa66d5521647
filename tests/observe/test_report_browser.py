"""The report page in a real browser: headless Chromium loads it, the DOM holds every state with its
outcome, and a screenshot is kept (build/test-artifacts/observe/; with CEAP_UPDATE_SCREENSHOTS=1 also
the ones docs/observability.md shows).
"""

import json
import os
import shutil
from pathlib import Path

import pytest

from ceap_engine.cli._report import write_report
from ceap_engine.observe.dot import dom_id
from ceap_engine.observe.graph import workflow_graph
from ceap_engine.pipeline import builtin
from ceap_engine.pipeline.builder import build_definition
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.testing import WorkflowTestEnvironment

from .browser import Elements, dump_dom, screenshot

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "build" / "test-artifacts" / "observe"
REALTIME_STATES = list(build_definition(builtin("realtime"))["States"])
#: Every node the report draws: the top-level states and those inside each stage's Map (``Filter/items/Filter.Part``).
REALTIME_NODES = [node.key for node in workflow_graph(build_definition(builtin("realtime"))).nodes]


def keep_screenshot(page: Path, name: str) -> Path:
    shot = screenshot(page, ARTIFACTS / name)
    if os.environ.get("CEAP_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(shot, ROOT / "docs" / "images" / name)
    return shot


def outcomes_in(dom: Elements) -> dict[str, str]:
    """state DOM id -> outcome, from the SVG nodes' classes."""
    out = {}
    for attrs in dom.with_class("state"):
        classes = attrs["class"].split()
        outcome = next((c.removeprefix("outcome-") for c in classes if c.startswith("outcome-")), None)
        out[attrs["id"]] = outcome
    return out


def no_network_references(dom: Elements) -> list[str]:
    return [value for _, attrs in dom.elements for key, value in attrs.items()
            if key in ("src", "href", "xlink:href", "action") and not value.startswith(("#", "data:"))]


def test_report_of_the_shipped_example_in_chromium(run_ceap, tmp_path):
    page = tmp_path / "example.html"
    proc = run_ceap("run", "--local", "examples/payload.json", "--store", str(tmp_path / "store"),
                    "--report", str(page), "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    assert f"report:     {page}" in proc.stdout
    dom = Elements(dump_dom(page))
    outcomes = outcomes_in(dom)
    assert set(outcomes) == {dom_id(s) for s in REALTIME_NODES}
    for state in ("Input", "ETL.Plan", "ETL.Ranges", "ETL.Merges", "ETL.Manifest", "Filter", "Score", "Store", "Reactive",
                  "Summary"):
        assert outcomes[dom_id(state)] == "succeeded", state
    for state in ("Input.Unwrap", "ETL.Failed", "RecordFailure", "Failed", "Failed.Stage", "Failed.Reserved"):
        assert outcomes[dom_id(state)] == "not_reached", state
    # The page's script ran in the browser: it named each node after its state.
    assert {a.get("data-state") for a in dom.with_class("state")} >= set(REALTIME_STATES)
    assert dom.text_by_id["execution-status"] == "SUCCEEDED"
    assert "failure" not in dom.text_by_id
    assert "lines read" in dom.text_by_id["chain"] and "1,079" in dom.text_by_id["chain"]
    assert "MISMATCH" not in dom.text_by_id["checks"]
    assert no_network_references(dom) == []
    keep_screenshot(page, "report-example.png")


@pytest.fixture
def failed_run(tmp_path):
    """Score fails once (retried), Store always fails (caught, recorded, Failed.Stage ends it)."""
    import asyncio

    env = WorkflowTestEnvironment(clock=VirtualClock(start=1_767_225_600.0), seed=3)
    payload = json.loads((ROOT / "examples" / "payload.json").read_text())
    payload["source"] = str(ROOT / "examples" / payload["source"])
    real_score, calls = env.stage_handler("realtime", "Score"), []

    async def flaky_score(event, context):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("model endpoint unavailable")
        return await real_score(event, context)

    async def broken_store(event, context):
        raise TimeoutError("the candidate store did not answer")

    result = asyncio.run(env.run("realtime", payload, name="failed-run",
                                 handlers={"Score": flaky_score, "Store": broken_store}))
    assert result.status == "FAILED"
    page = write_report(tmp_path / "failed.html", build_definition(builtin("realtime")), result.execution.to_json(),
                        counts=result.counts)
    return page


def test_report_of_a_failed_run_marks_the_failed_caught_and_retried_states(failed_run):
    dom = Elements(dump_dom(failed_run))
    outcomes = outcomes_in(dom)
    assert set(outcomes) == {dom_id(s) for s in REALTIME_NODES}
    assert outcomes[dom_id("Failed.Stage")] == "failed"
    # Store's part call failed for good (the Map around it was caught), and the execution ended at Failed.Stage.
    assert sorted(s for s, o in outcomes.items() if o == "failed") == sorted([dom_id("Store/items/Store.Part"),
                                                                             dom_id("Failed.Stage")])
    assert outcomes[dom_id("Store")] == "caught"
    assert outcomes[dom_id("Score/items/Score.Part")] == "retried" and outcomes[dom_id("Score")] == "succeeded"
    assert outcomes[dom_id("Reactive")] == "not_reached" and outcomes[dom_id("Summary")] == "not_reached"
    assert outcomes[dom_id("Store.Failed")] == "succeeded" and outcomes[dom_id("RecordFailure")] == "succeeded"
    assert dom.text_by_id["execution-status"] == "FAILED"
    assert dom.text_by_id["failed-states"] == "Store.Part, Failed.Stage" and dom.text_by_id["caught-states"] == "Store"
    assert dom.text_by_id["error"] == "TimeoutError"
    assert "the candidate store did not answer" in dom.text_by_id["cause"]
    timeline = dom.text_by_id["timeline"]
    # Score's and Store's one retry each: realtime is Express, one retry after 2 s (EXPRESS_LAMBDA_RETRY).
    assert "retry wait 2.000 s" in timeline and "retry wait 4.000 s" not in timeline
    taken = {dom.text_by_id[a["id"]].strip().splitlines()[0] for a in dom.with_class("taken")}  # the edge title
    # The retries are the part calls' (inside each stage's Map); the Catch is the Map's.
    retries = {f"{s}/items/{s}.Part->{s}/items/{s}.Part" for s in ("Score", "Store")}
    assert retries | {"Store->Store.Failed", "Failed->Failed.Stage"} <= taken, sorted(taken)
    assert "Store->Reactive" not in taken and "Failed->Failed.Reserved" not in taken
    assert no_network_references(dom) == []
    keep_screenshot(failed_run, "report-failed.png")
