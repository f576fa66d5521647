"""Building blocks of CloudFormation JSON: intrinsic functions and IAM policy statements.

>>> ref("Queue")
{'Ref': 'Queue'}
>>> allow("Read", ["s3:GetObject"], ["*"])["Action"]
['s3:GetObject']
"""

from __future__ import annotations

import re
from typing import Any

from ceap_engine.pipeline.spec import StageSpec

__all__ = [
    "LOG_DELIVERY_WILDCARD", "XRAY_WILDCARD", "allow", "arn", "assume", "getatt", "logical_id", "policy", "ref", "sub",
]


def logical_id(stage: StageSpec, suffix: str) -> str:
    """``ETLLambda``, ``ETLLogGroup``, ``HeavyETLJob`` ..."""
    return f"{re.sub(r'[^A-Za-z0-9]', '', stage.name)}{suffix}"


def sub(text: str) -> dict[str, str]:
    """``{"Fn::Sub": text}``."""
    return {"Fn::Sub": text}


def arn(service: str, resource: str, *, region: bool = True, account: bool = True) -> dict[str, str]:
    """An ARN of this partition (and region/account unless told not to) as ``Fn::Sub``."""
    return sub(
        f"arn:${{AWS::Partition}}:{service}:{'${AWS::Region}' if region else ''}:"
        f"{'${AWS::AccountId}' if account else ''}:{resource}"
    )


def getatt(resource: str, attribute: str) -> dict[str, list[str]]:
    """``{"Fn::GetAtt": [resource, attribute]}``."""
    return {"Fn::GetAtt": [resource, attribute]}


def ref(name: str) -> dict[str, str]:
    """``{"Ref": name}``."""
    return {"Ref": name}


def assume(service: str) -> dict[str, Any]:
    """The trust policy letting ``service`` assume a role."""
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def policy(name: str, statements: list[dict[str, Any]]) -> dict[str, Any]:
    """An inline policy of a role."""
    return {"PolicyName": name, "PolicyDocument": {"Version": "2012-10-17", "Statement": statements}}


def allow(sid: str, actions: list[str], resources: list[Any], **extra: Any) -> dict[str, Any]:
    """An Allow statement (actions sorted, so the same grants give the same text)."""
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources, **extra}


# --- the statements AWS accepts only on "Resource": "*" ----------------------------------------
# X-Ray: PutTraceSegments, PutTelemetryRecords and the sampling reads have no resource-level
# permissions at all (the X-Ray service authorization reference lists no resource types for them),
# so tracing from Lambda or Step Functions needs "*".
XRAY_WILDCARD = allow(
    "XRayTracingHasNoResourceLevelPermissions",
    ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"],
    ["*"],
)
# Step Functions logging to CloudWatch Logs goes through "vended log delivery": these actions
# manage deliveries and the log group resource policy, and AWS documents that they must be granted
# on "*" (they act on delivery objects that have no ARN before they exist).
LOG_DELIVERY_WILDCARD = allow(
    "StepFunctionsLogDeliveryRequiresWildcard",
    [
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:UpdateLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
        "logs:DescribeLogGroups",
    ],
    ["*"],
)
