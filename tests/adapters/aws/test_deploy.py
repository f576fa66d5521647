"""`ceap deploy | status | send | destroy | run --target aws` against the session's moto server.

moto's known limits are checked by name, never passed over in silence:
its CloudFormation skips AWS::Pipes::Pipe, AWS::Glue::Job and AWS::S3::BucketPolicy,
gives stacks made through change sets no Outputs (deploy reads them from the
resources instead), and builds the stack's state machine from DefinitionString,
RoleArn and Name only, in a backend the executing Step Functions API does not see;
it has no StartSyncExecution. So executions are tested on machines created
through the Step Functions API (here and in test_stepfunctions.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from ceap_engine.cli.app import app
from ceap_engine.pipeline import REALTIME, build_definition, function_placeholder, substitute
from ceap_engine.pipeline.builder import BUCKET_PLACEHOLDER

from .moto import queue_lambda_results, workflow_results

pytestmark = pytest.mark.moto
ACCOUNT, REGION = "123456789012", "us-east-1"


def aws(moto_endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=moto_endpoint, region_name=REGION)


def ceap(*args: str, input: str | None = None) -> Any:
    result = CliRunner().invoke(app, list(args), input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


class Deployment:
    def __init__(self, endpoint: str, name: str, wheelhouse: Path, build_dir: Path) -> None:
        self.endpoint, self.name, self.wheelhouse, self.build_dir = endpoint, name, wheelhouse, build_dir

    def deploy(self, *extra: str, workflow_type: str = "express") -> Any:
        return ceap("deploy", "--target", "aws", "-n", self.name, "-t", workflow_type, "--endpoint-url", self.endpoint,
                    "--wheelhouse", str(self.wheelhouse), "--build-dir", str(self.build_dir), *extra)

    def cli(self, command: str, *extra: str, input: str | None = None) -> Any:
        return ceap(command, "-n", self.name, "--endpoint-url", self.endpoint, *extra, input=input)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's one --build-dir: the first deploy builds the package, the later ones reuse it (same inputs;
    test_packaging.py tests the reuse and the build itself)."""
    return tmp_path_factory.mktemp("build")


@pytest.fixture(scope="module")
def express(moto_endpoint: str, lambda_wheelhouse: Path, build_dir: Path) -> Iterator[tuple[Deployment, Any]]:
    deployment = Deployment(moto_endpoint, f"rt-{uuid.uuid4().hex[:6]}", lambda_wheelhouse, build_dir)
    started = time.monotonic()
    first = deployment.deploy()
    first.seconds = time.monotonic() - started
    yield deployment, first


def test_deploy_reaches_create_complete_and_prints_the_outputs(express: tuple[Deployment, Any]) -> None:
    deployment, first = express

    assert first.exit_code == 0, first.output
    assert "change set for ceap-workflow-" in first.output and "Add     Lambda::Function ETLLambda" in first.output
    assert f"ceap-workflow-{deployment.name}: CREATE_COMPLETE" in first.output
    assert f"WorkflowBucket: ceap-workflow-{deployment.name}-{ACCOUNT}-{REGION}" in first.output
    assert f"StateMachineArn: arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:Ceap-{deployment.name}-Workflow" in first.output


