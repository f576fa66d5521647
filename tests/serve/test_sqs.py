"""The SQS API of ``ceap serve``, on the same port as Step Functions: boto3, the AWS CLI, older SDKs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from botocore.parsers import QueryParser

from tests.queueing import test_api


def test_boto3_runs_the_seed_commands_against_ceap_serve(server) -> None:
    sqs = server.sqs()
    # The very scenario the handler passes behind a bare HTTP server, now on the endpoint.
    test_api.test_boto3_runs_the_seed_commands_against_the_endpoint(sqs)
    # The queue URLs route back here, and both APIs answer on one port.
    [url] = sqs.list_queues(QueueNamePrefix="demo-queue")["QueueUrls"]
    assert url == f"{server.url}/123456789012/demo-queue"
    machines = {m["name"] for m in server.client().list_state_machines()["stateMachines"]}
    assert "Ceap-realtime-Workflow" in machines


def test_boto3_sees_aws_error_codes_from_ceap_serve(server) -> None:
    test_api.test_boto3_sees_aws_error_codes_and_modeled_exceptions(server.sqs())


def test_the_workflows_queues_are_there_with_the_specs_settings(server) -> None:
    sqs = server.sqs()
    url = sqs.get_queue_url(QueueName="ceap-workflow-realtime-queue")["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "600"
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:ceap-workflow-realtime-dlq", "maxReceiveCount": 3}
    dlq = sqs.get_queue_url(QueueName="ceap-workflow-realtime-dlq")["QueueUrl"]
    assert sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["MessageRetentionPeriod"])["Attributes"] == {
        "MessageRetentionPeriod": str(14 * 24 * 3600)}
    assert url in sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"]


def test_the_aws_cli_sends_with_the_seeds_own_command(server, tmp_path) -> None:
    body = tmp_path / "body.json"
    body.write_text('{"hello": "cli"}')
    sqs = server.sqs()
    url = sqs.create_queue(QueueName="cli-queue")["QueueUrl"]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "us-east-1"}
    out = subprocess.run([sys.executable, "-m", "awscli", "sqs", "send-message", "--endpoint-url", server.url,
                          "--queue-url", url, "--message-body", f"file://{body}", "--output", "json"],
                         check=False, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    sent = json.loads(out.stdout)
    [message] = sqs.receive_message(QueueUrl=url)["Messages"]
    assert (message["MessageId"], message["Body"]) == (sent["MessageId"], '{"hello": "cli"}')


def test_an_sdk_speaking_the_query_protocol_gets_an_xml_error_naming_the_versions_to_use(server) -> None:
    form = "Action=SendMessage&Version=2012-11-05&QueueUrl=x&MessageBody=hi".encode()
    request = urllib.request.Request(server.url + "/123456789012/x", data=form, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=30)
    response = refused.value
    body = response.read()
    assert response.code == 400 and response.headers["Content-Type"] == "text/xml"
    # What such an SDK makes of it: botocore's own query-protocol parser.
    parsed = QueryParser().parse({"body": body, "headers": dict(response.headers), "status_code": 400}, None)
    assert parsed["Error"]["Code"] == "InvalidAction"
    assert "SendMessage" in parsed["Error"]["Message"] and "1.34.90" in parsed["Error"]["Message"]


def test_with_no_pipe_the_workflow_queues_are_there_and_messages_wait_on_them(tmp_path) -> None:
    from tests.serve.conftest import start_server

    server = start_server(tmp_path, "--no-pipe")
    try:
        assert any(line.startswith("ceap serve: listening on") and "pipes: off" in line for line in server.lines)
        sqs = server.sqs()
        url = sqs.get_queue_url(QueueName="ceap-workflow-realtime-queue")["QueueUrl"]
        sent = sqs.send_message(QueueUrl=url, MessageBody='{"programId": "p1"}')
        [message] = sqs.receive_message(QueueUrl=url, MessageSystemAttributeNames=["ApproximateReceiveCount"])["Messages"]
    finally:
        server.stop()
    # Nobody but this client received it.
    assert (message["MessageId"], message["Attributes"]["ApproximateReceiveCount"]) == (sent["MessageId"], "1")
