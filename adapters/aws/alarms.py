"""The CloudWatch alarms of a workflow's stack: what the seed's "Configure alerts" step asks for.

One alarm each for: a message in the dead-letter queue, a failed execution, a timed-out
execution, and per stage function its errors and its throttles. With an e-mail address the
stack also gets an SNS topic that the alarms notify (on alarm and on recovery) and a
subscription of that address (AWS mails a confirmation link first).

Every alarm fires on the first occurrence (threshold 0, one 5-minute period) and treats
missing data as "not breaching": no traffic is not an incident.

Example::

    resources = alarm_resources(spec, dlq_name="ceap-workflow-demo-dlq", alarm_email="ops@example.com")
    sorted(resources)[:2]   # ['AlarmTopic', 'AlarmTopicEmail']
"""

from __future__ import annotations

import re
from typing import Any

from ceap_engine.errors import InputError, Problem
from ceap_engine.pipeline.spec import StageSpec, WorkflowSpec

from .cfn import getatt, ref

__all__ = ["alarm_resources", "validate_alarm_email"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PERIOD_SECONDS = 300


def validate_alarm_email(email: str) -> str:
    """Return ``email`` if it looks like an address SNS can mail, else raise :class:`InputError`.

    >>> validate_alarm_email("ops@example.com")
    'ops@example.com'
    """
    if not _EMAIL.match(email):
        raise InputError([Problem("/alarmEmail", f"--alarm-email {email!r} is not an e-mail address")], "argument")
    return email


def _alarm(description: str, namespace: str, metric: str, dimensions: dict[str, Any], statistic: str,
           actions: list[Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "AlarmDescription": description,
        "Namespace": namespace,
        "MetricName": metric,
        "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
        "Statistic": statistic,
        "Period": PERIOD_SECONDS,
        "EvaluationPeriods": 1,
        "Threshold": 0,
        "ComparisonOperator": "GreaterThanThreshold",
        "TreatMissingData": "notBreaching",
    }
    if actions:
        properties["AlarmActions"] = actions
        properties["OKActions"] = actions
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": properties}


def _logical(stage: StageSpec, suffix: str) -> str:
    return f"{re.sub(r'[^A-Za-z0-9]', '', stage.name)}{suffix}"


def alarm_resources(spec: WorkflowSpec, *, dlq_name: str, alarm_email: str | None = None) -> dict[str, Any]:
    """The alarms (and, with ``alarm_email``, the SNS topic and its e-mail subscription) of ``spec``'s stack."""
    resources: dict[str, Any] = {}
    actions: list[Any] = []
    if alarm_email:
        validate_alarm_email(alarm_email)
        resources["AlarmTopic"] = {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": f"ceap-workflow-{spec.name}-alarms",
                           "DisplayName": f"ceap {spec.name} alarms"},
        }
        resources["AlarmTopicEmail"] = {
            "Type": "AWS::SNS::Subscription",
            "Properties": {"TopicArn": ref("AlarmTopic"), "Protocol": "email", "Endpoint": alarm_email},
        }
        actions = [ref("AlarmTopic")]
    machine = {"StateMachineArn": ref("StateMachine")}
    resources["DeadLetterQueueAlarm"] = _alarm(
        f"ceap {spec.name}: a payload failed {spec.queue.max_receive_count} times and is in the dead-letter queue "
        f"{dlq_name}",
        "AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": getatt("DeadLetterQueue", "QueueName")},
        "Maximum", actions)
    resources["ExecutionsFailedAlarm"] = _alarm(
        f"ceap {spec.name}: an execution failed (see executions/<id>/failure.json in the workflow bucket)",
        "AWS/States", "ExecutionsFailed", machine, "Sum", actions)
    resources["ExecutionsTimedOutAlarm"] = _alarm(
        f"ceap {spec.name}: an execution timed out", "AWS/States", "ExecutionsTimedOut", machine, "Sum", actions)
    for stage in (s for s in spec.stages if s.kind == "lambda"):
        # Ref of the function is its name: the alarm depends on the function it watches.
        function = {"FunctionName": ref(_logical(stage, "Lambda"))}
        resources[_logical(stage, "ErrorsAlarm")] = _alarm(
            f"ceap {spec.name}: stage {stage.name} raised an error", "AWS/Lambda", "Errors", function, "Sum", actions)
        resources[_logical(stage, "ThrottlesAlarm")] = _alarm(
            f"ceap {spec.name}: stage {stage.name} was throttled (account concurrency)", "AWS/Lambda", "Throttles",
            function, "Sum", actions)
    return resources
