"""Task resources, parsed: which runner key each ARN names."""

from __future__ import annotations

import pytest

from ceap_engine.runtime.tasks import parse_resource


@pytest.mark.parametrize(("arn", "key"), [
    ("arn:aws:states:::lambda:invoke", "lambda:invoke"),
    ("arn:aws:states:::glue:startJobRun.sync", "glue:startJobRun"),
    ("arn:aws:lambda:us-east-1:123456789012:function:f", "lambda:function"),
    ("arn:aws:states:us-east-1:123456789012:activity:review-step", "activity"),
    # An activity named like an action is still an activity, not a service "activity:work".
    ("arn:aws:states:us-east-1:123456789012:activity:work", "activity"),
])
def test_resource_keys(arn: str, key: str) -> None:
    info = parse_resource(arn)
    assert info is not None and info.key == key
