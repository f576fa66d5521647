"""The synthesized CloudFormation template: cfn-lint clean, least privilege, names, and the builder's ASL."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint

from adapters.aws.cfn import LOG_DELIVERY_WILDCARD, XRAY_WILDCARD
from adapters.aws.template import (
    TemplateOptions,
    has_distributed_map,
    machine_role_statements,
    stack_name,
    synthesize,
    template_body,
    workflow_spec,
)
from ceap_engine.pipeline.names import BUCKET_NAME_MAX, workflow_bucket_name
from ceap_engine.errors import InputError
from ceap_engine.pipeline import build_definition, substitution_keys

VARIANTS = [
    pytest.param("express", TemplateOptions(), id="express"),
    pytest.param("standard", TemplateOptions(), id="standard"),
    pytest.param("express", TemplateOptions(log_execution_data=False, arch="arm64"), id="express-nodata-arm64"),
    pytest.param("standard", TemplateOptions(log_execution_data=False), id="standard-nodata"),
    pytest.param("express", TemplateOptions(runtime="python3.13", alarm_email="ops@example.com"), id="express-3.13-email"),
    pytest.param("standard", TemplateOptions(arch="arm64", alarm_email="ops@example.com"), id="standard-arm64-email"),
]


def statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for resource in template["Resources"].values():
        for policy in resource.get("Properties", {}).get("Policies", ()):
            found.extend(policy["PolicyDocument"]["Statement"])
    return found


@pytest.mark.parametrize(("workflow_type", "options"), VARIANTS)
def test_every_synthesized_template_passes_cfn_lint_with_informational_checks(
    workflow_type: str, options: TemplateOptions
) -> None:
    body = template_body(synthesize(workflow_spec("demo-1", workflow_type), options))

    findings = lint(body, config=ManualArgs(regions=["us-east-1", "eu-central-1"], include_checks=["I"]))

    assert [str(f) for f in findings] == []


@pytest.mark.parametrize("workflow_type", ["express", "standard"])
def test_no_statement_allows_every_action_and_only_the_documented_exceptions_use_every_resource(
    workflow_type: str,
) -> None:
    template = synthesize(workflow_spec("demo", workflow_type))

    for statement in statements(template):
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert all(a != "*" and not a.endswith(":*") for a in actions), statement
        if "*" in statement["Resource"]:
            assert statement in (XRAY_WILDCARD, LOG_DELIVERY_WILDCARD), statement
    assert {s["Sid"] for s in statements(template) if "*" in s["Resource"]} == {
        XRAY_WILDCARD["Sid"], LOG_DELIVERY_WILDCARD["Sid"]}


@pytest.mark.parametrize("workflow_type", ["express", "standard"])
def test_the_state_machine_is_the_builders_asl_with_every_placeholder_substituted(workflow_type: str) -> None:
    spec = workflow_spec("demo", workflow_type)
    machine = synthesize(spec)["Resources"]["StateMachine"]["Properties"]

    assert json.loads(machine["DefinitionString"]) == build_definition(spec)
    assert sorted(machine["DefinitionSubstitutions"]) == sorted(substitution_keys(spec))
    assert machine["StateMachineName"] == "Ceap-demo-Workflow"
    assert machine["StateMachineType"] == workflow_type.upper()
    assert machine["LoggingConfiguration"]["Level"] == "ALL"
    assert machine["LoggingConfiguration"]["IncludeExecutionData"] is True
    assert machine["TracingConfiguration"] == {"Enabled": True}


def test_no_log_execution_data_keeps_payloads_out_of_cloudwatch() -> None:
    template = synthesize(workflow_spec("demo", "express"), TemplateOptions(log_execution_data=False))

    assert template["Resources"]["StateMachine"]["Properties"]["LoggingConfiguration"]["IncludeExecutionData"] is False


def test_the_stage_functions_have_the_platforms_memory_and_timeouts() -> None:
    resources = synthesize(workflow_spec("demo", "express"))["Resources"]

    sizes = {
        resources[f"{stage}Lambda"]["Properties"]["FunctionName"]: (
            resources[f"{stage}Lambda"]["Properties"]["MemorySize"], resources[f"{stage}Lambda"]["Properties"]["Timeout"])
        for stage in ("ETL", "Filter", "Score", "Store", "Reactive")
    }
    assert sizes == {
        "CeapWorkflow-demo-ETLLambda": (1024, 300),
        "CeapWorkflow-demo-FilterLambda": (512, 60),
        "CeapWorkflow-demo-ScoreLambda": (1024, 120),
        "CeapWorkflow-demo-StoreLambda": (512, 60),
        "CeapWorkflow-demo-ReactiveLambda": (1024, 60),
    }
    etl = resources["ETLLambda"]["Properties"]
    assert etl["Handler"] == "adapters.aws.handler.handler" and etl["Runtime"] == "python3.12"
    assert etl["Environment"]["Variables"]["CEAP_STAGE_FUNCTION"] == "stages.etl:run"
    assert resources["ETLLogGroup"]["Properties"]["LogGroupName"] == "/aws/lambda/CeapWorkflow-demo-ETLLambda"


def test_the_pipe_hands_the_body_as_the_execution_input_synchronously_for_express() -> None:
    express = synthesize(workflow_spec("demo", "express"))["Resources"]["Pipe"]["Properties"]
    standard = synthesize(workflow_spec("demo", "standard"))["Resources"]["Pipe"]["Properties"]

    assert express["SourceParameters"] == {"SqsQueueParameters": {"BatchSize": 1}}
    assert express["TargetParameters"]["InputTemplate"] == "<$.body>"
    assert express["TargetParameters"]["StepFunctionStateMachineParameters"]["InvocationType"] == "REQUEST_RESPONSE"
    assert standard["TargetParameters"]["StepFunctionStateMachineParameters"]["InvocationType"] == "FIRE_AND_FORGET"


def test_queues_bucket_and_outputs_are_as_the_platform_needs() -> None:
    template = synthesize(workflow_spec("demo", "express"))
    resources = template["Resources"]

    queue, dlq = resources["Queue"]["Properties"], resources["DeadLetterQueue"]["Properties"]
    assert (queue["QueueName"], queue["VisibilityTimeout"], queue["SqsManagedSseEnabled"]) == ("ceap-workflow-demo-queue", 600, True)
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 3
    assert (dlq["QueueName"], dlq["MessageRetentionPeriod"]) == ("ceap-workflow-demo-dlq", 1209600)
    bucket = resources["WorkflowBucket"]["Properties"]
    assert bucket["BucketName"] == {"Fn::Sub": "ceap-workflow-demo-${AWS::AccountId}-${AWS::Region}"}
    assert bucket["LifecycleConfiguration"]["Rules"] == [
        {"Id": "ExpireExecutionData", "Status": "Enabled", "Prefix": "executions/", "ExpirationInDays": 7}]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    [tls] = resources["WorkflowBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert tls["Effect"] == "Deny" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert {"StateMachineArn", "WorkflowBucket", "QueueUrl", "DLQUrl"} <= set(template["Outputs"])


def test_the_deployed_queues_and_pipe_are_read_from_the_spec_and_the_local_pipe_constants() -> None:
    from ceap_engine.pipeline.names import dlq_name, queue_name
    from ceap_engine.pipeline.spec import QueueSpec
    from ceap_engine.queueing.pipe import PIPE_BATCH_SIZE, PIPE_INPUT_TEMPLATE
    from ceap_engine.storage.queue import settings_to_attributes

    base = workflow_spec("tuned", "express")
    spec = base.model_copy(update={"queue": QueueSpec(visibility_timeout_seconds=120, max_receive_count=5,
                                                      retention_seconds=3600, dlq_retention_seconds=7200)})
    template = synthesize(spec)
    resources = template["Resources"]

    # Every setting the local queue has is the deployed queue's property of the same name.
    for logical, name, settings in (("Queue", queue_name(spec), spec.queue.settings(dlq_name(spec))),
                                    ("DeadLetterQueue", dlq_name(spec), spec.queue.dlq_settings())):
        properties = resources[logical]["Properties"]
        local = settings_to_attributes(settings)
        redrive = local.pop("RedrivePolicy", None)
        assert properties["QueueName"] == name
        assert {key: str(properties[key]) for key in local} == local
        if redrive is not None:
            assert properties["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]},
                                                   "maxReceiveCount": json.loads(redrive)["maxReceiveCount"]}
    assert resources["Queue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 5
    assert "5 times" in template["Outputs"]["DLQUrl"]["Description"]
    assert "failed 5 times" in resources["DeadLetterQueueAlarm"]["Properties"]["AlarmDescription"]
    pipe = resources["Pipe"]["Properties"]
    assert pipe["SourceParameters"]["SqsQueueParameters"]["BatchSize"] == PIPE_BATCH_SIZE
    assert pipe["TargetParameters"]["InputTemplate"] == PIPE_INPUT_TEMPLATE
    # workflow_spec keeps the built-in spec's queue settings.
    assert base.queue == QueueSpec()


def test_only_standard_workflows_have_the_glue_job() -> None:
    assert "HeavyETLJob" not in synthesize(workflow_spec("demo", "express"))["Resources"]
    job = synthesize(workflow_spec("demo", "standard"))["Resources"]["HeavyETLJob"]["Properties"]

    assert job["Name"] == "ceap-workflow-demo-heavy-etl"
    assert (job["GlueVersion"], job["WorkerType"], job["NumberOfWorkers"], job["Timeout"], job["MaxRetries"]) == (
        "5.0", "G.1X", 2, 120, 0)


def test_the_longest_name_gives_valid_aws_names() -> None:
    name = "a" + "b-" * 14 + "c"  # 30 characters
    template = synthesize(workflow_spec(name, "standard"))
    resources = template["Resources"]
    longest_region, account = "us-isof-south-1", "123456789012"

    bucket = resources["WorkflowBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    bucket = bucket.replace("${AWS::AccountId}", account).replace("${AWS::Region}", longest_region)
    assert bucket == workflow_bucket_name(workflow_spec(name, "standard"), account, longest_region)
    assert len(bucket) <= BUCKET_NAME_MAX and re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", bucket), bucket
    assert max(len(r["Properties"]["FunctionName"]) for r in resources.values() if r["Type"] == "AWS::Lambda::Function") <= 64
    for role in (r for r in resources.values() if r["Type"] == "AWS::IAM::Role"):
        assert len(role["Properties"]["RoleName"]["Fn::Sub"].replace("${AWS::Region}", longest_region)) <= 64
    assert len(resources["Pipe"]["Properties"]["Name"]) <= 64
    assert len(stack_name(workflow_spec(name, "express"))) <= 128


@pytest.mark.parametrize("name", ["", "Demo", "1demo", "-demo", "demo_1", "demo.1", "a" * 31, "démo"])
def test_a_bad_name_is_refused_before_anything_is_built(name: str) -> None:
    with pytest.raises(InputError, match="workflow name"):
        workflow_spec(name, "express")


def test_the_same_name_gets_a_bucket_per_region_and_long_names_stay_apart() -> None:
    spec = workflow_spec("mr", "express")
    assert workflow_bucket_name(spec, "123456789012", "us-east-1") != workflow_bucket_name(spec, "123456789012", "eu-west-1")
    # Two 30-character names that share their first 20 characters: the hash keeps their buckets apart.
    one, two = (workflow_spec("a" * 20 + tail, "express") for tail in ("0123456789", "9876543210"))
    names = {workflow_bucket_name(s, "123456789012", "us-isof-south-1") for s in (one, two)}
    assert len(names) == 2 and all(len(n) <= BUCKET_NAME_MAX for n in names)


def _role(resources: dict[str, Any], logical: str) -> dict[str, list[Any]]:
    """Sid -> resources of the role's one inline policy, resources as their Fn::Sub text."""
    [inline] = resources[logical]["Properties"]["Policies"]
    def text(r: Any) -> Any:
        return r.get("Fn::Sub", r) if isinstance(r, dict) else r
    return {st["Sid"]: sorted(map(str, map(text, st["Resource"]))) for st in inline["PolicyDocument"]["Statement"]}


