"""`--format json` is one contract: every command's document has schemaVersion, command and ok (docs/cli.md)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT, json_out

PASS = {"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": {"ok": True}, "End": True}}}


def envelope(proc, command: str, ok: bool) -> dict:
    doc = json_out(proc)
    assert (doc["schemaVersion"], doc["command"], doc["ok"]) == (1, command, ok), doc
    assert proc.returncode == (0 if ok else proc.returncode) and (ok or proc.returncode in (1, 2))
    if not ok and "status" not in doc:  # an execution that ran has its own error/cause
        assert isinstance(doc["error"], str) and doc["details"]
        assert all(set(d) == {"path", "message", "code"} for d in doc["details"])
    return doc


@pytest.fixture
def definition(tmp_path):
    path = tmp_path / "pass.json"
    path.write_text(json.dumps(PASS))
    return path


def test_run_and_event(run_ceap, tmp_path):
    doc = envelope(run_ceap("run", "examples/payload.json", "--store", str(tmp_path / "s"), "--format", "json"), "run", True)
    assert doc["status"] == "SUCCEEDED" and doc["wallSeconds"] > 0
    bad = envelope(run_ceap("run", str(tmp_path / "none.json"), "--format", "json"), "run", False)
    assert bad["error"] == "invalid payload"
    doc = envelope(run_ceap("event", "examples/event.json", "--store", str(tmp_path / "e"), "--format", "json"), "event", True)
    assert doc["status"] == "CREATED"


def test_asl_validate_always_has_valid_and_problems(run_ceap, tmp_path, definition):
    doc = envelope(run_ceap("asl", "validate", str(definition), "--format", "json"), "asl validate", True)
    assert doc["valid"] is True and doc["problems"] == []
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"StartAt": "Nowhere", "States": {}}))
    doc = envelope(run_ceap("asl", "validate", str(broken), "--format", "json"), "asl validate", False)
    assert doc["valid"] is False and doc["problems"] == doc["details"] and doc["problems"]


def test_asl_run_and_test_state(run_ceap, definition):
    doc = envelope(run_ceap("asl", "run", str(definition), "--format", "json"), "asl run", True)
    assert doc["output"] == {"ok": True}
    doc = envelope(run_ceap("asl", "test-state", str(definition), "--format", "json"), "asl test-state", True)
    assert doc["status"] == "SUCCEEDED"
    doc = envelope(run_ceap("asl", "test-state", str(definition), "--state", "Missing", "--format", "json"),
                   "asl test-state", False)
    assert doc["exception"]["code"] and doc["details"][0]["code"] == doc["exception"]["code"]


def test_asl_conformance(run_ceap, tmp_path):
    corpus = tmp_path / "corpus"
    data = ROOT / "tests" / "conformance" / "data"
    case = next((data / "cases" / "scenarios").glob("*.json"))
    state_case = next((data / "test_state").glob("*.json"))
    (corpus / "cases" / "scenarios").mkdir(parents=True)
    (corpus / "test_state").mkdir()
    shutil.copy(case, corpus / "cases" / "scenarios" / case.name)
    shutil.copy(state_case, corpus / "test_state" / state_case.name)
    doc = envelope(run_ceap("asl", "conformance", str(corpus), "--format", "json"), "asl conformance", True)
    assert doc["levels"]["outcome"]["applicable"] + len(doc["not_applicable"]) == 1
    assert doc["test_state"]["applicable"] == 1
    proc = run_ceap("asl", "conformance", str(tmp_path / "nothing"), "--format", "json")
    assert proc.returncode == 2 and envelope(proc, "asl conformance", False)["details"][0]["code"] == "NOT_A_CORPUS"
    only_states = tmp_path / "only-test-state"
    shutil.copytree(corpus / "test_state", only_states / "test_state")
    proc = run_ceap("asl", "conformance", str(only_states), "--format", "json")
    assert proc.returncode in (0, 2), proc.stderr[-1000:]
    assert "Traceback" not in proc.stderr


def test_usage_errors_come_out_in_the_envelope(run_ceap):
    proc = run_ceap("asl", "validate", "--format", "json")
    assert proc.returncode == 2
    doc = envelope(proc, "asl validate", False)
    assert doc["details"][0]["code"] == "USAGE" and "definition" in doc["error"]
    proc = run_ceap("run", "--bogus", "--format=json")
    assert proc.returncode == 2 and envelope(proc, "run", False)["details"][0]["code"] == "USAGE"
    text = run_ceap("run", "--bogus")
    assert text.returncode == 2 and "No such option" in text.stderr and not text.stdout


def test_synth(run_ceap, tmp_path):
    doc = envelope(run_ceap("synth", "-n", "demo", "--format", "json"), "synth", True)
    assert doc["template"]["AWSTemplateFormatVersion"] == "2010-09-09" and doc["output"] is None
    target = tmp_path / "t.json"
    doc = envelope(run_ceap("synth", "-n", "demo", "-o", str(target), "--format", "json"), "synth", True)
    assert doc["output"] == str(target) and json.loads(target.read_text())["Resources"]
    for bad in (tmp_path, "/proc/ceap-test/t.json"):
        proc = run_ceap("synth", "-n", "demo", "-o", str(bad), "--format", "json")
        assert proc.returncode == 2 and envelope(proc, "synth", False)["details"][0]["path"] == "/output"
    proc = run_ceap("synth", "-n", "Bad_Name", "--format", "json")
    assert proc.returncode == 2 and envelope(proc, "synth", False)["details"][0]["path"] == "/name"


def test_aws_commands_refuse_bad_arguments_in_the_envelope_before_any_call(run_ceap, tmp_path):
    payload = ROOT / "examples" / "payload.json"
    cases = [
        (["deploy", "-n", "demo", "--dry-run", "--build-dir", "/proc/ceap-test"], "deploy", "/build-dir"),
        (["status", "-n", "demo", "--endpoint-url", "notaurl"], "status", "/endpoint-url"),
        (["destroy", "-n", "demo", "--yes", "--endpoint-url", "notaurl"], "destroy", "/endpoint-url"),
        (["send", "-n", "demo", str(payload)], "send", "/source"),  # a local source cannot be sent to AWS
    ]
    for args, command, path in cases:
        proc = run_ceap(*args, "--format", "json")
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert envelope(proc, command, False)["details"][0]["path"] == path


@pytest.mark.moto
def test_aws_errors_have_details(moto_endpoint, tmp_path):
    env = {**os.environ}
    for command, extra in [("status", []), ("destroy", ["--yes"])]:
        proc = subprocess.run([sys.executable, "-m", "ceap_engine.cli", command, "-n", "never-deployed",
                               "--endpoint-url", moto_endpoint, *extra, "--format", "json"], cwd=ROOT,
                              capture_output=True, text=True, env=env, timeout=120, check=False)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        doc = envelope(proc, command, False)
        assert "never-deployed" in doc["error"] and doc["details"][0]["message"] == doc["error"]
    declined = subprocess.run([sys.executable, "-m", "ceap_engine.cli", "destroy", "-n", "never-deployed",
                               "--endpoint-url", moto_endpoint, "--format", "json"], cwd=ROOT, input="n\n",
                              capture_output=True, text=True, env=env, timeout=120, check=False)
    assert declined.returncode == 1
    assert envelope(declined, "destroy", False)["details"][0]["code"] == "NOT_CONFIRMED"


def test_the_journal_graph_and_cost_commands(run_ceap, tmp_path):
    store = tmp_path / "s"
    run = envelope(run_ceap("run", "examples/payload.json", "--store", str(store), "--execution-name", "kept",
                            "--format", "json"), "run", True)
    listed = envelope(run_ceap("executions", "list", "--store", str(store), "--format", "json"), "executions list", True)
    assert [e["name"] for e in listed["executions"]] == ["kept"]
    shown = envelope(run_ceap("executions", "history", "kept", "--store", str(store), "--format", "json"),
                     "executions history", True)
    assert shown["events"] == run["events"]
    proc = run_ceap("executions", "history", "never-ran", "--store", str(store), "--format", "json")
    assert proc.returncode == 2 and envelope(proc, "executions history", False)
    doc = envelope(run_ceap("graph", "--workflow", "realtime", "--format", "json"), "graph", True)
    assert doc["output"] is None and doc["dot"].startswith("digraph workflow {")  # stdout stays one document
    proc = run_ceap("graph", "--workflow", "realtime", "-o", str(tmp_path), "--format", "json")  # a folder
    assert proc.returncode == 2 and envelope(proc, "graph", False)["details"][0]["path"] == "/output"
    proc = run_ceap("cost", "--region", "mars-1", "--format", "json")
    assert proc.returncode == 2 and envelope(proc, "cost", False)


def test_the_queue_commands(run_ceap, tmp_path):
    store = str(tmp_path / "q")
    assert envelope(run_ceap("dlq", "list", "--local", "--store", store, "--format", "json"), "dlq list", True)["count"] == 0
    assert envelope(run_ceap("dlq", "redrive", "--local", "--store", store, "--format", "json"), "dlq redrive", True)["moved"] == 0
    proc = run_ceap("dlq", "show", "no-such-id", "--local", "--store", store, "--format", "json")
    assert proc.returncode == 1 and envelope(proc, "dlq show", False)["details"][0]["code"] == "MessageNotFound"
    assert envelope(run_ceap("pipe", "--local", "--store", store, "--format", "json"), "pipe", True)["received"] == 0
    sent = envelope(run_ceap("send", "--local", "examples/payload.json", "--store", store, "--format", "json"), "send", True)
    assert sent["messageId"] and sent["queue"] == "ceap-workflow-realtime-queue"
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for command in (["dlq", "list"], ["pipe"], ["send", "examples/payload.json"]):
        proc = run_ceap(*command, "--local", "--store", str(a_file), "--format", "json")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert envelope(proc, " ".join(command[:2] if command[0] == "dlq" else command[:1]), False)["details"][0]["code"] == "NOT_A_FOLDER"
    assert a_file.read_text() == "x"


def test_options_of_the_other_target_are_refused_by_the_newer_options_and_commands(run_ceap, tmp_path):
    payload, store = "examples/payload.json", str(tmp_path / "s")
    cases = [
        (["run", payload, "--target", "aws", "-n", "demo", "--replace"], "run", "/replace"),
        (["run", payload, "--target", "aws", "-n", "demo", "--report", str(tmp_path / "r.html")], "run", "/report"),
        (["run", payload, "--timeout", "5", "--store", store], "run", "/timeout"),
        (["send", payload, "-n", "demo", "--store", store], "send", "/store"),
        (["send", payload, "--local", "-n", "demo"], "send", "/name"),
        (["dlq", "list", "--region", "eu-west-1", "--store", store], "dlq list", "/region"),
        (["dlq", "redrive", "-n", "demo", "--workflow", "batch"], "dlq redrive", "/workflow"),
    ]
    for args, command, path in cases:
        proc = run_ceap(*args, "--format", "json")
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        (detail,) = envelope(proc, command, False)["details"]
        assert detail["path"] == path and detail["code"] == "CONFLICTING_OPTIONS", detail
    assert not (tmp_path / "s").exists()
