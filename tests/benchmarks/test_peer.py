"""The peer rows of `python -m benchmarks`: ceap's side on the peer's workloads, and "not available"."""

from ceap_engine.asl.definition import load_definition, validate_definition
from benchmarks import peer
from benchmarks.scenarios import Scenario


def test_the_workloads_are_the_issues():
    five_pass, five_task = peer.five_pass(), peer.five_task()
    assert validate_definition(five_pass) == [] and validate_definition(five_task) == []
    passes = list(five_pass["States"].values())
    assert len(passes) == 5 and all(s["Result"] == {"stage": n} for n, s in five_pass["States"].items())
    task = five_task["States"]["S1"]
    assert task["Resource"].startswith("arn:aws:lambda:us-east-1:123456789012:function:")
    assert task["Retry"] == [{"ErrorEquals": ["States.ALL"], "IntervalSeconds": 20, "MaxAttempts": 2, "BackoffRate": 2}]
    load_definition(five_task)


def test_every_peer_row_has_ceap_beside_it_in_the_same_run():
    names = [s.name for s in peer.plan("full")]
    for name in names:
        if name.startswith("als-"):
            assert "ceap-peer-" + name[len("als-"):] in names
    assert {"als-5pass-c1", "als-5task-c1000", "als-realtime-c1000"} <= set(names)


def test_ceap_runs_the_peer_workloads():
    for workload in ("5pass", "5task", "realtime"):
        [row] = peer.run_scenario(Scenario(f"ceap-peer-{workload}-c2", f"peer-ceap-{workload}", 6, 2), mode="smoke")
        assert row["executions"] == 6 and row["executions_per_s"] > 0, row


def test_without_node_the_peer_row_says_not_available(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no node, no npm
    monkeypatch.setenv("CEAP_BENCHMARK_CACHE", str(tmp_path / "cache"))
    [row] = peer.run_scenario(Scenario("als-5pass-c1", "peer-als-5pass", 5, 1), mode="smoke")
    assert row["executions_per_s"] is None
    assert "not available" in row["details"]["not_available"] and "error" not in row["details"]
