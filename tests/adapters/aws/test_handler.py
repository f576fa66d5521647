"""The Lambda entry point: each stage run as a plain function against moto's S3 and DynamoDB."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from adapters.aws.candidates import DynamoDBCandidateStore, candidate_table_schema
from adapters.aws.handler import LambdaStage, StageConfigurationError, make_handler
from adapters.aws.session import AwsClients, AwsSettings
from ceap_engine.pipeline import REALTIME
from ceap_engine.pipeline.stage import PermanentError
from ceap_engine.runtime.tasks import FakeLambdaContext

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_the_stage_comes_from_the_environment() -> None:
    stage = LambdaStage.from_environment({
        "CEAP_STAGE_FUNCTION": "stages.score:run",
        "CEAP_STAGE_CONFIG": '{"threshold": 0.4}',
        "CEAP_CANDIDATE_TABLE": "ceap-workflow-demo-candidates",
        "AWS_REGION": "eu-west-1",
    })

    assert stage.function == "stages.score:run"
    assert stage.config == {"threshold": 0.4}
    assert stage.candidate_table == "ceap-workflow-demo-candidates"
    assert stage.settings == AwsSettings(region="eu-west-1")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "CEAP_STAGE_FUNCTION is not set"),
        ({"CEAP_STAGE_FUNCTION": "stages.etl:run", "CEAP_STAGE_CONFIG": "{oops"}, "CEAP_STAGE_CONFIG is not valid JSON"),
        ({"CEAP_STAGE_FUNCTION": "stages.etl:run", "CEAP_STAGE_CONFIG": "[1]"}, "must be a JSON object"),
    ],
)
def test_a_wrong_environment_says_which_variable_to_fix(environ: dict[str, str], message: str) -> None:
    with pytest.raises(StageConfigurationError, match=message):
        LambdaStage.from_environment(environ)


def test_an_import_path_that_does_not_resolve_fails_when_the_handler_is_made() -> None:
    with pytest.raises(Exception, match="stages.nothing"):
        make_handler({"CEAP_STAGE_FUNCTION": "stages.nothing:run"})


@pytest.fixture
def workflow_resources(moto_endpoint: str) -> dict[str, str]:
    """A workflow bucket holding the example orders, and a candidates table, in moto."""
    suffix = uuid.uuid4().hex[:8]
    bucket, table = f"ceap-workflow-handler-{suffix}", f"ceap-workflow-handler-{suffix}-candidates"

    async def create() -> None:
        async with AwsClients(AwsSettings(endpoint_url=moto_endpoint)) as aws:
            s3, dynamodb = await aws.client("s3"), await aws.client("dynamodb")
            await s3.create_bucket(Bucket=bucket)
            await s3.put_object(Bucket=bucket, Key="inputs/orders.jsonl",
                                Body=(EXAMPLES / "data" / "orders.jsonl").read_bytes())
            await dynamodb.create_table(TableName=table, **candidate_table_schema())

    asyncio.run(create())
    return {"bucket": bucket, "table": table, "endpoint": moto_endpoint}


@pytest.mark.moto
def test_the_stage_handlers_hand_data_from_stage_to_stage_through_s3(workflow_resources: dict[str, str]) -> None:
    bucket, table, endpoint = workflow_resources["bucket"], workflow_resources["table"], workflow_resources["endpoint"]
    payload = json.loads((EXAMPLES / "payload.json").read_text())
    payload["source"] = f"s3://{bucket}/inputs/orders.jsonl"
    execution_id = f"e-{uuid.uuid4().hex[:8]}"

    pointers = {}
    for stage in REALTIME.stages:
        handler = make_handler({
            "CEAP_STAGE_FUNCTION": stage.function,
            "CEAP_CANDIDATE_TABLE": table,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": "us-east-1",
        })
        event = {
            "executionId": execution_id,
            "currentStage": stage.name,
            "previousStage": REALTIME.previous(stage.name),
            "workflowBucket": bucket,
        }
        if event["previousStage"] is None:
            event["input"] = payload
        pointers[stage.name] = handler(event, FakeLambdaContext(f"CeapWorkflow-handler-{stage.name}Lambda"))

    etl, filtered, scored, stored = (pointers[s]["counts"] for s in ("ETL", "Filter", "Score", "Store"))
    assert etl["processedCount"] == etl["transformedCount"] + etl["errorCount"] and etl["errorCount"] > 0
    assert filtered["inputCount"] == filtered["passedCount"] + filtered["rejectedCount"] > 0
    assert scored["inputCount"] == filtered["passedCount"]
    assert stored["storedCount"] + stored["failedCount"] == scored["scoredCount"] and stored["storedCount"] > 0
    assert pointers["Reactive"]["counts"]["inputCount"] == stored["storedCount"]

    async def read_back() -> tuple[list[str], int]:
        async with AwsClients(AwsSettings(endpoint_url=endpoint)) as aws:
            s3 = await aws.client("s3")
            listed = await s3.list_objects_v2(Bucket=bucket, Prefix=f"executions/{execution_id}/")
            store = DynamoDBCandidateStore(await aws.client("dynamodb"), table)
            return [o["Key"] for o in listed["Contents"]], len(await store.query(payload["programId"]))

    keys, candidates = asyncio.run(read_back())
    assert {p["outputKey"] for p in pointers.values()} <= set(keys)
    assert f"executions/{execution_id}/Reactive/actions-00000.jsonl" in keys
    assert candidates == stored["storedCount"]


@pytest.mark.moto
def test_a_stage_whose_previous_output_is_missing_fails_permanently(workflow_resources: dict[str, str]) -> None:
    handler = make_handler({"CEAP_STAGE_FUNCTION": "stages.filter:run", "AWS_ENDPOINT_URL": workflow_resources["endpoint"]})

    with pytest.raises(PermanentError, match="output of the previous stage ETL is missing"):
        handler({"executionId": "e-missing", "currentStage": "Filter", "previousStage": "ETL",
                 "workflowBucket": workflow_resources["bucket"]}, None)
