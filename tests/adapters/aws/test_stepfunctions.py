"""The builder's ASL, created through the Step Functions API, executes in moto."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from typing import Any

import pytest

from adapters.aws.errors import AwsError, AwsNotFound
from adapters.aws.session import AwsClients, AwsSettings
from adapters.aws.stepfunctions import StepFunctionsClient
from ceap_engine.pipeline import BATCH, REALTIME, build_definition, function_placeholder, substitute
from ceap_engine.pipeline.builder import BUCKET_PLACEHOLDER, MANIFEST, MERGES, PLAN, RANGES
from ceap_engine.pipeline.names import lambda_function_name

from .moto import queue_lambda_results, workflow_results

pytestmark = pytest.mark.moto

TRUST = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}]})


def _tiny_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return event\n")
    return buffer.getvalue()


async def deploy_through_the_api(aws: AwsClients, machine_type: str) -> tuple[str, str]:
    """The realtime workflow's ASL with real moto ARNs substituted; returns (machine ARN, bucket)."""
    suffix = uuid.uuid4().hex[:8]
    iam, lam, s3, sfn = [await aws.client(s) for s in ("iam", "lambda", "s3", "stepfunctions")]
    role = (await iam.create_role(RoleName=f"ceap-test-{suffix}", AssumeRolePolicyDocument=TRUST))["Role"]["Arn"]
    bucket = f"ceap-workflow-sfn-{suffix}"
    await s3.create_bucket(Bucket=bucket)
    values = {BUCKET_PLACEHOLDER: bucket}
    for stage in REALTIME.stages:
        created = await lam.create_function(
            FunctionName=f"{lambda_function_name(REALTIME, stage)}-{suffix}", Runtime="python3.11", Role=role,
            Handler="adapters.aws.handler.handler", Code={"ZipFile": _tiny_zip()},
        )
        values[function_placeholder(stage)] = created["FunctionArn"]
    definition = substitute(build_definition(REALTIME), values)
    machine = await sfn.create_state_machine(
        name=f"Ceap-sfn-{suffix}-Workflow", definition=json.dumps(definition), roleArn=role, type=machine_type
    )
    return machine["stateMachineArn"], bucket


async def test_the_realtime_asl_runs_every_stage_in_order_and_ends_with_the_summary(moto_endpoint: str) -> None:
    async with AwsClients(AwsSettings(endpoint_url=moto_endpoint)) as aws:
        # STANDARD: moto has no StartSyncExecution, and Express executions cannot be described on AWS.
        machine, bucket = await deploy_through_the_api(aws, "STANDARD")
        sfn = StepFunctionsClient(await aws.client("stepfunctions"))
        queue_lambda_results(moto_endpoint, workflow_results(REALTIME.stages))
        payload = {"programId": "p-1", "marketplace": "US", "dateRange": {"start": "2025-03-01", "end": "2025-03-31"},
                   "source": f"s3://{bucket}/inputs/orders.jsonl"}

        arn = await sfn.start_execution(machine, payload, name="run-1")
        events: list[dict[str, Any]] = []
        final = await sfn.wait(arn, on_event=events.append, poll_seconds=0.05, timeout_seconds=30)

    assert final.status == "SUCCEEDED", (final.error, final.cause)
    assert final.output["executionId"] == "run-1"
    assert final.output["input"] == payload
    assert list(final.output["stages"]) == [s.name for s in REALTIME.stages]
    assert final.output["stages"]["Score"] == {"outputKey": "executions/x/Score/output.json", "counts": {"inputCount": 3},
                                               "partList": "executions/x/Score/parts.jsonl", "parts": []}
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]
    stages = [s.name for s in REALTIME.stages]
    # ETL fans out over its source: Plan, then its Range and Merge Maps (no item here), then its manifest.
    first = [f"{stages[0]}{step}" for step in (PLAN, RANGES, MERGES, MANIFEST)]
    assert entered == ["Input", *first, *(n for s in stages[1:] for n in (s, f"{s}{MANIFEST}")), "Summary"]
    assert events[-1]["type"] == "ExecutionSucceeded"


async def test_moto_has_no_start_sync_execution_so_express_runs_are_checked_with_start_execution(
    moto_endpoint: str,
) -> None:
    # A separate check of a known moto limit: if moto learns StartSyncExecution this fails, and the
    # express path of `ceap run --target aws` can be tested against it directly.
    # (One attempt: moto answers 500, which the client would otherwise retry with backoff.)
    async with AwsClients(AwsSettings(endpoint_url=moto_endpoint), max_attempts=1) as aws:
        machine, _ = await deploy_through_the_api(aws, "EXPRESS")
        sfn = StepFunctionsClient(await aws.client("stepfunctions"))

        with pytest.raises(AwsError, match="StartSyncExecution") as caught:
            await sfn.start_sync_execution(machine, {"programId": "p-1"})

    assert "Internal Server Error" in str(caught.value)


