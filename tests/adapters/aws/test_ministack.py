"""The deploy against a local AWS that runs the Lambda code: MiniStack (``python -m ministack``).

Unlike moto, MiniStack's CloudFormation creates the state machine in the Step Functions
it executes, and its Lambda runs the uploaded zip in a subprocess - so the stage code of
the package really runs: deploy, run the example, read the stage outputs from S3 and the
candidates from DynamoDB, the failure path (up to MiniStack's limits below), a redeploy that changes nothing, destroy.

MiniStack's limits, checked by name (docs/deploy.md lists them):

* its Lambda runs every ``python3.x`` runtime with the interpreter MiniStack itself runs
  on, so the package is built for that Python (``--runtime``), not the python3.12 default;
* its Pipes take DynamoDB-stream sources only, not SQS: the queue's Pipe is created but
  starts nothing, so executions are started with ``ceap run --target aws``;
* it has no ``glue:startJobRun.sync``: only the Express (realtime) workflow runs here;
* its Python Lambda worker reports no ``errorType`` (every stage error is
  ``Runtime.HandlerError``), so a stage's ``Ceap.PermanentError`` is retried like a transient
  error before the Catch takes it;
* it has no ``aws-sdk:s3:putObject`` task, so the failure path's RecordFailure cannot write
  ``executions/<id>/failure.json``; the execution still fails with the stage's error and cause.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from ceap_engine.cli.app import app
from ceap_engine.pipeline.layout import execution_key, failure_key

ROOT = Path(__file__).resolve().parents[3]
REGION = "us-east-1"
RUNTIME = f"{sys.version_info.major}.{sys.version_info.minor}"  # MiniStack's interpreter runs the functions
STAGES = ("ETL", "Filter", "Score", "Store", "Reactive")


def ceap(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


class Stack:
    def __init__(self, endpoint: str, name: str, wheelhouse: Path, build_dir: Path) -> None:
        self.endpoint, self.name, self.wheelhouse, self.build_dir = endpoint, name, wheelhouse, build_dir

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION)

    def deploy(self) -> Any:
        return ceap("deploy", "--target", "aws", "-n", self.name, "-t", "express", "--endpoint-url", self.endpoint,
                    "--runtime", f"python{RUNTIME}", "--wheelhouse", str(self.wheelhouse),
                    "--build-dir", str(self.build_dir))

    @property
    def bucket(self) -> str:
        account = self.client("sts").get_caller_identity()["Account"]
        return f"ceap-workflow-{self.name}-{account}-{REGION}"

    def run(self, payload: dict[str, Any], folder: Path) -> dict[str, Any]:
        path = folder / f"payload-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(payload))
        result = ceap("run", "--target", "aws", "-n", self.name, "--endpoint-url", self.endpoint, str(path),
                      "--format", "json")
        document = json.loads(result.output)
        document["exitCode"] = result.exit_code
        return document


@pytest.fixture(scope="module")
def deployed(ministack_endpoint: str, lambda_wheels: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Any]]:
    wheelhouse, _ = lambda_wheels(RUNTIME)
    stack = Stack(ministack_endpoint, f"ms-{uuid.uuid4().hex[:6]}", wheelhouse, tmp_path_factory.mktemp("build"))
    first = stack.deploy()
    yield stack, first


@pytest.fixture(scope="module")
def example_run(deployed: tuple[Stack, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    stack, first = deployed
    assert first.exit_code == 0, first.output
    stack.client("s3").upload_file(str(ROOT / "examples" / "data" / "orders.jsonl"), stack.bucket, "inputs/orders.jsonl")
    payload = {**json.loads((ROOT / "examples" / "payload.json").read_text()),
               "source": f"s3://{stack.bucket}/inputs/orders.jsonl"}
    return stack.run(payload, tmp_path_factory.mktemp("payloads"))


def test_deploy_reaches_create_complete_with_every_resource(deployed: tuple[Stack, Any]) -> None:
    stack, first = deployed

    assert first.exit_code == 0, first.output
    assert f"ceap-workflow-{stack.name}: CREATE_COMPLETE" in first.output
    functions = {f["FunctionName"]: f for f in stack.client("lambda").list_functions()["Functions"]}
    etl = functions[f"CeapWorkflow-{stack.name}-ETLLambda"]
    assert etl["Runtime"] == f"python{RUNTIME}" and etl["Handler"] == "adapters.aws.handler.handler"


def test_the_example_runs_in_the_deployed_zip_with_the_local_counts(example_run: dict[str, Any]) -> None:
    why = {k: example_run.get(k) for k in ("status", "error", "cause")}
    assert example_run["exitCode"] == 0 and example_run["status"] == "SUCCEEDED", why
    stages = example_run["output"]["stages"]
    assert list(stages) == list(STAGES)
    etl = stages["ETL"]["counts"]
    assert (etl["processedCount"], etl["transformedCount"], etl["errorCount"]) == (1079, 1068, 11)
    assert stages["Store"]["counts"]["storedCount"] == 581
    assert stages["Reactive"]["counts"]["actionCount"] == 473


def test_every_stage_output_is_in_the_workflow_bucket(deployed: tuple[Stack, Any], example_run: dict[str, Any]) -> None:
    stack, _ = deployed
    s3 = stack.client("s3")

    for stage in STAGES:
        document = json.loads(s3.get_object(Bucket=stack.bucket, Key=execution_key(example_run["executionId"], stage))
                              ["Body"].read())
        assert document, stage


def test_the_stored_candidates_are_in_dynamodb(deployed: tuple[Stack, Any], example_run: dict[str, Any]) -> None:
    stack, _ = deployed
    paginator = stack.client("dynamodb").get_paginator("scan")

    def count(prefix: str) -> int:
        pages = paginator.paginate(TableName=f"ceap-workflow-{stack.name}-candidates", Select="COUNT",
                                   FilterExpression="begins_with(pk, :p)", ExpressionAttributeValues={":p": {"S": prefix}})
        return sum(page["Count"] for page in pages)

    assert count("CUSTOMER#") == example_run["output"]["stages"]["Store"]["counts"]["storedCount"] == 581
    # Beside them, Reactive's engagement claims: one per action issued (stages.domain.engagement_key).
    assert count("ENGAGEMENT#") == example_run["output"]["stages"]["Reactive"]["counts"]["actionCount"]


def test_a_failing_stage_takes_the_failure_path_and_the_execution_fails_with_its_error(
    deployed: tuple[Stack, Any], example_run: dict[str, Any], tmp_path: Path
) -> None:
    stack, _ = deployed
    payload = {**json.loads((ROOT / "examples" / "payload.json").read_text()),
               "source": f"s3://{stack.bucket}/inputs/missing.jsonl"}  # ETL cannot read it

    failed = stack.run(payload, tmp_path)

    assert failed["exitCode"] == 1 and failed.get("status") == "FAILED", failed
    # The Catch path ends in Failed.Stage: the execution fails with the stage's own error and cause.
    assert "inputs/missing.jsonl' does not exist" in failed["cause"]
    # Named check of a MiniStack limit: it has no aws-sdk:s3:putObject, so RecordFailure fails (and its
    # Catch goes on to the Fail state) without writing failure.json - on AWS and locally it is written.
    with pytest.raises(Exception, match="NoSuchKey|Not Found|404"):
        stack.client("s3").get_object(Bucket=stack.bucket, Key=failure_key(failed["executionId"]))


def test_a_second_deploy_changes_nothing(deployed: tuple[Stack, Any], example_run: dict[str, Any]) -> None:
    stack, _ = deployed

    again = stack.deploy()

    assert again.exit_code == 0, again.output
    assert "already uploaded, skipped" in again.output
    assert "no change (same template and parameters)" in again.output and "change set for" not in again.output


def test_the_pipe_is_created_from_the_queue_to_the_state_machine(deployed: tuple[Stack, Any], example_run: dict[str, Any]) -> None:
    # MiniStack creates the Pipe but polls only DynamoDB-stream sources (its named limit), so the
    # queue -> execution path is not exercised here; the executions above were started by `ceap run`.
    stack, _ = deployed
    pipe = stack.client("pipes").describe_pipe(Name=f"ceap-workflow-{stack.name}-pipe")
    assert pipe["Source"].endswith(f":ceap-workflow-{stack.name}-queue")
    assert pipe["Target"].endswith(f":stateMachine:Ceap-{stack.name}-Workflow")


def test_destroy_removes_the_stack_and_its_bucket(deployed: tuple[Stack, Any], example_run: dict[str, Any]) -> None:
    stack, _ = deployed
    bucket = stack.bucket

    gone = ceap("destroy", "-n", stack.name, "--endpoint-url", stack.endpoint, "--yes")

    assert gone.exit_code == 0, gone.output
    assert f"AWS::Lambda::Function CeapWorkflow-{stack.name}-ETLLambda" in gone.output
    assert bucket not in {b["Name"] for b in stack.client("s3").list_buckets()["Buckets"]}
    with pytest.raises(Exception, match="does not exist"):
        stack.client("cloudformation").describe_stacks(StackName=f"ceap-workflow-{stack.name}")