@pytest.mark.parametrize("workflow_type", ["express", "standard"])
def test_each_stage_has_its_own_role_reading_the_previous_stage_and_writing_only_its_own_prefix(workflow_type: str) -> None:
    spec = workflow_spec("demo", workflow_type)
    resources = synthesize(spec)["Resources"]
    lambdas = [s for s in spec.stages if s.kind == "lambda"]

    assert "StageRole" not in resources
    assert len({resources[f"{s.name}Lambda"]["Properties"]["Role"]["Fn::GetAtt"][0] for s in lambdas}) == len(lambdas)
    for stage in spec.stages:
        role = _role(resources, "GlueJobRole" if stage.kind == "glue" else f"{stage.name}Role")
        tag = stage.name if stage.kind == "glue" else ""
        own = f"${{WorkflowBucket.Arn}}/executions/*/{stage.name}/*"
        previous = spec.previous(stage.name)
        expected_input = "${WorkflowBucket.Arn}/inputs/*" if previous is None else f"${{WorkflowBucket.Arn}}/executions/*/{previous}/*"
        assert role[f"ReadStageInput{tag}"] == [expected_input]
        assert role[f"WriteOwnOutput{tag}"] == [own] and role[f"ReadOwnOutput{tag}"] == [own]
        writes = [st for st in resources[stage.kind == "glue" and "GlueJobRole" or f"{stage.name}Role"]["Properties"]
                  ["Policies"][0]["PolicyDocument"]["Statement"] if "s3:PutObject" in st["Action"]]
        assert len(writes) == 1
        assert (f"UseCandidateTable{tag}" in role) is (stage.name in {"Store", "Reactive"}), stage.name
        # Only ETL deletes (its spill/ scratch, after a merge call read it), and only under its own prefix.
        assert role.get(f"DeleteOwnScratch{tag}") == ([own] if previous is None else None), stage.name
        if stage.kind == "lambda":
            variables = resources[f"{stage.name}Lambda"]["Properties"]["Environment"]["Variables"]
            assert ("CEAP_CANDIDATE_TABLE" in variables) is (stage.name in {"Store", "Reactive"})
            assert role["WriteOwnLogs"] == [str({"Fn::GetAtt": [f"{stage.name}LogGroup", "Arn"]})]