async def test_the_batch_asl_is_accepted_by_create_state_machine(moto_endpoint: str) -> None:
    async with AwsClients(AwsSettings(endpoint_url=moto_endpoint)) as aws:
        sfn = await aws.client("stepfunctions")
        values = {key: f"arn:aws:lambda:us-east-1:123456789012:function:{key}" for key in
                  [function_placeholder(s) for s in BATCH.stages if s.kind == "lambda"]}
        values.update({BUCKET_PLACEHOLDER: "ceap-workflow-batch-123456789012", "HeavyETLJobName": "ceap-workflow-batch-heavy-etl"})
        definition = json.dumps(substitute(build_definition(BATCH), values))
        # moto's ASL schema predates ItemReader InputType JSONL (AWS added it in 2025): named limit,
        # checked as such - moto refuses exactly that value, and accepts the machine once it reads JSON.
        with pytest.raises(Exception, match="JSONL"):
            await sfn.create_state_machine(name=f"Ceap-batch-{uuid.uuid4().hex[:6]}-Workflow", definition=definition,
                                           roleArn="arn:aws:iam::123456789012:role/ceap-test", type="STANDARD")
        created = await sfn.create_state_machine(
            name=f"Ceap-batch-{uuid.uuid4().hex[:6]}-Workflow", definition=definition.replace('"JSONL"', '"JSON"'),
            roleArn="arn:aws:iam::123456789012:role/ceap-test", type="STANDARD",
        )
        described = await sfn.describe_state_machine(stateMachineArn=created["stateMachineArn"])

    assert json.loads(described["definition"])["States"]["HeavyETL"]["Resource"] == "arn:aws:states:::glue:startJobRun.sync"


async def test_describing_an_execution_that_does_not_exist_is_not_found(moto_endpoint: str) -> None:
    async with AwsClients(AwsSettings(endpoint_url=moto_endpoint)) as aws:
        sfn = StepFunctionsClient(await aws.client("stepfunctions"))

        with pytest.raises(AwsNotFound, match="DescribeExecution"):
            await sfn.describe_execution("arn:aws:states:us-east-1:123456789012:execution:Ceap-none-Workflow:nope")


async def test_a_pipe_batch_of_one_is_unwrapped_by_the_input_state(moto_endpoint: str) -> None:
    # EventBridge Pipes start Step Functions with a JSON array even for batch size 1; moto's
    # interpreter (LocalStack's, tested against AWS) must agree with ours on the unwrapping.
    async with AwsClients(AwsSettings(endpoint_url=moto_endpoint)) as aws:
        machine, bucket = await deploy_through_the_api(aws, "STANDARD")
        sfn = StepFunctionsClient(await aws.client("stepfunctions"))
        queue_lambda_results(moto_endpoint, workflow_results(REALTIME.stages))
        payload = {"programId": "p-1", "marketplace": "US", "dateRange": {"start": "2025-03-01", "end": "2025-03-31"},
                   "source": f"s3://{bucket}/inputs/orders.jsonl"}
        arn = await sfn.start_execution(machine, [payload], name="from-a-pipe")
        events: list[dict[str, Any]] = []
        final = await sfn.wait(arn, on_event=events.append, poll_seconds=0.05, timeout_seconds=30)

    assert final.status == "SUCCEEDED", (final.error, final.cause)
    entered = [e["stateEnteredEventDetails"]["name"] for e in events if e["type"].endswith("StateEntered")]
    assert entered[:3] == ["Input", "Input.Unwrap", f"ETL{PLAN}"]
    etl_input = next(json.loads(e["stateEnteredEventDetails"]["input"]) for e in events
                     if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == f"ETL{PLAN}")
    assert etl_input == payload


async def test_list_executions_reads_a_summary_without_a_name_from_its_arn() -> None:
    # Some backends leave "name" out of ListExecutions; `ceap status` used to die with KeyError.
    from adapters.aws.stepfunctions import StepFunctionsClient

    arn = "arn:aws:states:us-east-1:123456789012:execution:Ceap-demo-Workflow:run-7"

    class Backend:
        async def list_executions(self, **request: object) -> dict[str, object]:
            return {"executions": [{"executionArn": arn, "status": "SUCCEEDED"}]}

    [summary] = await StepFunctionsClient(Backend()).list_executions("arn:machine")

    assert (summary.name, summary.status) == ("run-7", "SUCCEEDED")