def test_the_resources_are_there_with_the_code_package_from_the_artifacts_bucket(express: tuple[Deployment, Any]) -> None:
    deployment, _ = express
    endpoint, name = deployment.endpoint, deployment.name

    artifacts = f"ceap-artifacts-{ACCOUNT}-{REGION}"
    [package] = [o["Key"] for o in aws(endpoint, "s3").list_objects_v2(Bucket=artifacts, Prefix="ceap/lambda/")["Contents"]
                 if o["Key"] in _uploaded_keys(deployment)]
    etl = aws(endpoint, "lambda").get_function(FunctionName=f"CeapWorkflow-{name}-ETLLambda")["Configuration"]
    assert (etl["Handler"], etl["Runtime"], etl["MemorySize"], etl["Timeout"]) == ("adapters.aws.handler.handler", "python3.12", 1024, 300)
    assert etl["Environment"]["Variables"]["CEAP_STAGE_FUNCTION"] == "stages.etl:run"
    assert package.startswith("ceap/lambda/") and package.endswith(".zip")
    sqs = aws(endpoint, "sqs")
    queue = sqs.get_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName=f"ceap-workflow-{name}-queue")["QueueUrl"],
                                     AttributeNames=["All"])["Attributes"]
    assert queue["VisibilityTimeout"] == "600"
    assert json.loads(queue["RedrivePolicy"])["maxReceiveCount"] == 3
    aws(endpoint, "s3").head_bucket(Bucket=f"ceap-workflow-{name}-{ACCOUNT}-{REGION}")
    table = aws(endpoint, "dynamodb").describe_table(TableName=f"ceap-workflow-{name}-candidates")["Table"]
    assert table["GlobalSecondaryIndexes"][0]["IndexName"] == "ByProgramRank"
    groups = aws(endpoint, "logs").describe_log_groups(logGroupNamePrefix=f"/aws/stepfunctions/Ceap-{name}-Workflow")
    assert groups["logGroups"][0]["retentionInDays"] == 30


def _uploaded_keys(deployment: Deployment) -> set[str]:
    return {o["Key"] for o in aws(deployment.endpoint, "s3").list_objects_v2(
        Bucket=f"ceap-artifacts-{ACCOUNT}-{REGION}").get("Contents", ())}


def test_a_second_deploy_with_nothing_changed_is_a_no_op(express: tuple[Deployment, Any]) -> None:
    deployment, _ = express
    keys_before = _uploaded_keys(deployment)

    again = deployment.deploy()

    assert again.exit_code == 0, again.output
    assert "already uploaded, skipped" in again.output
    assert "no change (same template and parameters)" in again.output
    assert "change set for" not in again.output
    assert _uploaded_keys(deployment) == keys_before


def test_a_dry_run_prints_the_plan_and_the_change_set_and_changes_nothing(express: tuple[Deployment, Any]) -> None:
    deployment, _ = express
    cfn = aws(deployment.endpoint, "cloudformation")
    stack = f"ceap-workflow-{deployment.name}"

    dry = deployment.deploy("--dry-run", "--no-log-execution-data")

    assert dry.exit_code == 0, dry.output
    assert "update through a change set" in dry.output
    assert "Modify  StepFunctions::StateMachine StateMachine" in dry.output
    template = json.loads(cfn.get_template(StackName=stack)["TemplateBody"]) if isinstance(
        cfn.get_template(StackName=stack)["TemplateBody"], str) else cfn.get_template(StackName=stack)["TemplateBody"]
    assert template["Resources"]["StateMachine"]["Properties"]["LoggingConfiguration"]["IncludeExecutionData"] is True
    # The dry run's change set is deleted again (executed ones stay listed in moto, removed on AWS).
    pending = [c for c in cfn.list_change_sets(StackName=stack)["Summaries"]
               if c.get("StackName") == stack and c.get("ExecutionStatus") == "AVAILABLE"]
    assert pending == []


def test_a_dry_run_of_an_unchanged_stack_says_no_change_not_does_not_exist(express: tuple[Deployment, Any]) -> None:
    deployment, _ = express

    dry = deployment.deploy("--dry-run")

    assert dry.exit_code == 0, dry.output
    assert "dry run: no change" in dry.output
    assert "does not exist" not in dry.output


