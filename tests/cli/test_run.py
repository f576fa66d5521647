"""``ceap run --local`` and ``ceap event`` as a user runs them: a subprocess on the shipped examples."""

import json
import re
import shutil
from pathlib import Path

import pytest

from .conftest import ROOT, json_out


def test_realtime_example_end_to_end(run_ceap, tmp_path):
    store = tmp_path / "store"
    proc = run_ceap("run", "--local", "examples/payload.json", "--store", str(store), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json_out(proc)
    assert doc["status"] == "SUCCEEDED" and doc["workflow"] == "realtime"
    assert set(doc) >= {"schemaVersion", "executionArn", "name", "stateMachineArn", "startDate", "stopDate", "input",
                        "output", "error", "cause", "events", "executionId", "store", "outputs", "counts"}
    assert doc["executionId"] == doc["name"]
    assert all(check["ok"] for check in doc["reconciliation"]) and len(doc["reconciliation"]) == 5
    # The chain from the lines read to the actions, skipped and merged records included.
    assert doc["reconciliation"][0]["check"] == "ETL: 1200 read = 1031 out + 11 errors + 121 skipped + 37 merged"
    assert doc["reconciliation"][-1]["check"] == "Reactive: 581 in (= previous out 581) = 473 out + 108 skipped"
    bucket_root = Path(doc["store"]) / "buckets" / doc["bucket"]
    for stage, key in doc["outputs"].items():
        written = json.loads((bucket_root / key).read_text())
        assert written["metrics"] == doc["counts"][stage]
    etl = doc["counts"]["ETL"]
    assert etl["processedCount"] == etl["transformedCount"] + etl["errorCount"]
    assert etl["errorCount"] >= 5  # the example data has malformed lines: counted, not fatal
    assert (store / "candidates.sqlite3").exists()
    assert doc["events"][0]["type"] == "ExecutionStarted" and doc["events"][-1]["type"] == "ExecutionSucceeded"


def test_text_output_shows_counts_reconciliation_and_locations(run_ceap, tmp_path):
    proc = run_ceap("run", "--local", "examples/payload.json", "--store", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "SUCCEEDED" in proc.stdout
    assert "ok  ETL: 1200 read = 1031 out + 11 errors + 121 skipped + 37 merged" in proc.stdout
    assert "ok  Filter: 1031 in (= previous out 1031) = 581 out + 450 rejected" in proc.stdout
    assert str(tmp_path.resolve()) in proc.stdout
    assert "> ETL" in proc.stderr and "ok Reactive" in proc.stderr  # a progress line per stage
    assert re.search(r"^\s+\d+\.\ds  ok ETL  processedCount=\d+", proc.stderr, re.MULTILINE), proc.stderr  # wall time
    assert "t+    0.0s" not in proc.stderr
    assert "warning" not in proc.stderr  # the built-in realtime workflow fits Express


def bad_payload(tmp_path: Path, payload) -> Path:
    path = tmp_path / "payload.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    shutil.copytree(ROOT / "examples" / "data", tmp_path / "data")
    return path


def test_bad_payloads_exit_2_naming_the_field_and_write_nothing(run_ceap, tmp_path):
    good = {"programId": "p", "marketplace": "US", "dateRange": {"start": "2025-03-01", "end": "2025-03-31"},
            "source": "data/orders.jsonl"}
    cases = [
        ("{not json", "/"),
        ({k: v for k, v in good.items() if k != "programId"}, "/programId"),
        (good | {"dateRange": {"start": "2025-03-31", "end": "2025-03-01"}}, "/dateRange"),
        ({k: v for k, v in good.items() if k != "source"}, "/source"),
        (good | {"source": "data/missing.jsonl"}, "/source"),
    ]
    for i, (payload, field) in enumerate(cases):
        case_dir = tmp_path / f"case{i}"
        case_dir.mkdir()
        path = bad_payload(case_dir, payload)
        store = case_dir / "store"
        proc = run_ceap("run", "--local", str(path), "--store", str(store), "--format", "json")
        assert proc.returncode == 2, (payload, proc.stdout, proc.stderr)
        doc = json_out(proc)
        assert doc["error"] == "invalid payload" and any(d["path"] == field for d in doc["details"]), doc
        assert not store.exists(), f"a bad payload must write nothing: {payload}"


def test_event_creates_then_deduplicates(run_ceap, tmp_path):
    event = {"eventId": "ev-1", "eventType": "ORDER_DELIVERED", "customerId": "C-9", "programId": "review-solicitation",
             "marketplace": "US", "subject": {"type": "PRODUCT", "id": "B0X1"}, "orderId": "O-1", "orderValue": 25.0,
             "currency": "USD"}
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    first = run_ceap("event", "--local", str(path), "--store", str(tmp_path / "s"), "--format", "json")
    assert first.returncode == 0, first.stderr
    assert json_out(first)["status"] == "CREATED"
    again = run_ceap("event", "--local", str(path), "--store", str(tmp_path / "s"), "--format", "json")
    assert json_out(again)["status"] == "DEDUPLICATED"
    path.write_text(json.dumps({"eventId": "x"}))
    bad = run_ceap("event", "--local", str(path), "--store", str(tmp_path / "s"))
    assert bad.returncode == 2 and "eventType" in bad.stderr


@pytest.mark.spark
def test_batch_example_end_to_end_with_the_glue_job(run_ceap, tmp_path):
    proc = run_ceap("run", "--local", "examples/payload-batch.json", "--workflow", "batch", "--store", str(tmp_path),
                    "--format", "json", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json_out(proc)
    assert list(doc["outputs"]) == ["ETL", "Filter", "HeavyETL", "Score", "Store", "Reactive"]
    assert all(check["ok"] for check in doc["reconciliation"])
    root = Path(doc["store"]) / "buckets" / doc["bucket"]
    heavy = json.loads((root / doc["outputs"]["HeavyETL"]).read_text())
    passed = doc["counts"]["Filter"]["passedCount"]
    assert heavy["metrics"]["inputCount"] == passed == heavy["counts"]["candidates"]
    score_manifest = json.loads((root / doc["outputs"]["Score"]).read_text())
    assert score_manifest["reconciliation"]["in"] == passed  # Score's Distributed Map read every HeavyETL part
    assert doc["counts"]["HeavyETL"] == heavy["metrics"]
    scored = [json.loads(line) for part in score_manifest["parts"]["candidates"]
              for line in (root / part["key"]).read_text().splitlines()]
    variants = {s["metadata"]["variant"] for c in scored for s in c["scores"].values()
                if "variant" in s.get("metadata", {})}
    assert variants == {"enriched"}  # Score used the HeavyETL features for every candidate
