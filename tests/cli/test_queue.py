"""``ceap send --local``, ``ceap pipe --local`` and ``ceap dlq list|show|redrive`` as a user runs them."""

import json
import shutil
from pathlib import Path

import pytest

from .conftest import ROOT, json_out


def _example(tmp_path: Path) -> Path:
    (tmp_path / "data").mkdir()
    shutil.copy(ROOT / "examples" / "data" / "orders.jsonl", tmp_path / "data" / "orders.jsonl")
    shutil.copy(ROOT / "examples" / "payload.json", tmp_path / "payload.json")
    return tmp_path / "payload.json"


def test_the_poison_path_through_send_pipe_and_dlq_redrive(run_ceap, tmp_path):
    payload, store = _example(tmp_path), str(tmp_path / "store")
    sent = run_ceap("send", "--local", str(payload), "--store", store, "--format", "json")
    assert sent.returncode == 0, sent.stderr
    message_id = json_out(sent)["messageId"]
    assert json_out(sent)["queue"] == "ceap-workflow-realtime-queue"
    (tmp_path / "data" / "orders.jsonl").rename(tmp_path / "orders.bak")  # the source goes away: ETL fails

    first = run_ceap("pipe", "--local", "--store", store, "--format", "json")
    assert first.returncode == 1, first.stderr
    assert [e["status"] for e in json_out(first)["executions"]] == ["FAILED"] * 3
    assert json_out(first)["dlqMessages"] == 1
    assert json_out(first)["ok"] is False and [d["code"] for d in json_out(first)["details"]] == ["FAILED"] * 3

    listed = json_out(run_ceap("dlq", "list", "--local", "--store", store, "--format", "json"))
    assert [(m["messageId"], m["receiveCount"]) for m in listed["messages"]] == [(message_id, 3)]
    shown = run_ceap("dlq", "show", message_id, "--local", "--store", store)
    assert shown.returncode == 0 and "received 3 time(s), from ceap-workflow-realtime-queue" in shown.stdout
    assert run_ceap("dlq", "show", "no-such-id", "--local", "--store", store).returncode == 1

    (tmp_path / "orders.bak").rename(tmp_path / "data" / "orders.jsonl")  # the fix
    redriven = json_out(run_ceap("dlq", "redrive", "--local", "--store", store, "--format", "json"))
    assert redriven["moved"] == 1
    second = run_ceap("pipe", "--local", "--store", store, "--format", "json")
    assert second.returncode == 0, second.stderr
    assert [e["status"] for e in json_out(second)["executions"]] == ["SUCCEEDED"]
    assert json_out(run_ceap("dlq", "list", "--local", "--store", store, "--format", "json"))["count"] == 0


def test_a_bad_payload_is_not_sent(run_ceap, tmp_path):
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"programId": "p", "marketplace": "US"}))

    proc = run_ceap("send", "--local", str(payload), "--store", str(tmp_path / "store"), "--format", "json")

    assert proc.returncode == 2
    assert json_out(proc)["error"] == "invalid payload"
    listed = json_out(run_ceap("dlq", "list", "--local", "--store", str(tmp_path / "store"), "--format", "json"))
    assert listed["count"] == 0
    assert run_ceap("send", "--local", "-n", "demo", str(payload)).returncode == 2


@pytest.mark.moto
def test_send_to_a_deployed_workflow_names_its_queue(run_ceap, tmp_path, moto_endpoint):
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps({"programId": "p", "marketplace": "US", "dateRange": {"start": "2025-03-01",
                                   "end": "2025-04-04"}, "source": "s3://bucket/inputs/orders.jsonl"}))
    import boto3

    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    sqs.create_queue(QueueName="ceap-workflow-qcli-dlq")
    url = sqs.create_queue(QueueName="ceap-workflow-qcli-queue")["QueueUrl"]
    try:
        proc = run_ceap("send", "-n", "qcli", str(payload), "--endpoint-url", moto_endpoint, "--format", "json")
        assert proc.returncode == 0, proc.stderr
        [message] = sqs.receive_message(QueueUrl=url)["Messages"]
        assert json.loads(message["Body"])["source"] == "s3://bucket/inputs/orders.jsonl"
        assert message["MessageId"] == json_out(proc)["messageId"]
    finally:
        for name in ("ceap-workflow-qcli-queue", "ceap-workflow-qcli-dlq"):
            sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"])