def test_a_type_switch_is_flagged_in_the_plan_and_refused_before_anything_changes(express: tuple[Deployment, Any]) -> None:
    deployment, _ = express
    stack = f"ceap-workflow-{deployment.name}"

    dry = deployment.deploy("--dry-run", workflow_type="standard")
    real = deployment.deploy(workflow_type="standard")

    assert dry.exit_code == 1, dry.output
    assert "the workflow type changes from EXPRESS to STANDARD" in dry.output
    assert "blocked:" in dry.output and f"ceap destroy -n {deployment.name}" in dry.output
    assert real.exit_code == 1 and "nothing was changed" in real.output
    described = aws(deployment.endpoint, "cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    assert described["StackStatus"] == "CREATE_COMPLETE"


def test_no_execute_creates_and_shows_the_change_set_and_keeps_it_for_review(express: tuple[Deployment, Any]) -> None:
    deployment, _ = express
    cfn = aws(deployment.endpoint, "cloudformation")
    stack = f"ceap-workflow-{deployment.name}"

    kept = deployment.deploy("--no-log-execution-data", "--no-execute")
    plan_after = deployment.deploy("--dry-run")

    assert kept.exit_code == 0, kept.output
    assert "Modify  StepFunctions::StateMachine StateMachine" in kept.output
    assert "change set created, not executed" in kept.output
    [pending] = [c for c in cfn.list_change_sets(StackName=stack)["Summaries"] if c.get("ExecutionStatus") == "AVAILABLE"]
    assert pending["ChangeSetId"] in kept.output
    body = cfn.get_template(StackName=stack)["TemplateBody"]
    template = json.loads(body) if isinstance(body, str) else body
    assert template["Resources"]["StateMachine"]["Properties"]["LoggingConfiguration"]["IncludeExecutionData"] is True
    assert f"change sets waiting for review: {pending['ChangeSetName']}" in plan_after.output
    cfn.delete_change_set(ChangeSetName=pending["ChangeSetId"], StackName=stack)


def test_run_right_after_a_moto_deploy_names_motos_limit_instead_of_saying_deploy_it(
    express: tuple[Deployment, Any], tmp_path: Path
) -> None:
    deployment, _ = express

    result = ceap("run", "--target", "aws", "-n", deployment.name, "--endpoint-url", deployment.endpoint,
                  str(_payload(tmp_path, "b-any")))

    assert result.exit_code == 1
    assert "a known moto limit" in result.output and "deploy it with" not in result.output


def test_moto_cloudformation_skips_pipes_glue_jobs_and_bucket_policies(express: tuple[Deployment, Any]) -> None:
    # Named check of a moto limit: the template has these (test_template.py checks them); moto creates none.
    deployment, _ = express
    resources = aws(deployment.endpoint, "cloudformation").list_stack_resources(
        StackName=f"ceap-workflow-{deployment.name}")["StackResourceSummaries"]
    types = {r.get("ResourceType") for r in resources}

    assert "AWS::Pipes::Pipe" not in types and "AWS::S3::BucketPolicy" not in types
    assert {"AWS::Lambda::Function", "AWS::StepFunctions::StateMachine", "AWS::SQS::Queue"} <= types


def test_moto_keeps_the_stacks_state_machine_apart_from_the_executing_api(express: tuple[Deployment, Any]) -> None:
    # Named check of a moto limit: its CloudFormation makes the machine from DefinitionString/RoleArn/Name
    # in the non-executing backend, so the Step Functions API (execute_state_machine: true) cannot see it.
    deployment, _ = express
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:Ceap-{deployment.name}-Workflow"

    with pytest.raises(Exception, match="StateMachineDoesNotExist"):
        aws(deployment.endpoint, "stepfunctions").describe_state_machine(stateMachineArn=arn)


def test_status_shows_the_stack_and_reads_express_executions_from_the_log_group(express: tuple[Deployment, Any]) -> None:
    deployment, _ = express
    group = f"/aws/stepfunctions/Ceap-{deployment.name}-Workflow"
    logs = aws(deployment.endpoint, "logs")
    logs.create_log_stream(logGroupName=group, logStreamName="states/run-1")
    arn = f"arn:aws:states:{REGION}:{ACCOUNT}:express:Ceap-{deployment.name}-Workflow:run-1:abc"
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName="states/run-1", logEvents=[
        {"timestamp": now, "message": json.dumps({"type": "ExecutionStarted", "execution_arn": arn, "event_timestamp": str(now)})},
        {"timestamp": now + 5, "message": json.dumps({"type": "TaskStateEntered", "execution_arn": arn, "event_timestamp": str(now + 1)})},
        {"timestamp": now + 9, "message": json.dumps({"type": "ExecutionFailed", "execution_arn": arn, "event_timestamp": str(now + 9),
                                                      "details": {"error": "Ceap.PermanentError", "cause": "bad payload"}})},
    ])

    text = deployment.cli("status")
    result = deployment.cli("status", "--format", "json")

    assert text.exit_code == 0, text.output
    assert "CREATE_COMPLETE (express)" in text.output and "Ceap.PermanentError" in text.output
    document = json.loads(result.output)
    assert document["status"] == "CREATE_COMPLETE" and document["type"] == "express"
    assert document["executionsFrom"] == f"log group {group}"
    [execution] = document["executions"]
    assert (execution["name"], execution["status"], execution["error"]) == ("abc", "FAILED", "Ceap.PermanentError")


