"""Tasks reaching real things: aws-sdk and optimized integrations on a moto server, a Lambda Invoke endpoint."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest

from tests.serve.conftest import ROLE, start_server

pytestmark = pytest.mark.moto


def _wait(sfn, arn: str) -> dict:
    deadline = time.monotonic() + 60
    while (doc := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.05)
    return doc


class _Invoke(BaseHTTPRequestHandler):
    """The Lambda Invoke API (POST /2015-03-31/functions/NAME/invocations) of one function that doubles."""

    def do_POST(self) -> None:
        event = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"null")
        name = self.path.split("/")[3]
        if event.get("fail"):
            body, extra = json.dumps({"errorType": "ValueError", "errorMessage": "asked to fail"}), {"X-Amz-Function-Error": "Unhandled"}
        else:
            body, extra = json.dumps({"doubled": event["n"] * 2, "by": name}), {}
        self.send_response(200)
        for key, value in {"Content-Type": "application/json", "Content-Length": str(len(body)), **extra}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def lambda_endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Invoke)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def remote_server(moto_endpoint, lambda_endpoint, tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("remote"), "--no-workflows", "--aws-endpoint-url", moto_endpoint,
                           "--lambda-endpoint", lambda_endpoint, "--function", "Echo=tests.serve.handlers:echo")
    yield running
    running.stop()


def test_aws_sdk_and_optimized_integrations_reach_the_emulator(remote_server, moto_endpoint) -> None:
    aws = {"endpoint_url": moto_endpoint, "region_name": "us-east-1", "aws_access_key_id": "test",
           "aws_secret_access_key": "test"}
    sqs, s3 = boto3.client("sqs", **aws), boto3.client("s3", **aws)
    queue = sqs.create_queue(QueueName=f"serve-{time.time_ns()}")["QueueUrl"]
    bucket = f"serve-{time.time_ns()}"
    s3.create_bucket(Bucket=bucket)
    definition = {"StartAt": "Send", "States": {
        "Send": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
                 "Parameters": {"QueueUrl": queue, "MessageBody": {"order.$": "$.order"}}, "ResultPath": "$.sent",
                 "Next": "Put"},
        "Put": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:putObject",
                "Parameters": {"Bucket": bucket, "Key": "out.json", "Body.$": "States.JsonToString($.order)"},
                "ResultPath": "$.put", "Next": "Missing"},
        "Missing": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
                    "Parameters": {"Bucket": bucket, "Key": "absent.json"},
                    "Catch": [{"ErrorEquals": ["S3.NoSuchKeyException"], "ResultPath": "$.caught", "Next": "Done"}],
                    "Next": "Done"},
        "Done": {"Type": "Succeed"}}}
    sfn = remote_server.client()
    arn = sfn.create_state_machine(name="Remote", definition=json.dumps(definition), roleArn=ROLE)["stateMachineArn"]
    doc = _wait(sfn, sfn.start_execution(stateMachineArn=arn, input='{"order": {"id": 9}}')["executionArn"])
    assert doc["status"] == "SUCCEEDED", doc
    output = json.loads(doc["output"])
    assert output["sent"]["MessageId"] and output["caught"]["Error"] == "S3.NoSuchKeyException"
    message = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"][0]
    assert json.loads(message["Body"]) == {"order": {"id": 9}}
    assert json.loads(s3.get_object(Bucket=bucket, Key="out.json")["Body"].read()) == {"id": 9}


def test_lambda_resolves_to_a_local_handler_then_the_invoke_endpoint(remote_server) -> None:
    definition = {"StartAt": "Local", "States": {
        "Local": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:Echo", "ResultPath": "$.local",
                  "Next": "Remote"},
        "Remote": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "OutputPath": "$.Payload",
                   "Parameters": {"FunctionName": "Doubler", "Payload": {"n.$": "$.n"}}, "End": True}}}
    sfn = remote_server.client()
    arn = sfn.create_state_machine(name="Lambdas", definition=json.dumps(definition), roleArn=ROLE)["stateMachineArn"]
    doc = _wait(sfn, sfn.start_execution(stateMachineArn=arn, input='{"n": 21}')["executionArn"])
    assert doc["status"] == "SUCCEEDED", doc
    assert json.loads(doc["output"]) == {"doubled": 42, "by": "Doubler"}
    failing = _wait(sfn, sfn.start_execution(stateMachineArn=arn, input='{"n": 1, "fail": true}')["executionArn"])
    assert failing["status"] == "SUCCEEDED"  # Echo (local) never fails; the remote one gets only n
    broken = {"StartAt": "R", "States": {"R": {"Type": "Task", "Resource": "arn:aws:lambda:us-east-1:123456789012:function:Doubler",
                                               "End": True}}}
    arn = sfn.create_state_machine(name="Broken", definition=json.dumps(broken), roleArn=ROLE)["stateMachineArn"]
    doc = _wait(sfn, sfn.start_execution(stateMachineArn=arn, input='{"fail": true}')["executionArn"])
    assert (doc["status"], doc["error"]) == ("FAILED", "ValueError")


def test_distributed_map_reads_its_items_from_s3_and_writes_its_results_there(remote_server, moto_endpoint) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test")
    bucket = f"items-{time.time_ns()}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/items.json", Body=json.dumps([{"n": i} for i in range(5)]).encode())
    definition = {"StartAt": "Fan", "States": {"Fan": {
        "Type": "Map", "End": True, "MaxConcurrency": 2,
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                       "Parameters": {"Bucket": bucket, "Key": "in/items.json"}},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}, "StartAt": "Keep",
                          "States": {"Keep": {"Type": "Pass", "End": True}}},
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": bucket, "Prefix": "out"}}}}}
    sfn = remote_server.client()
    arn = sfn.create_state_machine(name=f"Items{time.time_ns()}", definition=json.dumps(definition),
                                   roleArn=ROLE)["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    doc = _wait(sfn, execution)
    assert doc["status"] == "SUCCEEDED", doc
    written = json.loads(doc["output"])["ResultWriterDetails"]
    assert written["Bucket"] == bucket and s3.get_object(Bucket=bucket, Key=written["Key"])["Body"].read()
    run = sfn.describe_map_run(mapRunArn=sfn.list_map_runs(executionArn=execution)["mapRuns"][0]["mapRunArn"])
    assert (run["itemCounts"]["total"], run["itemCounts"]["succeeded"], run["itemCounts"]["resultsWritten"]) == (5, 5, 5)
    assert run["maxConcurrency"] == 2
