"""``ceap run`` under the execution-name rule and a real ``kill -9``, as an operator meets them."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, json_out

VOLATILE = ("createdAt", "updatedAt", "expiresAt", "workflowExecutionId")


def stored_rows(store: Path) -> dict[tuple[str, str], tuple]:
    """Every candidate row: score, channels, version and the document without its timestamps."""
    with sqlite3.connect(store / "candidates.sqlite3") as db:
        rows = db.execute("SELECT pk, sk, score, channels, data FROM candidates").fetchall()
    out = {}
    for pk, sk, score, channels, data in rows:
        document = json.loads(data)
        version = document["metadata"].pop("version")
        for name in VOLATILE:
            document["metadata"].pop(name, None)
        for model in document["scores"].values():
            model.pop("timestamp", None)
        out[(pk, sk)] = (score, channels, version, document)
    return out


def actions(store: Path, name: str) -> list[dict]:
    folder = store / "buckets" / "ceap-workflow-realtime" / "executions" / name / "Reactive"
    manifest = json.loads((folder / "output.json").read_text())
    lines = [line for part in manifest["parts"]["actions"]
             for line in (folder.parent.parent.parent / part["key"]).read_text().splitlines()]
    return sorted(({k: v for k, v in json.loads(line).items() if k != "createdAt"} for line in lines),
                  key=lambda action: action["actionId"])


def test_a_name_reused_with_another_input_is_refused_with_exit_2_and_nothing_written(run_ceap, tmp_path):
    store = tmp_path / "store"
    first = run_ceap("run", "examples/payload.json", "--store", str(store), "--execution-name", "daily")
    assert first.returncode == 0, first.stderr
    other = tmp_path / "payload-uk.json"
    payload = json.loads((ROOT / "examples" / "payload.json").read_text())
    other.write_text(json.dumps(dict(payload, marketplace="UK", source=str(ROOT / "examples" / "data" / "orders.jsonl"))))
    files_before = sorted(p.relative_to(store) for p in (store / "buckets").rglob("*"))

    refused = run_ceap("run", str(other), "--store", str(store), "--execution-name", "daily", "--format", "json")

    assert refused.returncode == 2
    problem = json_out(refused)
    assert "ExecutionAlreadyExists" in json.dumps(problem) and "--replace" in json.dumps(problem)
    assert sorted(p.relative_to(store) for p in (store / "buckets").rglob("*")) == files_before

    same = run_ceap("run", "examples/payload.json", "--store", str(store), "--execution-name", "daily", "--format", "json")
    assert same.returncode == 0 and json_out(same)["executionName"]["outcome"] == "rerun"
    replaced = run_ceap("run", str(other), "--store", str(store), "--execution-name", "daily", "--replace")
    assert replaced.returncode == 0, replaced.stderr
    assert "was replaced" in replaced.stdout


def test_kill_9_during_store_then_the_same_name_resumes_to_the_rows_and_actions_of_a_clean_run(run_ceap, tmp_path):
    clean = tmp_path / "clean"
    reference = run_ceap("run", "examples/payload.json", "--store", str(clean), "--execution-name", "daily")
    assert reference.returncode == 0, reference.stderr

    store = tmp_path / "killed"
    victim = subprocess.Popen(
        [sys.executable, "-m", "ceap_engine.cli", "run", "examples/payload.json", "--store", str(store),
         "--execution-name", "daily"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    assert victim.stderr is not None
    for line in victim.stderr:  # the progress lines are the readiness signal
        if "> Store" in line:
            os.kill(victim.pid, signal.SIGKILL)
            break
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    record = json.loads((store / "buckets" / "ceap-workflow-realtime" / "executions" / "daily" / "execution.json")
                        .read_text())
    assert record["status"] == "RUNNING"

    resumed = run_ceap("run", "examples/payload.json", "--store", str(store), "--execution-name", "daily",
                       "--format", "json")

    assert resumed.returncode == 0, resumed.stderr
    assert json_out(resumed)["executionName"]["outcome"] == "resumed"
    assert stored_rows(store) == stored_rows(clean)
    assert actions(store, "daily") == actions(clean, "daily")
    assert {row[2] for row in stored_rows(store).values()} == {1}


def test_replace_without_a_name_is_refused(run_ceap, tmp_path):
    proc = run_ceap("run", "examples/payload.json", "--store", str(tmp_path / "s"), "--replace", "--format", "json")
    assert proc.returncode == 2
    assert "--execution-name" in json.dumps(json_out(proc))
    assert not (tmp_path / "s").exists()