def test_send_puts_the_payload_on_the_workflows_queue(express: tuple[Deployment, Any], tmp_path: Path) -> None:
    deployment, _ = express
    payload = {"programId": "review-solicitation", "marketplace": "US",
               "dateRange": {"start": "2025-03-01", "end": "2025-03-31"},
               "source": f"s3://ceap-workflow-{deployment.name}-{ACCOUNT}-{REGION}/inputs/orders.jsonl"}
    path = tmp_path / "payload.json"
    path.write_text(json.dumps(payload))

    sent = deployment.cli("send", str(path))

    assert sent.exit_code == 0, sent.output
    sqs = aws(deployment.endpoint, "sqs")
    url = sqs.get_queue_url(QueueName=f"ceap-workflow-{deployment.name}-queue")["QueueUrl"]
    [message] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert json.loads(message["Body"]) == payload


def test_send_refuses_a_local_source_before_anything_is_sent(express: tuple[Deployment, Any], tmp_path: Path) -> None:
    deployment, _ = express
    path = tmp_path / "payload.json"
    path.write_text(json.dumps({"programId": "p", "marketplace": "US", "dateRange": {"start": "2025-03-01", "end": "2025-03-31"},
                                "source": "data/orders.jsonl"}))

    sent = deployment.cli("send", str(path))

    assert sent.exit_code == 2
    assert "must be an s3:// URI" in sent.output


def test_destroy_asks_first_and_does_nothing_on_no(express: tuple[Deployment, Any]) -> None:
    deployment, _ = express

    refused = deployment.cli("destroy", input="n\n")

    assert refused.exit_code == 1 and "nothing deleted" in refused.output
    assert aws(deployment.endpoint, "cloudformation").describe_stacks(
        StackName=f"ceap-workflow-{deployment.name}")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


def test_destroy_removes_the_stack_and_says_what_it_removed(express: tuple[Deployment, Any]) -> None:
    deployment, _ = express
    s3 = aws(deployment.endpoint, "s3")
    bucket = f"ceap-workflow-{deployment.name}-{ACCOUNT}-{REGION}"
    s3.put_object(Bucket=bucket, Key="executions/e-1/ETL/output.json", Body=b"{}")

    gone = deployment.cli("destroy", "--yes")

    assert gone.exit_code == 0, gone.output
    assert "emptied s3://" in gone.output and "(1 object(s))" in gone.output
    assert f"AWS::Lambda::Function CeapWorkflow-{deployment.name}-ETLLambda" in gone.output
    with pytest.raises(Exception, match="does not exist"):
        aws(deployment.endpoint, "cloudformation").describe_stacks(StackName=f"ceap-workflow-{deployment.name}")
    assert bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    again = deployment.cli("destroy", "--yes")
    assert again.exit_code == 1 and "no workflow" in again.output


def test_a_standard_workflow_deploys_with_its_glue_script_and_is_destroyed(
    moto_endpoint: str, lambda_wheelhouse: Path, build_dir: Path
) -> None:
    deployment = Deployment(moto_endpoint, f"bt-{uuid.uuid4().hex[:6]}", lambda_wheelhouse, build_dir)

    deployed = deployment.deploy(workflow_type="standard")

    assert deployed.exit_code == 0, deployed.output
    assert "Glue script: s3://" in deployed.output and "/heavy_etl.py" in deployed.output
    assert "CREATE_COMPLETE" in deployed.output
    # Named check of a moto limit: the Glue job is in the template but moto's CloudFormation skips it.
    with pytest.raises(Exception, match="EntityNotFound"):
        aws(moto_endpoint, "glue").get_job(JobName=f"ceap-workflow-{deployment.name}-heavy-etl")
    status = json.loads(deployment.cli("status", "--format", "json").output)
    assert status["type"] == "standard"
    assert deployment.cli("destroy", "--yes").exit_code == 0


