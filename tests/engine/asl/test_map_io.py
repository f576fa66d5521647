"""Distributed Map: ItemReader from the object store, ItemBatcher, ResultWriter, failure thresholds, scopes."""

import json

import pytest

from ceap_engine.asl.definition import load_definition
from ceap_engine.asl.interpreter import Engine
from ceap_engine.runtime.clock import VirtualClock
from ceap_engine.storage.memory import MemoryObjectStore

T0 = 1_767_225_600.0
BUCKET = "orders"


def distributed(**fields):
    state = {
        "Type": "Map", "End": True,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                          "StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
    }
    state.update(fields)
    return {"StartAt": "M", "States": {"M": state}}


async def run(definition, input=None, store=None):
    engine = Engine(clock=VirtualClock(start=T0), seed=3, object_store=store)
    return await engine.execute(load_definition(definition), {} if input is None else input)


@pytest.fixture
async def store():
    objects = MemoryObjectStore()
    await objects.put(BUCKET, "in/items.json", json.dumps([{"id": 1}, {"id": 2}, {"id": 3}]).encode())
    await objects.put(BUCKET, "in/items.jsonl", b'{"id": 1}\n{"id": 2}\n')
    await objects.put(BUCKET, "in/items.csv", b"id,name\n1,ann\n2,bob\n")
    return objects


@pytest.mark.parametrize(
    ("config", "key", "expected"),
    [
        ({"InputType": "JSON"}, "in/items.json", [{"id": 1}, {"id": 2}, {"id": 3}]),
        ({"InputType": "JSON", "MaxItems": 2}, "in/items.json", [{"id": 1}, {"id": 2}]),
        ({"InputType": "JSONL"}, "in/items.jsonl", [{"id": 1}, {"id": 2}]),
        ({"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"}, "in/items.csv", [{"id": "1", "name": "ann"}, {"id": "2", "name": "bob"}]),
        ({"InputType": "CSV", "CSVHeaderLocation": "GIVEN", "CSVHeaders": ["a", "b"]}, "in/items.csv",
         [{"a": "id", "b": "name"}, {"a": "1", "b": "ann"}, {"a": "2", "b": "bob"}]),
    ],
)
async def test_item_reader_reads_an_object(store, config, key, expected):
    reader = {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": config,
              "Parameters": {"Bucket": BUCKET, "Key.$": "$.key"}}
    result = await run(distributed(ItemReader=reader), {"key": key}, store)
    assert result.status == "SUCCEEDED" and result.output == expected


async def test_item_reader_lists_keys_under_a_prefix(store):
    reader = {"Resource": "arn:aws:states:::s3:listObjectsV2", "Parameters": {"Bucket": BUCKET, "Prefix": "in/"}}
    result = await run(distributed(ItemReader=reader, ItemSelector={"key.$": "$$.Map.Item.Value.Key"}), store=store)
    assert result.output == [{"key": "in/items.csv"}, {"key": "in/items.json"}, {"key": "in/items.jsonl"}]


async def test_item_reader_in_jsonata_uses_arguments(store):
    definition = distributed(ItemReader={"Resource": "arn:aws:states:::s3:getObject",
                                         "Arguments": {"Bucket": BUCKET, "Key": "{% $states.input.key %}"}})
    definition["QueryLanguage"] = "JSONata"
    result = await run(definition, {"key": "in/items.json"}, store)
    assert result.output == [{"id": 1}, {"id": 2}, {"id": 3}]


@pytest.mark.parametrize(
    ("reader", "store_given", "cause"),
    [
        ({"Resource": "arn:aws:states:::s3:getObject", "Parameters": {"Bucket": BUCKET, "Key": "in/items.json"}},
         False, "This engine has no object store"),
        ({"Resource": "arn:aws:states:::s3:getObject", "Parameters": {"Bucket": BUCKET, "Key": "missing.json"}},
         True, "ObjectNotFound"),
        ({"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
          "Parameters": {"Bucket": BUCKET, "Key": "in/items.csv"}}, True, "is not valid JSON"),
    ],
)
async def test_item_reader_failures_are_item_reader_failed(store, reader, store_given, cause):
    result = await run(distributed(ItemReader=reader), store=store if store_given else None)
    assert result.error == "States.ItemReaderFailed" and cause in result.cause


async def test_item_batcher_groups_items_with_batch_input():
    batcher = {"MaxItemsPerBatch": 2, "BatchInput": {"run.$": "$.run"}}
    result = await run(distributed(ItemsPath="$.xs", ItemBatcher=batcher), {"xs": [1, 2, 3, 4, 5], "run": "r1"})
    assert result.output == [
        {"BatchInput": {"run": "r1"}, "Items": [1, 2]},
        {"BatchInput": {"run": "r1"}, "Items": [3, 4]},
        {"BatchInput": {"run": "r1"}, "Items": [5]},
    ]
    assert result.history.types()[2:4] == ["MapStateStarted", "MapRunStarted"]
    assert '"length": 3' in json.dumps(result.history.to_aws()[2])


async def test_item_batcher_by_bytes():
    # Each item counts its JSON bytes plus a separator: "aaaa" is 7 bytes.
    result = await run(distributed(ItemsPath="$.xs", ItemBatcher={"MaxInputBytesPerBatch": 14}), {"xs": ["aaaa", "bbbb", "cccc"]})
    assert [batch["Items"] for batch in result.output] == [["aaaa", "bbbb"], ["cccc"]]


