"""The front door on ``ceap serve``: the SQS API -> each workflow's Pipe -> the served state machine.

One server on the virtual clock, with Express executions kept visible
(``--keep-express-history``) so the tests can count what each delivery started.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.queueing.kill_load import order_line
from tests.serve.conftest import Server, start_server

ROOT = Path(__file__).resolve().parents[2]
MACHINES = "arn:aws:states:us-east-1:123456789012:stateMachine:"
REALTIME, BATCH = MACHINES + "Ceap-realtime-Workflow", MACHINES + "Ceap-batch-Workflow"


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("front"), "--clock", "virtual", "--keep-express-history")
    yield server
    server.stop()


def _payload(source: Path) -> dict:
    return {"programId": "review-solicitation", "marketplace": "US",
            "dateRange": {"start": "2025-03-01", "end": "2025-04-04"}, "source": str(source)}


def _until(condition: Callable[[], object], what: str, timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)
    return value


def _depth(sqs, name: str) -> int:
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return sum(int(attributes[a]) for a in ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                                            "ApproximateNumberOfMessagesDelayed"))


def _executions_of(sfn, machine: str, source: Path) -> list[dict]:
    """Every execution of ``machine`` whose input names ``source``, oldest first, described."""
    found = []
    for item in sfn.list_executions(stateMachineArn=machine, maxResults=1000)["executions"]:
        described = sfn.describe_execution(executionArn=item["executionArn"])
        if str(source) in described["input"]:
            found.append(described)
    return sorted(found, key=lambda d: d["startDate"])


def _rows(server: Server, customer: str) -> int:
    db = sqlite3.connect(server.data / "store" / "candidates.sqlite3")
    try:
        return db.execute("SELECT COUNT(*) FROM candidates WHERE customer_id = ?", (customer,)).fetchone()[0]
    finally:
        db.close()


def _ts(value: datetime | float) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def test_a_message_sent_through_the_sqs_api_runs_the_realtime_workflow_and_is_deleted(front, tmp_path) -> None:
    sqs, sfn = front.sqs(), front.client()
    source = tmp_path / "one.jsonl"
    source.write_text(order_line(9001) + "\n")
    url = sqs.get_queue_url(QueueName="ceap-workflow-realtime-queue")["QueueUrl"]

    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(_payload(source)))

    [execution] = _until(lambda: [e for e in _executions_of(sfn, REALTIME, source) if e["status"] != "RUNNING"],
                         "the execution of the message")
    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    # The deployed Pipe's input: the InputTemplate applied to the record, in a batch of one.
    assert json.loads(execution["input"]) == [_payload(source)]
    _until(lambda: _depth(sqs, "ceap-workflow-realtime-queue") == 0, "the message deleted")
    assert _rows(front, "CK9001") == 1


def test_a_poison_message_reaches_the_dlq_after_exactly_3_receives_then_a_redrive_runs_it(front, tmp_path) -> None:
    sqs, sfn = front.sqs(), front.client()
    source = tmp_path / "later.jsonl"  # not there yet: the ETL stage fails permanently
    url = sqs.get_queue_url(QueueName="ceap-workflow-realtime-queue")["QueueUrl"]

    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(_payload(source)))

    _until(lambda: _depth(sqs, "ceap-workflow-realtime-dlq") == 1, "the message in the DLQ")
    failed = _executions_of(sfn, REALTIME, source)
    assert [e["status"] for e in failed] == ["FAILED"] * 3
    # Each delivery after the 600 s visibility timeout, on the virtual clock (within _until's wall deadline).
    starts = [_ts(e["startDate"]) for e in failed]
    assert all(later - earlier >= 600 for earlier, later in zip(starts, starts[1:]))
    listed = subprocess.run([sys.executable, "-m", "ceap_engine.cli", "dlq", "list", "--local", "--store", str(front.data),
                             "--format", "json"], check=False, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert listed.returncode == 0, listed.stderr
    [dead] = json.loads(listed.stdout)["messages"]
    assert (dead["receiveCount"], dead["source"], dead["body"]) == (3, "ceap-workflow-realtime-queue", _payload(source))

    source.write_text(order_line(9002) + "\n")  # the fix
    dlq = sqs.get_queue_url(QueueName="ceap-workflow-realtime-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sqs.start_message_move_task(SourceArn=dlq_arn)

    _until(lambda: len([e for e in _executions_of(sfn, REALTIME, source) if e["status"] != "RUNNING"]) == 4,
           "the execution of the redriven message")
    assert [e["status"] for e in _executions_of(sfn, REALTIME, source)] == ["FAILED"] * 3 + ["SUCCEEDED"]
    _until(lambda: _depth(sqs, "ceap-workflow-realtime-queue") + _depth(sqs, "ceap-workflow-realtime-dlq") == 0,
           "both queues empty")
    assert _rows(front, "CK9002") == 1


def test_standard_messages_start_executions_at_once_and_a_failure_shows_as_failed_never_in_the_dlq(front, tmp_path) -> None:
    sqs, sfn = front.sqs(), front.client()
    assert {m["name"] for m in sfn.list_state_machines()["stateMachines"]} >= {"Ceap-batch-Workflow"}
    good, bad = tmp_path / "orders.jsonl", tmp_path / "missing.jsonl"
    good.write_text("".join(order_line(9100 + i) + "\n" for i in range(3)))
    url = sqs.get_queue_url(QueueName="ceap-workflow-batch-queue")["QueueUrl"]

    for source in (good, bad):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(_payload(source)))

    # FIRE_AND_FORGET: each message is deleted as soon as its execution started.
    _until(lambda: _executions_of(sfn, BATCH, good) and _executions_of(sfn, BATCH, bad), "both executions started")
    assert _depth(sqs, "ceap-workflow-batch-queue") == 0
    ended = {}
    for source in (good, bad):
        [execution] = _until(lambda: [e for e in _executions_of(sfn, BATCH, source) if e["status"] != "RUNNING"],
                             f"the execution of {source.name}", timeout=300)
        ended[source] = execution
    assert ended[good]["status"] == "SUCCEEDED", ended[good].get("cause")
    assert ended[bad]["status"] == "FAILED"
    assert json.loads(ended[good]["input"]) == [_payload(good)]
    # A failed Standard execution never reaches the DLQ, as on AWS: ListExecutions shows it.
    assert _depth(sqs, "ceap-workflow-batch-dlq") == 0
    failed = sfn.list_executions(stateMachineArn=BATCH, statusFilter="FAILED")["executions"]
    assert ended[bad]["executionArn"] in {e["executionArn"] for e in failed}
    assert all(_rows(front, f"CK{9100 + i}") == 1 for i in range(3))


def test_ceap_send_local_reaches_the_running_serve(front, tmp_path) -> None:
    source = tmp_path / "sent.jsonl"
    source.write_text(order_line(9200) + "\n")
    payload = tmp_path / "payload.json"
    payload.write_text(json.dumps(_payload(source)))

    out = subprocess.run([sys.executable, "-m", "ceap_engine.cli", "send", "--local", str(payload), "--store", str(front.data),
                          "--format", "json"], check=False, capture_output=True, text=True, cwd=ROOT, timeout=120)

    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["where"] == f"ceap serve at {front.url}"
    _until(lambda: _rows(front, "CK9200") == 1, "the sent payload stored")
