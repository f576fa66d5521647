"""StartSyncExecution's reply written at once is the document the dict path encodes, byte for byte."""

from __future__ import annotations

import json

import pytest

from ceap_engine._json import compact_json
from ceap_engine.ports import ExecutionRecord
from ceap_engine.serve.endpoint import Encoded
from ceap_engine.serve.replies import billed_milliseconds, sync_reply
from ceap_engine.serve.service import _record_json

M = "arn:aws:states:us-east-1:123456789012:stateMachine:m"
E = "arn:aws:states:us-east-1:123456789012:express:m:e"


def _as_dict(record: ExecutionRecord) -> dict:
    """The reply as DescribeExecution's document gives it, without the redrive members, with billingDetails."""
    doc = _record_json(record)
    doc.pop("redriveCount")
    doc.pop("redriveStatus")
    doc["billingDetails"] = {"billedMemoryUsedInMB": 64, "billedDurationInMilliseconds": billed_milliseconds(record)}
    return doc


RECORDS = [
    ExecutionRecord(E, M, "e", "EXPRESS", "SUCCEEDED", 1796192657.4210775, "{}", 1796192657.4212542, "{}"),
    ExecutionRecord(E, M, "é-1", "EXPRESS", "SUCCEEDED", 0.0, '{"q": "a \\"quoted\\" \\u00e9 \\n line"}', 0.35,
                    '["ü",1,null]', extra={"revisionId": "r", "stateMachineVersionArn": f"{M}:3",
                                         "stateMachineAliasArn": f"{M}:live"}),
    ExecutionRecord(E, M, "e", "EXPRESS", "FAILED", 10.0, "{}", 12.01, None, "Oops", 'with "quotes"\tand tabs'),
    ExecutionRecord(E, M, "e", "EXPRESS", "TIMED_OUT", 10.0, "{}", 310.0, None, "States.Timeout", None),
    ExecutionRecord(E, M, "e", "EXPRESS", "ABORTED", 10.0, "{}", None, None, None, None, {"mapRunArn": "arn:mr"}),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.status)
def test_the_written_reply_is_the_encoded_document(record: ExecutionRecord) -> None:
    reply = sync_reply(record)
    assert isinstance(reply, Encoded)
    assert reply == compact_json(_as_dict(record))
    assert json.loads(reply) == _as_dict(record)


def test_billing_counts_started_100_ms_at_least_one() -> None:
    at = [ExecutionRecord(E, M, "e", "EXPRESS", "SUCCEEDED", 5.0, stop_date=5.0 + s) for s in (0.0, 0.1, 0.1001, 2.05)]
    assert [billed_milliseconds(r) for r in at] == [100, 100, 200, 2100]
