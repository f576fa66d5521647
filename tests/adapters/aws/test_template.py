"""The synthesized CloudFormation template: cfn-lint clean, least privilege, names, and the builder's ASL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint

from adapters.aws.template import (
    LOG_DELIVERY_WILDCARD,
    XRAY_WILDCARD,
    TemplateOptions,
    stack_name,
    synthesize,
    template_body,
    workflow_spec,
)
from ceap_engine.errors import InputError
from ceap_engine.pipeline import build_definition, substitution_keys

VARIANTS = [
    pytest.param("express", TemplateOptions(), id="express"),
    pytest.param("standard", TemplateOptions(), id="standard"),
    pytest.param("express", TemplateOptions(log_execution_data=False, arch="arm64"), id="express-nodata-arm64"),
    pytest.param("standard", TemplateOptions(log_execution_data=False), id="standard-nodata"),
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
    assert etl["Handler"] == "adapters.aws.handler.handler" and etl["Runtime"] == "python3.11"
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
    assert bucket["BucketName"] == {"Fn::Sub": "ceap-workflow-demo-${AWS::AccountId}"}
    assert bucket["LifecycleConfiguration"]["Rules"] == [
        {"Id": "ExpireExecutionData", "Status": "Enabled", "Prefix": "executions/", "ExpirationInDays": 7}]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    [tls] = resources["WorkflowBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert tls["Effect"] == "Deny" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert {"StateMachineArn", "WorkflowBucket", "QueueUrl", "DLQUrl"} <= set(template["Outputs"])


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
    longest_region, account = "ap-southeast-5", "123456789012"

    assert len(f"ceap-workflow-{name}-{account}") <= 63
    assert max(len(r["Properties"]["FunctionName"]) for r in resources.values() if r["Type"] == "AWS::Lambda::Function") <= 64
    for role in (r for r in resources.values() if r["Type"] == "AWS::IAM::Role"):
        assert len(role["Properties"]["RoleName"]["Fn::Sub"].replace("${AWS::Region}", longest_region)) <= 64
    assert len(resources["Pipe"]["Properties"]["Name"]) <= 64
    assert len(stack_name(workflow_spec(name, "express"))) <= 128


@pytest.mark.parametrize("name", ["", "Demo", "1demo", "-demo", "demo_1", "demo.1", "a" * 31, "démo"])
def test_a_bad_name_is_refused_before_anything_is_built(name: str) -> None:
    with pytest.raises(InputError, match="workflow name"):
        workflow_spec(name, "express")
