"""AWS's validation rules of issue 14 (part 2): each with a definition AWS accepts and one it refuses."""

import pytest

from ceap_engine.asl.definition import load_definition, validate_definition
from ceap_engine.asl.interpreter import Engine
from ceap_engine.runtime.clock import VirtualClock

LAMBDA = "arn:aws:lambda:us-east-1:123456789012:function:f"


def pass_state(**fields):
    return {"Type": "Pass", "End": True, **fields}


def machine(state, **top):
    return {"StartAt": "S", "States": {"S": state}, **top}


def problems(definition):
    return [(p.code, p.path, p.message) for p in validate_definition(definition)]


# -- QueryLanguage ------------------------------------------------------------------------


def _map(language, inner_language):
    inner = {"Type": "Pass", "End": True}
    if inner_language:
        inner["QueryLanguage"] = inner_language
    state = {"Type": "Map", "ItemProcessor": {"StartAt": "In", "States": {"In": inner}}, "End": True}
    if language:
        state["QueryLanguage"] = language
    return state


def test_a_jsonpath_machine_may_hold_a_jsonata_map_with_jsonpath_states_inside():
    assert problems(machine(_map("JSONata", "JSONPath"))) == []


def test_a_jsonata_machine_forbids_jsonpath_states_at_any_depth():
    found = problems(machine(_map(None, "JSONPath"), QueryLanguage="JSONata"))
    assert [p[1] for p in found] == ["/States/S/ItemProcessor/States/In/QueryLanguage"]
    assert problems(machine(pass_state(QueryLanguage="JSONPath"), QueryLanguage="JSONata"))


async def test_the_mixed_machine_runs_each_state_in_its_language():
    definition = machine({**_map("JSONata", "JSONPath"), "Items": "{% [1, 2] %}"})
    definition["States"]["S"]["ItemProcessor"]["States"]["In"]["Parameters"] = {"v.$": "$"}
    result = await Engine(clock=VirtualClock(start=0)).execute(load_definition(definition), {})
    assert result.status == "SUCCEEDED" and result.output == [{"v": 1}, {"v": 2}]


# -- Credentials --------------------------------------------------------------------------


@pytest.mark.parametrize("credentials", [{"RoleArn": "arn:aws:iam::123456789012:role/r"}, {"RoleArn.$": "$.role"}])
def test_credentials_with_a_role_are_accepted(credentials):
    assert problems(machine({"Type": "Task", "Resource": LAMBDA, "Credentials": credentials, "End": True})) == []


def test_credentials_without_a_role_are_refused():
    found = problems(machine({"Type": "Task", "Resource": LAMBDA, "Credentials": {}, "End": True}))
    assert found == [("SCHEMA_VALIDATION_FAILED", "/States/S/Credentials",
                      "The field 'RoleArn' is required but was missing")]


# -- escaped double quotes in intrinsic literals --------------------------------------------


def test_a_double_quote_in_a_single_quoted_literal_is_accepted():
    assert problems(machine(pass_state(Parameters={"m.$": "States.Format('say \"{}\"', $.x)"}))) == []


def test_a_backslash_escaped_double_quote_in_a_literal_is_refused():
    found = problems(machine(pass_state(Parameters={"m.$": "States.Format('say \\\"{}\\\"', $.x)"})))
    assert len(found) == 1 and found[0][1] == "/States/S/Parameters/m.$"
    assert found[0][2].startswith("The value for the field 'm.$' must be a valid JSONPath or a valid intrinsic function call")


# -- optimized integrations -----------------------------------------------------------------


@pytest.mark.parametrize("resource", [
    "arn:aws:states:::dynamodb:getItem", "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
    "arn:aws:states:::aws-sdk:dynamodb:query", "arn:aws:states:::glue:startJobRun.sync",
])
def test_existing_integrations_are_accepted(resource):
    assert problems(machine({"Type": "Task", "Resource": resource, "End": True})) == []


@pytest.mark.parametrize("resource", ["arn:aws:states:::dynamodb:query", "arn:aws:states:::sns:sendMessage"])
def test_an_optimized_integration_that_does_not_exist_is_refused(resource):
    found = problems(machine({"Type": "Task", "Resource": resource, "End": True}))
    assert len(found) == 1 and found[0][1] == "/States/S/Resource"
    assert found[0][2].startswith(f"The resource provided {resource} is not recognized")


# -- Distributed Map: value or path, not both --------------------------------------------------