async def test_result_writer_stores_results_and_returns_a_pointer(store):
    writer = {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": BUCKET, "Prefix": "out"}}
    result = await run(distributed(ItemsPath="$.xs", ResultWriter=writer), {"xs": [1, 2]}, store)
    details = result.output["ResultWriterDetails"]
    assert details["Bucket"] == BUCKET and details["Key"].startswith("out/") and details["Key"].endswith("manifest.json")
    manifest = json.loads(await store.get(BUCKET, details["Key"]))
    written = manifest["ResultFiles"]["SUCCEEDED"][0]["Key"]
    assert json.loads(await store.get(BUCKET, written)) == [1, 2]


async def test_failures_over_the_threshold_fail_the_run():
    processor = {"ProcessorConfig": {"Mode": "DISTRIBUTED"}, "StartAt": "C", "States": {
        "C": {"Type": "Choice", "Choices": [{"Variable": "$", "NumericGreaterThan": 2, "Next": "F"}], "Default": "OK"},
        "F": {"Type": "Fail", "Error": "TooBig"}, "OK": {"Type": "Succeed"}}}
    base = {"ItemsPath": "$.xs", "ItemProcessor": processor}
    tolerated = await run(distributed(**base, ToleratedFailureCount=2), {"xs": [1, 2, 3, 4]})
    assert tolerated.status == "SUCCEEDED" and tolerated.output == [1, 2, None, None]
    failed = await run(distributed(**base, ToleratedFailurePercentage=25), {"xs": [1, 2, 3, 4]})
    assert (failed.error, failed.cause) == (
        "States.ExceedToleratedFailureThreshold", "The specified tolerated failure threshold was exceeded")
    assert failed.history.types()[-3:] == ["MapRunFailed", "MapStateFailed", "ExecutionFailed"]


async def test_distributed_children_cannot_read_outer_variables_but_inline_ones_can():
    def machine(mode):
        return {"StartAt": "A", "States": {
            "A": {"Type": "Pass", "Assign": {"outer": 1}, "Next": "M"},
            "M": {"Type": "Map", "End": True, "ItemsPath": "$.xs",
                  "ItemProcessor": {"ProcessorConfig": {"Mode": mode}, "StartAt": "P",
                                    "States": {"P": {"Type": "Pass", "Parameters": {"v.$": "$outer"}, "End": True}}}},
        }}

    inline = await run(machine("INLINE"), {"xs": [0]})
    assert inline.output == [{"v": 1}]
    detached = await run(machine("DISTRIBUTED"), {"xs": [0]})
    assert detached.status == "FAILED"


async def test_inline_iteration_variables_stay_in_their_iteration():
    definition = {"StartAt": "M", "States": {
        "M": {"Type": "Map", "ItemsPath": "$.xs", "Next": "After",
              "ItemProcessor": {"StartAt": "Set", "States": {
                  "Set": {"Type": "Pass", "Assign": {"inner.$": "$"}, "Next": "Use"},
                  "Use": {"Type": "Pass", "Parameters": {"got.$": "$inner"}, "End": True}}}},
        "After": {"Type": "Pass", "Parameters": {"inner.$": "$inner"}, "End": True},
    }}
    result = await run(definition, {"xs": [1, 2]})
    assert result.status == "FAILED" and "inner" in result.cause  # not visible after the Map


def test_asl_run_reads_items_from_the_objects_folder(tmp_path):
    from typer.testing import CliRunner

    from ceap_engine.cli.app import app

    (tmp_path / "objects" / "buckets" / BUCKET).mkdir(parents=True)
    (tmp_path / "objects" / "buckets" / BUCKET / "items.json").write_text("[1, 2]")
    reader = {"Resource": "arn:aws:states:::s3:getObject", "Parameters": {"Bucket": BUCKET, "Key": "items.json"}}
    definition = tmp_path / "machine.json"
    definition.write_text(json.dumps(distributed(ItemReader=reader)))
    outcome = CliRunner().invoke(app, ["asl", "run", str(definition), "--objects", str(tmp_path / "objects"),
                                       "--format", "json"])
    assert outcome.exit_code == 0, outcome.output
    assert json.loads(outcome.output)["output"] == [1, 2]


@pytest.mark.parametrize(
    ("fields", "pointer"),
    [
        ({"ItemReader": {"Parameters": {}}}, "/States/M/ItemReader"),
        ({"ItemReader": {"Resource": "arn:aws:states:::s3:deleteObject"}}, "/States/M/ItemReader/Resource"),
        ({"ItemReader": {"Resource": "arn:aws:states:::s3:getObject", "Parameters": {"Key.$": "$$$"}}},
         "/States/M/ItemReader/Parameters/Key.$"),
        ({"ItemBatcher": 5}, "/States/M/ItemBatcher"),
    ],
)
def test_reader_writer_and_batcher_are_validated(fields, pointer):
    from ceap_engine.asl.definition import validate_definition

    assert [p.path for p in validate_definition(distributed(**fields))] == [pointer]


async def test_result_writer_parameters_read_the_state_input(store):
    writer = {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket.$": "$.bucket", "Prefix": "p"}}
    result = await run(distributed(ItemsPath="$.xs", ResultWriter=writer), {"xs": [1], "bucket": BUCKET}, store)
    assert result.output["ResultWriterDetails"]["Bucket"] == BUCKET
