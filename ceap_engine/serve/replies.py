"""StartSyncExecution's reply, written as JSON text in one pass (the endpoint's hottest answer).

The reply is the same document, member for member and byte for byte, as encoding the dict
DescribeExecution's shape gives (``compact_json``), without building that dict first: the
strings are escaped by the JSON encoder's own C function, the dates are ``repr`` floats as
``json`` writes them.

Example::

    endpoint_document = sync_reply(record)  # an Encoded: the endpoint sends it as it is
"""

from __future__ import annotations

import math
from json.encoder import encode_basestring

from ceap_engine.ports import ExecutionRecord
from ceap_engine.serve.endpoint import Encoded

__all__ = ["billed_milliseconds", "sync_reply"]

#: Members of ``extra`` a reply names, in the order DescribeExecution's document has them.
_EXTRA_ARNS = ("stateMachineVersionArn", "stateMachineAliasArn", "mapRunArn")


def billed_milliseconds(record: ExecutionRecord) -> int:
    """Express bills by 100 ms started, at least 100 ms."""
    return max(100, math.ceil(((record.stop_date or record.start_date) - record.start_date) * 10) * 100)


def sync_reply(record: ExecutionRecord) -> Encoded:
    """The StartSyncExecution reply of an ended execution, ``billingDetails`` included.

    >>> r = ExecutionRecord("arn:e", "arn:m", "n", "EXPRESS", "SUCCEEDED", 1.5, '{"a":"é"}', 1.75, "{}")
    >>> sync_reply(r).split(',"inputDetails"')[0]
    '{"executionArn":"arn:e","stateMachineArn":"arn:m","name":"n","status":"SUCCEEDED","startDate":1.5,"stopDate":1.75,"input":"{\\\\"a\\\\":\\\\"é\\\\"}"'
    >>> import json; json.loads(sync_reply(r))["billingDetails"]
    {'billedMemoryUsedInMB': 64, 'billedDurationInMilliseconds': 300}
    """
    parts = ['{"executionArn":', encode_basestring(record.execution_arn), ',"stateMachineArn":',
             encode_basestring(record.state_machine_arn), ',"name":', encode_basestring(record.name),
             ',"status":', encode_basestring(record.status), ',"startDate":', repr(record.start_date)]
    if record.stop_date is not None:
        parts += (',"stopDate":', repr(record.stop_date))
    extra = record.extra
    if extra:
        for key in _EXTRA_ARNS:
            if key in extra:
                parts += (',"', key, '":', encode_basestring(extra[key]))
    parts += (',"input":', encode_basestring(record.input), ',"inputDetails":{"included":true}')
    if record.output is not None:
        parts += (',"output":', encode_basestring(record.output), ',"outputDetails":{"included":true}')
    if record.error is not None:
        parts += (',"error":', encode_basestring(record.error))
    if record.cause is not None:
        parts += (',"cause":', encode_basestring(record.cause))
    parts += (',"billingDetails":{"billedMemoryUsedInMB":64,"billedDurationInMilliseconds":',
              str(billed_milliseconds(record)), "}}")
    return Encoded("".join(parts))