def _distributed(reader_config=None, batcher=None):
    state = {
        "Type": "Map", "End": True,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                          "StartAt": "In", "States": {"In": {"Type": "Pass", "End": True}}},
        "ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "Parameters": {"Bucket": "b", "Key": "k"},
                       "ReaderConfig": {"InputType": "JSON", **(reader_config or {})}},
    }
    if batcher is not None:
        state["ItemBatcher"] = batcher
    return machine(state)


@pytest.mark.parametrize(("reader_config", "batcher"), [
    ({"MaxItems": 10}, {"MaxItemsPerBatch": 5, "MaxInputBytesPerBatch": 1024}),
    ({"MaxItemsPath": "$.max"}, {"MaxItemsPerBatchPath": "$.n", "MaxInputBytesPerBatchPath": "$.b"}),
])
def test_distributed_map_settings_as_a_value_or_a_path_are_accepted(reader_config, batcher):
    assert problems(_distributed(reader_config, batcher)) == []


@pytest.mark.parametrize(("reader_config", "batcher", "where", "fields"), [
    ({"MaxItems": 10, "MaxItemsPath": "$.max"}, None, "/States/S/ItemReader/ReaderConfig", "'MaxItems' and 'MaxItemsPath'"),
    (None, {"MaxItemsPerBatch": 5, "MaxItemsPerBatchPath": "$.n"}, "/States/S/ItemBatcher",
     "'MaxItemsPerBatch' and 'MaxItemsPerBatchPath'"),
    (None, {"MaxInputBytesPerBatch": 5, "MaxInputBytesPerBatchPath": "$.n"}, "/States/S/ItemBatcher",
     "'MaxInputBytesPerBatch' and 'MaxInputBytesPerBatchPath'"),
])
def test_distributed_map_settings_as_both_a_value_and_a_path_are_refused(reader_config, batcher, where, fields):
    found = problems(_distributed(reader_config, batcher))
    assert [(p[1], p[2]) for p in found] == [(where, f"The fields {fields} are mutually exclusive")]


# -- state names ------------------------------------------------------------------------------


def _parallel(inner_name):
    branch = {"StartAt": inner_name, "States": {inner_name: {"Type": "Pass", "End": True}}}
    return {"StartAt": "P", "States": {"P": {"Type": "Parallel", "Branches": [branch], "Next": "Done"},
                                      "Done": {"Type": "Succeed"}}}


def test_distinct_state_names_across_levels_are_accepted():
    assert problems(_parallel("Inner")) == []


@pytest.mark.parametrize("name", ["P", "Done"])
def test_a_state_name_used_twice_at_any_level_is_refused(name):
    found = problems(_parallel(name))
    assert [(p[0], p[1]) for p in found] == [("DUPLICATE_STATE_NAME", f"/States/P/Branches/0/States/{name}")]


# -- Fail ErrorPath / CausePath intrinsics ----------------------------------------------------------


@pytest.mark.parametrize("path", [
    "States.Format('bad {}', $.x)", "States.JsonToString($.x)", "States.ArrayGetItem($.a, 0)",
    "States.Base64Encode($.x)", "States.Base64Decode($.x)", "States.Hash($.x, 'SHA-256')", "States.UUID()",
])
def test_fail_paths_may_call_intrinsics_that_return_a_string(path):
    assert problems(machine({"Type": "Fail", "ErrorPath": path, "CausePath": "$.cause"})) == []


@pytest.mark.parametrize("path", ["States.MathAdd($.a, 1)", "States.Array($.a)", "States.StringToJson($.a)"])
@pytest.mark.parametrize("field", ["ErrorPath", "CausePath"])
def test_fail_paths_may_not_call_intrinsics_that_return_other_types(path, field):
    found = problems(machine({"Type": "Fail", field: path}))
    assert [p[1] for p in found] == [f"/States/S/{field}"]
    assert "does not return a string" in found[0][2]


# -- a JSONPath filter comparing to an unquoted word ---------------------------------------------------


async def test_a_filter_comparing_to_an_unquoted_word_is_accepted_and_compares_to_that_string():
    definition = machine(pass_state(Parameters={"receipts.$": "$.Labels[?(@.Name==Receipt)]"}))
    assert problems(definition) == []
    labels = [{"Name": "Receipt", "Confidence": 99}, {"Name": "Invoice"}]
    result = await Engine(clock=VirtualClock(start=0)).execute(load_definition(definition), {"Labels": labels})
    assert result.output == {"receipts": [labels[0]]}


def test_a_filter_with_a_malformed_value_is_still_refused():
    assert problems(machine(pass_state(Parameters={"r.$": "$.Labels[?(@.Name==12ab)]"})))
