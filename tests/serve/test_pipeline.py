"""ceap's own workflows on the endpoint: the realtime pipeline through StartSyncExecution."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def payload() -> dict:
    document = json.loads((ROOT / "examples" / "payload.json").read_text())
    document["source"] = str(ROOT / "examples" / "data" / "orders.jsonl")
    return document


def test_realtime_pipeline_through_start_sync_execution_counts_as_ceap_run(server, tmp_path) -> None:
    sfn = server.client()
    arn = "arn:aws:states:us-east-1:123456789012:stateMachine:Ceap-realtime-Workflow"
    assert sfn.describe_state_machine(stateMachineArn=arn)["type"] == "EXPRESS"
    result = sfn.start_sync_execution(stateMachineArn=arn, input=json.dumps(payload()))
    assert result["status"] == "SUCCEEDED", result.get("cause")
    served = {name: info["counts"] for name, info in json.loads(result["output"])["stages"].items()}

    payload_file = tmp_path / "payload.json"
    payload_file.write_text(json.dumps(payload()))
    out = subprocess.run([sys.executable, "-m", "ceap_engine.cli", "run", "--local", "--store", str(tmp_path / "store"),
                          "--format", "json", str(payload_file)], check=False, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    local = json.loads(out.stdout)["counts"]
    assert served == local
    assert served["Reactive"]["actionCount"] > 0
    # The stage data landed in the embedded store under --data.
    assert any((server.data / "store").rglob("output.json"))


def test_batch_workflow_is_registered_as_standard(server) -> None:
    sfn = server.client()
    names = {m["name"]: m["type"] for m in sfn.list_state_machines()["stateMachines"]}
    assert names.get("Ceap-realtime-Workflow") == "EXPRESS"
    if "Ceap-batch-Workflow" in names:  # registered when pyspark and Java are there
        assert names["Ceap-batch-Workflow"] == "STANDARD"
        assert sfn.list_executions(
            stateMachineArn="arn:aws:states:us-east-1:123456789012:stateMachine:Ceap-batch-Workflow")["executions"] == []