def test_the_candidate_stages_may_make_every_dynamodb_call_the_candidate_store_makes() -> None:
    import adapters.aws.candidates as candidates

    source = Path(candidates.__file__).read_text(encoding="utf-8")
    calls = {"dynamodb:" + name.title().replace("_", "") for name in re.findall(r"self\.client\.(\w+)\(", source)}
    assert "dynamodb:BatchGetItem" in calls and "dynamodb:Query" in calls
    resources = synthesize(workflow_spec("demo", "express"))["Resources"]
    for stage in ("Store", "Reactive"):
        [statement] = [st for st in resources[f"{stage}Role"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
                       if st["Sid"] == "UseCandidateTable"]
        assert calls <= set(statement["Action"]), stage


def test_a_distributed_map_gets_its_child_executions_and_s3_items_and_only_then() -> None:
    spec = workflow_spec("demo", "standard")
    # The Express workflow fans out with inline Maps only; the Standard one with Distributed Maps.
    express = workflow_spec("demo", "express")
    plain = build_definition(express)
    assert has_distributed_map(build_definition(spec))
    mapped = {"StartAt": "Fan", "States": {"Fan": {"Type": "Map", "End": True, "ItemReader": {}, "ItemProcessor": {
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "P",
        "States": {"P": {"Type": "Pass", "End": True}}}}}}
    nested = {"StartAt": "B", "States": {"B": {"Type": "Parallel", "End": True, "Branches": [mapped]}}}

    assert not has_distributed_map(plain) and has_distributed_map(mapped) and has_distributed_map(nested)
    sids = {st["Sid"]: st for st in machine_role_statements(spec, nested)}
    assert sids["RunMapChildExecutions"]["Action"] == ["states:StartExecution"]
    assert sids["RunMapChildExecutions"]["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:states:${AWS::Region}:${AWS::AccountId}:stateMachine:Ceap-demo-Workflow"}]
    assert sids["FollowMapChildExecutions"]["Action"] == ["states:DescribeExecution", "states:StopExecution"]
    assert sids["ReadMapItems"]["Action"] == ["s3:GetObject"]
    assert "s3:PutObject" in sids["WriteMapResults"]["Action"]
    assert sids["WriteMapResults"]["Resource"] == [{"Fn::Sub": "${WorkflowBucket.Arn}/executions/*"}]
    assert not {"RunMapChildExecutions", "ReadMapItems"} & {st["Sid"] for st in machine_role_statements(express, plain)}


