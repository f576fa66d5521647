"""Every bad argument is exit 2 with a clear message, and nothing is written (issue 13 items 1-3, 6, 7, 9, 10)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, json_out

GOOD = {"programId": "review-solicitation", "marketplace": "US",
        "dateRange": {"start": "2025-03-01", "end": "2025-04-04"}, "source": "data/orders.jsonl"}


def payload_file(folder: Path, payload) -> Path:
    path = folder / "payload.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    if not (folder / "data").exists():
        shutil.copytree(ROOT / "examples" / "data", folder / "data")
    return path


def problem(proc) -> dict:
    doc = json_out(proc)
    assert doc["schemaVersion"] == 1 and doc["ok"] is False, doc
    return doc


def test_name_help_shows_the_pattern_rich_would_eat(run_ceap):
    proc = subprocess.run([sys.executable, "-m", "ceap_engine.cli", "deploy", "--help"], cwd=ROOT, capture_output=True,
                          text=True, env=os.environ | {"COLUMNS": "250"}, check=False)
    assert "^[a-z][a-z0-9-]{0,29}$" in proc.stdout, proc.stdout


def test_unusable_stores_are_exit_2_and_write_nothing(run_ceap, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    not_sqlite = tmp_path / "store-with-junk"
    not_sqlite.mkdir()
    (not_sqlite / "candidates.sqlite3").write_text("this is not a database")
    for store, code in [(a_file, "NOT_A_FOLDER"), (Path("/proc/ceap-test"), "NOT_WRITABLE"),
                        (not_sqlite, "CANDIDATES_UNUSABLE")]:
        before = sorted(p.name for p in tmp_path.rglob("*"))
        proc = run_ceap("run", "--local", "examples/payload.json", "--store", str(store), "--format", "json")
        assert proc.returncode == 2, proc.stdout + proc.stderr
        detail = problem(proc)["details"][0]
        assert detail["path"] == "/store" and detail["code"] == code and str(store) in detail["message"]
        assert sorted(p.name for p in tmp_path.rglob("*")) == before
        event = run_ceap("event", str(ROOT / "examples" / "event.json"), "--store", str(store))
        assert event.returncode == 2 and "Traceback" not in event.stderr and code in event.stderr
    assert (not_sqlite / "candidates.sqlite3").read_text() == "this is not a database"  # never overwritten


def test_a_locked_candidates_database_is_exit_2(run_ceap, tmp_path):
    import sqlite3

    store = tmp_path / "store"
    store.mkdir()
    holder = sqlite3.connect(store / "candidates.sqlite3")
    holder.execute("CREATE TABLE t (x)")
    holder.commit()
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, for as long as the test runs
    try:
        proc = run_ceap("run", "--local", "examples/payload.json", "--store", str(store), "--format", "json")
    finally:
        holder.rollback()
        holder.close()
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert problem(proc)["details"][0]["code"] == "CANDIDATES_LOCKED"
    assert not (store / "buckets").exists()


def test_late_failures_are_now_exit_2_before_anything_is_written(run_ceap, tmp_path):
    cases = {
        "extension": (GOOD | {"source": "data/orders.txt"}, [], "/source", "extension '.txt'"),
        "too-large": (GOOD | {"padding": "x" * 300_000}, [], "/", "262144"),
        "dotdot-name": (GOOD, ["--execution-name", ".."], "/execution-name", "'..'"),
        "unknown-key": (GOOD | {"sorce": "x"}, [], "/sorce", "unknown field 'sorce'"),
        "numeric-date": (GOOD | {"dateRange": {"start": "2025-03-01", "end": 5}}, [], "/dateRange/end", "not 5"),
        "folder-source": (GOOD | {"source": "data"}, [], "/source", "is a folder"),
    }
    for label, (payload, extra, path, words) in cases.items():
        folder = tmp_path / label
        folder.mkdir()
        path_of_payload = payload_file(folder, payload)
        (folder / "data" / "orders.txt").write_text("{}\n")
        store = folder / "store"
        proc = run_ceap("run", "--local", str(path_of_payload), "--store", str(store), "--format", "json", *extra)
        assert proc.returncode == 2, (label, proc.stdout, proc.stderr)
        details = problem(proc)["details"]
        assert any(d["path"] == path and words in d["message"] for d in details), (label, details)
        assert not store.exists(), f"{label}: nothing may be written"


def test_conflicting_options_are_refused(run_ceap, tmp_path):
    for args, path in [(["--local", "--target", "aws", "-n", "demo"], "/target"),
                       (["--target", "aws", "-n", "demo", "--store", str(tmp_path / "s")], "/store"),
                       (["--target", "aws", "-n", "demo", "--workflow", "batch"], "/workflow"),
                       (["--region", "eu-west-1", "--store", str(tmp_path / "s")], "/region")]:
        proc = run_ceap("run", "examples/payload.json", *args, "--format", "json")
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        (detail,) = problem(proc)["details"]
        assert detail["path"] == path and detail["code"] == "CONFLICTING_OPTIONS"
    assert not (tmp_path / "s").exists()


def test_json_errors_name_the_option_or_the_file_and_the_position(run_ceap, tmp_path):
    definition = tmp_path / "pass.json"
    definition.write_text(json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}}))
    for option in ("--mock-result", "--variables"):
        proc = run_ceap("asl", "test-state", str(definition), option, "abc", "--format", "json")
        assert proc.returncode == 2
        (detail,) = problem(proc)["details"]
        assert detail["message"].startswith(f"{option} ") and detail["path"] == "/" + option[2:], detail
    bad = tmp_path / "input.json"
    bad.write_text('{"a": 1,\n "b": }')
    proc = run_ceap("asl", "run", str(definition), "--input", str(bad), "--format", "json")
    assert proc.returncode == 2
    message = problem(proc)["details"][0]["message"]
    assert str(bad) in message and "line 2 column" in message
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    for args in (["asl", "run", str(definition), "--input", str(deep)], ["asl", "validate", str(deep)],
                 ["run", str(deep), "--store", str(tmp_path / "s")]):
        proc = run_ceap(*args, "--format", "json")
        assert proc.returncode == 2, (args, proc.stderr[-500:])
        assert problem(proc)["details"][0]["code"] == "NESTED_TOO_DEEPLY"


def test_event_errors_say_what_is_wrong_where(run_ceap, tmp_path):
    store = tmp_path / "store"
    missing = run_ceap("event", str(tmp_path / "nope.json"), "--store", str(store), "--format", "json")
    assert missing.returncode == 2
    doc = problem(missing)
    assert doc["error"] == "invalid event" and doc["details"][0]["code"] == "FILE_NOT_FOUND"
    array = tmp_path / "array.json"
    array.write_text("[1, 2]")
    doc = problem(run_ceap("event", str(array), "--store", str(store), "--format", "json"))
    assert "customer event" in doc["details"][0]["message"] and "programId, marketplace and subject" in doc["details"][0]["message"]
    assert "dateRange" not in doc["details"][0]["message"]  # not the run payload's fields
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"eventId": "e1", "customerId": "C1"}))
    doc = problem(run_ceap("event", str(partial), "--store", str(store), "--format", "json"))
    assert {d["path"] for d in doc["details"]} >= {"/eventType", "/programId", "/marketplace", "/subject"}
    assert not store.exists()
    sample = run_ceap("event", "examples/event.json", "--store", str(store), "--format", "json")
    assert sample.returncode == 0 and json_out(sample)["status"] == "CREATED"


def test_function_imports_from_the_current_folder(run_ceap, tmp_path):
    (tmp_path / "myhandlers.py").write_text("def handler(event, context):\n    return {'seen': event['x']}\n")
    definition = tmp_path / "call.json"
    definition.write_text(json.dumps({"StartAt": "C", "States": {"C": {
        "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "OutputPath": "$.Payload",
        "Parameters": {"FunctionName": "f", "Payload.$": "$"}, "End": True}}}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "ceap_engine.cli", "asl", "run", "call.json", "--input", '{"x": 3}',
                           "--function", "f=myhandlers:handler", "--format", "json"],
                          cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json_out(proc)["output"] == {"seen": 3}


def test_distributed_map_without_a_store_names_the_option(run_ceap, tmp_path):
    definition = tmp_path / "dmap.json"
    definition.write_text(json.dumps({"StartAt": "M", "States": {"M": {
        "Type": "Map", "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                                      "ReaderConfig": {"InputType": "JSON"},
                                      "Parameters": {"Bucket": "b", "Key": "items.json"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                          "StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
        "End": True}}}))
    proc = run_ceap("asl", "run", str(definition), "--format", "json")
    assert proc.returncode == 1
    assert "--objects DIR" in json_out(proc)["cause"]


def test_java_home_pointing_nowhere_is_named(run_ceap, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ceap_engine.cli", "run", "examples/payload-batch.json", "--workflow",
                           "batch", "--store", str(tmp_path / "s"), "--format", "json"], cwd=ROOT, capture_output=True,
                          text=True, env=os.environ | {"JAVA_HOME": "/nonexistent"}, timeout=120, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "JAVA_HOME=/nonexistent" in json_out(proc)["details"][0]["message"]
    assert not (tmp_path / "s").exists()


def test_a_closed_pipe_keeps_the_exit_code(tmp_path):
    # `ceap run ... | head -1`: the reader goes away after one line.
    proc = subprocess.Popen([sys.executable, "-m", "ceap_engine.cli", "run", "examples/payload.json", "--store",
                             str(tmp_path / "s")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=300) == 0, err
    assert first.startswith(b"SUCCEEDED") and "Traceback" not in err and "BrokenPipe" not in err