def test_a_bad_name_is_refused_before_anything_is_created(moto_endpoint: str, lambda_wheelhouse: Path, tmp_path: Path) -> None:
    stacks_before = aws(moto_endpoint, "cloudformation").list_stacks()["StackSummaries"]

    refused = Deployment(moto_endpoint, "Bad_Name", lambda_wheelhouse, tmp_path).deploy()

    assert refused.exit_code == 2
    assert "workflow name 'Bad_Name'" in refused.output
    assert aws(moto_endpoint, "cloudformation").list_stacks()["StackSummaries"] == stacks_before
    assert not (tmp_path / "ceap-lambda-python3.12-x86_64.zip").exists()


def _machine_through_the_api(endpoint: str, name: str, machine_type: str) -> None:
    """What moto's CloudFormation cannot give: an executing machine named as the stack would name it."""
    iam, lam = aws(endpoint, "iam"), aws(endpoint, "lambda")
    role = iam.create_role(RoleName=f"ceap-{name}-sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    import io
    import zipfile

    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("x.py", "")
    values = {BUCKET_PLACEHOLDER: f"ceap-workflow-{name}-{ACCOUNT}-{REGION}"}
    for stage in REALTIME.stages:
        values[function_placeholder(stage)] = lam.create_function(
            FunctionName=f"CeapWorkflow-{name}-{stage.name}Lambda", Runtime="python3.11", Role=role,
            Handler="adapters.aws.handler.handler", Code={"ZipFile": code.getvalue()})["FunctionArn"]
    aws(endpoint, "stepfunctions").create_state_machine(
        name=f"Ceap-{name}-Workflow", definition=json.dumps(substitute(build_definition(REALTIME), values)),
        roleArn=role, type=machine_type)


def _payload(tmp_path: Path, bucket: str) -> Path:
    path = tmp_path / "payload.json"
    path.write_text(json.dumps({"programId": "p-1", "marketplace": "US", "dateRange": {"start": "2025-03-01", "end": "2025-03-31"},
                                "source": f"s3://{bucket}/inputs/orders.jsonl"}))
    return path


def test_run_target_aws_starts_a_standard_execution_and_follows_it_to_the_end(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"run-{uuid.uuid4().hex[:6]}"
    _machine_through_the_api(moto_endpoint, name, "STANDARD")
    queue_lambda_results(moto_endpoint, workflow_results(REALTIME.stages))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)

    result = ceap("run", "--target", "aws", "-n", name, str(_payload(tmp_path, "b-any")), "--format", "json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["status"] == "SUCCEEDED" and document["target"] == "aws"
    assert list(document["output"]["stages"]) == [s.name for s in REALTIME.stages]


def test_run_target_aws_on_express_uses_start_sync_execution_which_moto_lacks(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Named check of a moto limit: no StartSyncExecution. The express path reaches it and reports
    # moto's answer as an AWS error (exit 1), rather than falling back to something else.
    name = f"sync-{uuid.uuid4().hex[:6]}"
    _machine_through_the_api(moto_endpoint, name, "EXPRESS")
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # moto answers 500, which would otherwise be retried with backoff

    result = ceap("run", "--target", "aws", "-n", name, str(_payload(tmp_path, "b-any")))

    assert result.exit_code == 1
    assert "StartSyncExecution" in result.output


def test_run_target_aws_on_a_workflow_never_deployed_says_to_deploy(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)

    result = ceap("run", "--target", "aws", "-n", "never-deployed", str(_payload(tmp_path, "b-any")))

    assert result.exit_code == 1
    assert "ceap deploy --target aws -n never-deployed" in result.output


def test_a_dry_run_of_a_new_stack_lists_what_it_would_create_and_creates_nothing(
    moto_endpoint: str, lambda_wheelhouse: Path, build_dir: Path
) -> None:
    deployment = Deployment(moto_endpoint, f"new-{uuid.uuid4().hex[:6]}", lambda_wheelhouse, build_dir)

    dry = deployment.deploy("--dry-run")

    assert dry.exit_code == 0, dry.output
    assert "does not exist; create it through a change set" in dry.output
    assert "a deploy would create:" in dry.output and "Add     Lambda::Function ETLLambda" in dry.output
    assert "Add     CloudWatch::Alarm DeadLetterQueueAlarm" in dry.output
    with pytest.raises(Exception, match="does not exist"):
        aws(moto_endpoint, "cloudformation").describe_stacks(StackName=f"ceap-workflow-{deployment.name}")


def test_names_taken_outside_the_stack_are_found_in_the_plan_and_nothing_is_created(
    moto_endpoint: str, lambda_wheelhouse: Path, build_dir: Path
) -> None:
    # What a stack of the original platform leaves in the account: same queue and table names.
    name = f"clash-{uuid.uuid4().hex[:6]}"
    aws(moto_endpoint, "sqs").create_queue(QueueName=f"ceap-workflow-{name}-queue")
    aws(moto_endpoint, "dynamodb").create_table(
        TableName=f"ceap-workflow-{name}-candidates", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    deployment = Deployment(moto_endpoint, name, lambda_wheelhouse, build_dir)

    dry = deployment.deploy("--dry-run")
    real = deployment.deploy()

    assert dry.exit_code == 1 and "blocked:" in dry.output
    for output in (dry.output, real.output):
        assert f"SQS::Queue ceap-workflow-{name}-queue" in " ".join(output.split())
        assert f"DynamoDB::Table ceap-workflow-{name}-candidates" in " ".join(output.split())
    assert real.exit_code == 1 and "nothing was changed" in real.output
    with pytest.raises(Exception, match="does not exist"):
        aws(moto_endpoint, "cloudformation").describe_stacks(StackName=f"ceap-workflow-{name}")


def test_a_stack_left_review_in_progress_is_created_through_a_new_change_set(
    moto_endpoint: str, lambda_wheelhouse: Path, build_dir: Path
) -> None:
    name = f"rev-{uuid.uuid4().hex[:6]}"
    stack = f"ceap-workflow-{name}"
    cfn = aws(moto_endpoint, "cloudformation")
    # A first change set created and never executed leaves the stack REVIEW_IN_PROGRESS, without resources.
    cfn.create_change_set(StackName=stack, ChangeSetName="abandoned", ChangeSetType="CREATE",
                          TemplateBody=json.dumps({"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}))
    assert cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"] == "REVIEW_IN_PROGRESS"
    deployment = Deployment(moto_endpoint, name, lambda_wheelhouse, build_dir)

    dry = deployment.deploy("--dry-run")
    real = deployment.deploy()

    assert dry.exit_code == 0, dry.output
    assert "REVIEW_IN_PROGRESS (its first change set was never executed, or failed)" in dry.output
    assert "another operation is running" not in real.output
    assert real.exit_code == 0, real.output
    assert cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


def test_the_same_workflow_name_deploys_to_a_second_region(moto_endpoint: str, lambda_wheelhouse: Path, build_dir: Path) -> None:
    deployment = Deployment(moto_endpoint, f"mr-{uuid.uuid4().hex[:6]}", lambda_wheelhouse, build_dir)

    first = deployment.deploy("--region", "us-east-1")
    second = deployment.deploy("--region", "eu-west-1")

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    buckets = {b["Name"] for b in aws(moto_endpoint, "s3").list_buckets()["Buckets"]}
    assert {f"ceap-workflow-{deployment.name}-{ACCOUNT}-us-east-1", f"ceap-workflow-{deployment.name}-{ACCOUNT}-eu-west-1"} <= buckets


def test_an_interactive_deploy_asks_before_executing_the_change_set(
    moto_endpoint: str, lambda_wheelhouse: Path, build_dir: Path
) -> None:
    """Through the real `ceap` entry point on a terminal (a pty): "n" deletes the change set and creates nothing."""
    import os
    import pty
    import subprocess
    import sys

    name = f"ask-{uuid.uuid4().hex[:6]}"
    primary, secondary = pty.openpty()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": REGION}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "ceap"), "deploy", "--target", "aws", "-n", name, "--endpoint-url",
         moto_endpoint, "--wheelhouse", str(lambda_wheelhouse), "--build-dir", str(build_dir)],
        stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    os.close(secondary)
    os.write(primary, b"n\n")  # typed ahead: read when the question comes
    output, _ = process.communicate(timeout=300)
    os.close(primary)
    text = output.decode()

    assert "Execute this change set" in text, text
    assert "not executed; the change set was deleted" in text
    assert process.returncode == 1
    with pytest.raises(Exception, match="does not exist"):
        aws(moto_endpoint, "cloudformation").describe_stacks(StackName=f"ceap-workflow-{name}")


def test_run_target_aws_passes_the_execution_name(moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"named-{uuid.uuid4().hex[:6]}"
    _machine_through_the_api(moto_endpoint, name, "STANDARD")
    queue_lambda_results(moto_endpoint, workflow_results(REALTIME.stages))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)

    result = ceap("run", "--target", "aws", "-n", name, str(_payload(tmp_path, "b-any")), "--execution-name", "my-run-1",
                  "--format", "json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["executionId"] == "my-run-1" and document["executionArn"].endswith(":my-run-1")


def test_run_target_aws_leaves_a_long_standard_execution_running_after_the_timeout(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"slow-{uuid.uuid4().hex[:6]}"
    role = aws(moto_endpoint, "iam").create_role(RoleName=f"ceap-{name}-sfn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    aws(moto_endpoint, "stepfunctions").create_state_machine(
        name=f"Ceap-{name}-Workflow", roleArn=role, type="STANDARD",
        definition=json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}}))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)

    result = ceap("run", "--target", "aws", "-n", name, str(_payload(tmp_path, "b-any")), "--timeout", "1")

    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "RUNNING" in text and "still running after 1 s (--timeout); it goes on" in text
    assert f"ceap status -n {name}" in text


def test_deploy_answers_in_the_json_envelope(moto_endpoint: str, lambda_wheelhouse: Path, build_dir: Path) -> None:
    """--format json, through the real entry point: one envelope on stdout for a new stack's dry run, for
    --no-execute, and for a plan with blockers (ok: false, exit 1)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": REGION}

    def deploy(name: str, *extra: str) -> tuple[int, dict[str, Any]]:
        proc = subprocess.run(
            [sys.executable, "-m", "ceap_engine.cli", "deploy", "--target", "aws", "-n", name, "--endpoint-url",
             moto_endpoint, "--wheelhouse", str(lambda_wheelhouse), "--build-dir", str(build_dir), *extra,
             "--format", "json"], capture_output=True, text=True, env=env, timeout=300, check=False)
        doc = json.loads(proc.stdout)  # progress went to stderr
        assert (doc["schemaVersion"], doc["command"], doc["ok"]) == (1, "deploy", proc.returncode == 0), doc
        return proc.returncode, doc

    name = f"js-{uuid.uuid4().hex[:6]}"
    code, dry = deploy(name, "--dry-run")
    assert code == 0 and dry["dryRun"] is True and dry["changes"] is None and dry["blockers"] == []
    assert "Add     Lambda::Function ETLLambda" in dry["creates"] and dry["plan"]
    code, kept = deploy(name, "--no-execute")
    assert code == 0 and kept["status"] == "CHANGE_SET_CREATED" and kept["changeSet"] and kept["changed"] is False

    clash = f"jc-{uuid.uuid4().hex[:6]}"
    aws(moto_endpoint, "sqs").create_queue(QueueName=f"ceap-workflow-{clash}-queue")
    code, blocked = deploy(clash, "--dry-run")
    assert code == 1 and blocked["blockers"] and blocked["details"][0]["code"] == "BLOCKED"
    assert f"ceap-workflow-{clash}-queue" in " ".join(blocked["error"].split())