def test_alarms_watch_the_dlq_executions_and_each_function_and_mail_only_when_asked() -> None:
    quiet = synthesize(workflow_spec("demo", "express"))["Resources"]
    loud = synthesize(workflow_spec("demo", "express"), TemplateOptions(alarm_email="ops@example.com"))["Resources"]

    alarms = {k: r["Properties"] for k, r in quiet.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert {(a["Namespace"], a["MetricName"]) for a in alarms.values()} == {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"), ("AWS/States", "ExecutionsFailed"),
        ("AWS/States", "ExecutionsTimedOut"), ("AWS/Lambda", "Errors"), ("AWS/Lambda", "Throttles")}
    assert len(alarms) == 3 + 2 * 5
    assert alarms["DeadLetterQueueAlarm"]["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}]
    assert alarms["ScoreThrottlesAlarm"]["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "ScoreLambda"}}]
    assert all(a["Threshold"] == 0 and a["ComparisonOperator"] == "GreaterThanThreshold" for a in alarms.values())
    assert "AlarmTopic" not in quiet and all("AlarmActions" not in a for a in alarms.values())
    assert loud["AlarmTopicEmail"]["Properties"] == {"TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email",
                                                     "Endpoint": "ops@example.com"}
    assert loud["ExecutionsFailedAlarm"]["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


@pytest.mark.parametrize(("field", "value"), [("runtime", "python3.9"), ("alarm_email", "not-an-address")])
def test_a_bad_runtime_or_alarm_address_is_refused(field: str, value: str) -> None:
    with pytest.raises(InputError):
        TemplateOptions(**{field: value})


def test_ceap_synth_takes_the_runtime_and_the_alarm_address_and_refuses_bad_ones() -> None:
    from typer.testing import CliRunner

    from ceap_engine.cli.app import app

    runner = CliRunner()
    good = runner.invoke(app, ["synth", "-n", "demo", "--runtime", "python3.13", "--alarm-email", "ops@example.com"])
    bad_runtime = runner.invoke(app, ["synth", "-n", "demo", "--runtime", "python3.9"])
    bad_email = runner.invoke(app, ["synth", "-n", "demo", "--alarm-email", "nobody"])

    assert good.exit_code == 0, good.output
    template = json.loads(good.output)
    assert template["Resources"]["ETLLambda"]["Properties"]["Runtime"] == "python3.13"
    assert template["Resources"]["AlarmTopicEmail"]["Properties"]["Endpoint"] == "ops@example.com"
    assert bad_runtime.exit_code == 2
    assert bad_email.exit_code == 2 and "not an e-mail address" in bad_email.output


@pytest.mark.parametrize("workflow_type", ["express", "standard"])
def test_the_deployed_template_fits_cloudformations_inline_limit(workflow_type: str) -> None:
    from adapters.aws.template import TEMPLATE_BODY_LIMIT, deploy_body

    template = synthesize(workflow_spec("a-long-workflow-name", workflow_type))

    body = deploy_body(template)
    assert len(body.encode()) <= TEMPLATE_BODY_LIMIT and json.loads(body) == template
    assert len(template_body(template).encode()) > len(body.encode())  # synth's indented text is for reading


def test_a_template_over_the_inline_limit_is_refused_naming_the_limit() -> None:
    from adapters.aws.template import deploy_body

    template = synthesize(workflow_spec("demo", "express"))
    template["Description"] = "x" * 60_000

    with pytest.raises(ValueError, match="over CloudFormation's 51,200-byte TemplateBody limit"):
        deploy_body(template)
