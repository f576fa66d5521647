"""The graph model of a definition, its DOT text, and Graphviz laying it out (Graphviz must be installed)."""

import glob
import json
import re
from pathlib import Path

import pytest

from ceap_engine.errors import DefinitionError
from ceap_engine.observe.dot import Graphviz, GraphvizMissing, dom_id, to_dot
from ceap_engine.observe.graph import choice_label, workflow_graph
from ceap_engine.pipeline import builtin
from ceap_engine.pipeline.builder import build_definition

ROOT = Path(__file__).resolve().parents[2]

NESTED = {
    "StartAt": "Decide",
    "States": {
        "Decide": {"Type": "Choice", "Choices": [
            {"Variable": "$.n", "NumericGreaterThan": 3, "Next": "Fan"},
            {"And": [{"Variable": "$.s", "StringEquals": "x"}, {"Not": {"Variable": "$.b", "BooleanEquals": True}}],
             "Next": "Both"}],
            "Default": "Nope"},
        "Fan": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 4, "ItemProcessor": {
            "ProcessorConfig": {"Mode": "INLINE"}, "StartAt": "Work",
            "States": {"Work": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                                "Parameters": {"FunctionName": "f"},
                                "Retry": [{"ErrorEquals": ["States.TaskFailed"], "IntervalSeconds": 2, "MaxAttempts": 3}],
                                "End": True}}},
            "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Nope"}], "Next": "Done"},
        "Both": {"Type": "Parallel", "Branches": [
            {"StartAt": "Left", "States": {"Left": {"Type": "Wait", "Seconds": 5, "End": True}}},
            {"StartAt": "Right", "States": {"Right": {"Type": "Pass", "End": True}}}], "Next": "Done"},
        "Nope": {"Type": "Fail", "Error": "No", "Cause": "no"},
        "Done": {"Type": "Succeed"},
    },
}


def test_nodes_edges_and_groups_of_a_nested_definition():
    g = workflow_graph(NESTED)
    types = {n.key: n.type for n in g.nodes}
    assert types == {"Decide": "Choice", "Fan": "Map", "Fan/items/Work": "Task", "Both": "Parallel",
                     "Both/branch1/Left": "Wait", "Both/branch2/Right": "Pass", "Nope": "Fail", "Done": "Succeed"}
    assert g.start == "Decide"
    assert {n.key for n in g.nodes if n.terminal} == {"Fan/items/Work", "Both/branch1/Left", "Both/branch2/Right",
                                                      "Nope", "Done"}
    edges = {(e.source, e.target, e.kind, e.label) for e in g.edges}
    assert ("Decide", "Fan", "choice", "$.n > 3") in edges
    assert ("Decide", "Both", "choice", '($.s == "x" and not $.b == true)') in edges
    assert ("Decide", "Nope", "default", "default") in edges
    assert ("Fan", "Nope", "catch", "catch States.ALL") in edges
    assert ("Fan/items/Work", "Fan/items/Work", "retry", "retry States.TaskFailed: 3x, 2s x2") in edges
    assert ("Fan", "Fan/items/Work", "branch", "each item (max 4 at once)") in edges
    assert ("Both", "Both/branch2/Right", "branch", "branch 2") in edges
    assert ("Fan", "Done", "next", "") in edges
    groups = {(gr.key, gr.kind, gr.owner, gr.label) for gr in g.groups}
    assert groups == {("Fan/items", "map", "Fan", "Fan: each item (inline)"),
                      ("Both/branch1", "parallel", "Both", "Both: branch 1"),
                      ("Both/branch2", "parallel", "Both", "Both: branch 2")}


def test_a_retrier_that_never_retries_draws_no_edge():
    spec = builtin("realtime")
    g = workflow_graph(build_definition(spec))
    retry = [e for e in g.edges if e.kind == "retry" and e.source == "ETL.Plan"]
    # Ceap.PermanentError (MaxAttempts 0) draws nothing; States.ALL is realtime's Express retry: once after 2 s.
    assert [e.label for e in retry] == ["retry States.ALL: 1x, 2s x2"]


def test_choice_labels_of_jsonata_and_of_each_operator_family():
    assert choice_label({"Condition": "{% $states.input.n > 3 %}", "Next": "B"}) == "$states.input.n > 3"
    assert choice_label({"Variable": "$.a", "StringEqualsPath": "$.b", "Next": "B"}) == "$.a == $.b"
    assert choice_label({"Variable": "$.a", "IsNull": False, "Next": "B"}) == "$.a is not null"
    assert choice_label({"Variable": "$.a", "StringMatches": "x*", "Next": "B"}) == '$.a matches "x*"'
    assert len(choice_label({"Variable": "$." + "a" * 200, "IsPresent": True, "Next": "B"})) == 60


def test_an_invalid_definition_is_refused_with_its_problems():
    with pytest.raises(DefinitionError) as caught:
        workflow_graph({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Nowhere"}}})
    assert any("Nowhere" in p.message for p in caught.value.problems)


def test_dot_text_marks_terminal_states_colours_outcomes_and_nests_groups():
    text = to_dot(workflow_graph(NESTED), outcomes={"Fan": "caught", "Nope": "failed"})
    assert text.count("subgraph cluster_") == 5  # Fan and Both, one per branch, one for the items
    nope = next(line for line in text.splitlines() if line.strip().startswith('"Nope" ['))
    assert "peripheries=2" in nope and 'fillcolor="#ffcdd2"' in nope and "outcome-failed" in nope
    assert 'id="state-Fan_items_Work"' in text
    assert '"Nope" -> "__end__"' in text and '"Done" -> "__end__"' in text


@pytest.mark.parametrize("workflow", ["realtime", "batch"])
def test_graphviz_draws_every_state_of_a_shipped_workflow(workflow):
    definition = build_definition(builtin(workflow))
    svg = Graphviz().svg(to_dot(workflow_graph(definition)))
    assert svg.startswith("<svg")
    drawn = set(re.findall(r'<g id="(state[^"]*)" class="node state', svg))
    # Every state, the ones inside each stage's Map (its part call) included.
    assert drawn == {dom_id(node.key) for node in workflow_graph(definition).nodes}
    assert {dom_id(name) for name in definition["States"]} < drawn
    assert dom_id("Filter/items/Filter.Part") in drawn


def test_every_definition_of_the_conformance_corpus_has_a_graph():
    files = sorted(glob.glob(str(ROOT / "tests/conformance/data/cases/*/*.json")))
    assert len(files) > 400
    for f in files:
        definition = json.loads(Path(f).read_text())["definition"]
        g = workflow_graph(definition)
        assert len(g.nodes) >= len(definition["States"]), f
        to_dot(g)


def test_graphviz_missing_says_what_to_install(tmp_path):
    with pytest.raises(GraphvizMissing, match="apt-get install graphviz"):
        Graphviz(executable=str(tmp_path / "no-dot-here")).render("digraph { a }", "svg")


def test_png_output_is_a_png():
    data = Graphviz().render(to_dot(workflow_graph(NESTED)), "png")
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
